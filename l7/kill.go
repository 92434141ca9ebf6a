package l7

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/lbctl/lbctl/backend"
)

// CloseConns closes every connection to the backend named id: the backend
// connections of the exchanges in flight to it, and its kept-alive ones,
// as an operator asks when a backend goes into maintenance at once
// (maint --kill). A client whose exchange is cut has its connection
// closed, as when a backend dies mid-response, whether or not the
// response head had gone out; the cut is not counted against the
// backend's health and the request is not tried elsewhere. Over HTTP/2
// the cut stream is reset and the connection's other streams go on.
// Clients that send again are placed by the usual rules: a backend in
// maintenance keeps no pinned client.
//
// An exchange that is still dialling the backend when CloseConns runs is
// not cut. CloseConns returns once the closes are done; each cut exchange
// then ends at its next read from the backend.
func (p *Proxy) CloseConns(id string) {
	p.setup()
	p.live.each(func(s *session) { s.flight.cut(id) })
	p.h2.live.each(func(c *h2client) { c.flights.cut(id) })
	p.closeLoopConns(id)
	// Kept-alive connections go last, so that one an exchange released
	// while the others were cut goes too.
	for b, u := range p.current().ups {
		if b.ID == id {
			u.closeIdle(false)
		}
	}
}

// liveSessions is the set of sessions serving a client connection, so
// that CloseConns finds the exchanges in flight. A session joins it once
// per client connection, not per request.
type liveSessions struct {
	mu  sync.Mutex
	set map[*session]struct{}
}

func (l *liveSessions) add(s *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = make(map[*session]struct{})
	}
	l.set[s] = struct{}{}
}

func (l *liveSessions) remove(s *session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.set, s)
}

func (l *liveSessions) each(fn func(s *session)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.set {
		fn(s)
	}
}

// inflight is a session's exchange in progress as CloseConns sees it,
// without a lock: the exchange publishes its backend and connection, then
// makes seq odd; it makes seq even again when it ends. A reader that sees
// the same odd seq before and after reading the backend and connection has
// read those of that exchange (a seqlock with one writer).
type inflight struct {
	seq    atomic.Uint64
	b      atomic.Pointer[backend.Backend]
	up     atomic.Pointer[net.TCPConn]
	killed atomic.Uint64 // the seq of the exchange that CloseConns cut
}

// begin publishes the exchange that starts, to b over up.
func (f *inflight) begin(b *backend.Backend, up *net.TCPConn) {
	f.b.Store(b)
	f.up.Store(up)
	f.seq.Add(1)
}

// end withdraws the exchange begin published.
func (f *inflight) end() { f.seq.Add(1) }

// cut closes the backend connection of the exchange in progress if it goes
// to the backend named id, and marks the exchange as cut first, so that it
// takes the failure that follows for what it is.
func (f *inflight) cut(id string) {
	n := f.seq.Load()
	if n&1 == 0 {
		return
	}
	b, up := f.b.Load(), f.up.Load()
	if b == nil || b.ID != id || up == nil {
		return
	}
	f.killed.Store(n)
	if f.seq.Load() != n {
		// The exchange ended meanwhile: its connection is kept-alive
		// (and closed with the others) or closed already.
		return
	}
	up.Close()
}

// wasCut reports whether CloseConns cut the exchange in progress.
func (f *inflight) wasCut() bool { return f.killed.Load() == f.seq.Load() }

package l7

import (
	"sync"
	"sync/atomic"
)

// h2flights are the exchanges in progress on one HTTP/2 client connection,
// as CloseConns sees them: a slot per stream the connection may have open
// (SETTINGS_MAX_CONCURRENT_STREAMS, which also bounds the handlers the
// HTTP/2 server runs at once), each claimed by a stream without a lock and
// holding that stream's inflight, so that CloseConns cuts streams as it
// cuts HTTP/1.1 exchanges.
type h2flights [h2MaxStreams]h2flight

type h2flight struct {
	busy atomic.Bool
	inflight
}

// claim returns a free slot for a stream, or nil when every slot is taken
// (a stream without one is not cut by CloseConns, and ends at the grace).
func (fs *h2flights) claim() *h2flight {
	for i := range fs {
		if fs[i].busy.CompareAndSwap(false, true) {
			return &fs[i]
		}
	}
	return nil
}

// free gives the slot back once its stream has ended.
func (f *h2flight) free() { f.busy.Store(false) }

// cut cuts the connection's exchanges in progress to the backend named id.
func (fs *h2flights) cut(id string) {
	for i := range fs {
		if fs[i].busy.Load() {
			fs[i].inflight.cut(id)
		}
	}
}

// h2clients is the set of HTTP/2 client connections being served, for
// CloseConns. A connection joins it once, not per stream.
type h2clients struct {
	mu  sync.Mutex
	set map[*h2client]struct{}
}

func (l *h2clients) add(c *h2client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = make(map[*h2client]struct{})
	}
	l.set[c] = struct{}{}
}

func (l *h2clients) remove(c *h2client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.set, c)
}

func (l *h2clients) each(fn func(c *h2client)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.set {
		fn(c)
	}
}

//go:build linux

package l7

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/evloop"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// The loop engine (Engine = EngineLoop) serves plain HTTP/1.1 connections
// from event loops, one per core, as L4 does: each loop is L7's handler
// on an evloop.Loop, owning the client and backend sockets as raw
// non-blocking descriptors in its epoll set. A request is read and parsed
// with the strict parser as its bytes arrive (connReader and
// parseRequestHead over a reader that never blocks), its head is written
// to a backend connection the loop keeps alive itself, the response head
// is parsed as it arrives and the body relayed piece by piece with its
// framing checked (fixed length, chunked, or until the backend closes).
// Cookie persistence, failover and retries, passive health, accounting
// and the access log are the goroutine engine's own code, run on the
// session that each loop connection carries.
//
// A request that is rare and complex on the loop is handed over, before
// anything of it is forwarded, to the goroutine engine for the rest of
// its connection's life (see handOff): one with a body, an upgrade, an
// Expect, or from an HTTP/1.0 client. TLS listeners, PROXY protocol
// listeners and backends named by host name keep the goroutine engine
// altogether (see serveLoops).

// Engines of the L7 front door (Proxy.Engine).
const (
	// EngineGoroutine serves each connection from a goroutine of its own.
	EngineGoroutine = "goroutine"
	// EngineLoop serves plain HTTP/1.1 connections from event loops on
	// Linux (and from goroutines elsewhere).
	EngineLoop = "loop"
)

// errWouldBlock is a read that found nothing: the next readable event
// resumes it.
var errWouldBlock = errors.New("would block")

// loopFronts is the set of a proxy's loops, for StopAccepting and
// CloseConns.
type loopFronts struct {
	mu      sync.Mutex
	set     map[*loopFront]struct{}
	retired map[net.Listener]struct{} // listeners StopAccepting retired before their loops started
}

// loopFront is one event loop of the L7 front door: its evloop core and
// the handler's state, which belongs to the loop's goroutine alone.
type loopFront struct {
	core *evloop.Loop[loopConn]
	p    *Proxy
	ln   net.Listener

	timers  evloop.Queues[loopConn]
	conns   int         // client connections open
	all     []*loopConn // every connection held, clients and idle backend ones, by slot
	free    []*loopConn
	idleUps map[*backend.Backend][]*loopConn // kept-alive backend connections, most recently used last
	upBufs  [][]byte                         // spare response buffers, of upBufSize
	pends   [][]byte                         // spare client output buffers
	targets map[*backend.Backend]*evloop.Target
	reg     *backend.Registry // the pool targets was last pruned for
	scratch []byte            // what a lingering client still sends is read here
	spare   []*session        // sessions of connections that wait for a request
	ready   []*loopConn       // connections to run once the wake's events are seen, or whose relay ran out of budget
	later   []*loopConn       // the other ready list, swapped each round

	swept bool // the idle clients were closed once the proxy began closing

	// closing asks the loop to cut the exchanges with the backends named
	// in closeIDs (guarded by the proxy's loopFronts.mu): CloseConns.
	closing  atomic.Bool
	closeIDs []string
}

// phase is where a loop connection is.
type phase uint8

const (
	phHead     phase = iota // waiting for or reading a request head
	phChoose                // a dial failed: the next backend is chosen in the loop's Work
	phConnect               // dialling the backend
	phSend                  // writing the request head to the backend
	phRespHead              // waiting for the response head
	phBody                  // relaying the response body
	phFlush                 // the answer is whole; its last bytes go to the client
	phLinger                // an error answer went out; what the client still sends is read and dropped
	phIdleUp                // a kept-alive backend connection, with no client
)

// chunkPhase is where the relay of a chunked body is.
type chunkPhase uint8

const (
	chunkSize chunkPhase = iota
	chunkData
	chunkCRLF
	chunkTrailers
)

// loopConn is a client connection on a loop (or, in phIdleUp, a
// kept-alive backend connection waiting for its next exchange).
type loopConn struct {
	// s is the session while the connection is busy: from the first byte
	// of a request until its answer has gone out. A connection waiting
	// for its next request gives it back to the loop (see detach), so
	// that an idle one holds a few hundred bytes, not a session's
	// buffers; what a session needs of its client is kept here.
	s       *session
	from    netip.AddrPort // the client
	addrKey uint64         // see session.addrKey
	pinKey  uint64         // see session.pinKey
	cfg     *settings      // the settings of the wait for the next request, while detached

	client evloop.Endpoint[loopConn]
	server evloop.Endpoint[loopConn]
	timer  evloop.Timer[loopConn]
	cr, ur fdReader // s.in's and s.up's readers
	slot   int      // in loopFront.all
	phase  phase
	queued bool // on the loop's ready list

	first     bool // no request has been read yet
	headTimed bool // the header timeout of the request being read runs
	blank     int  // heads in a row that were only empty lines
	shut      bool // the write side is shut (lingering)
	lingered  int  // bytes dropped while lingering

	pend    []byte // client output not yet written, from pendOff
	pendOff int

	upOut  []byte // the request head (and PROXY header) not yet written
	upBuf  []byte // the response buffer, held for the exchange
	b      *backend.Backend
	upAddr string // the address b had when the backend connection was made
	held   bool   // b.Acquire was called for the exchange

	reused, retryable, retriedFresh, retriedOther bool
	framing                                       bodyFraming
	left                                          int64
	chunk                                         chunkPhase
	trailers                                      int
	closeAfter, endKnown, reframe                 bool
	// waitCfg is the settings the wait for the next request takes: those
	// in force as the answer went out, before the client could see it.
	waitCfg *settings
}

// fdReader reads a loop socket for a connReader: it never blocks, and a
// short read clears the endpoint's Readable, so that the next read waits
// for the next edge instead of a system call that finds nothing.
type fdReader struct{ ep *evloop.Endpoint[loopConn] }

func (r *fdReader) Read(p []byte) (int, error) {
	ep := r.ep
	if !ep.Readable || ep.FD < 0 {
		return 0, errWouldBlock
	}
	n, e := evloop.Read(ep.FD, p)
	switch {
	case e == unix.EAGAIN:
		ep.Readable = false
		return 0, errWouldBlock
	case e != 0:
		return 0, e
	case n == 0:
		return 0, io.EOF
	}
	if n < len(p) && !ep.RDHUP {
		ep.Readable = false
	}
	return n, nil
}

// SetReadDeadline does nothing: the loop's timers bound every wait.
func (r *fdReader) SetReadDeadline(time.Time) error { return nil }

// serveLoops serves ln from event loops when the engine is the loop one
// and ln can be: a plain TCP listener without PROXY protocol, every
// backend an IP literal. It reports false, having done nothing, when the
// goroutine engine must serve ln, and logs why.
func (p *Proxy) serveLoops(ln net.Listener) (bool, error) {
	why := ""
	tl, ok := ln.(*net.TCPListener)
	switch {
	case p.TLS != nil:
		why = "TLS is served by the goroutine engine"
	case p.ProxyProtocol.On():
		why = "PROXY protocol listeners are served by the goroutine engine"
	case !ok:
		why = fmt.Sprintf("the listener is a %T, not a TCP listener", ln)
	}
	if why == "" {
		for _, b := range p.Pool.Registry().All() {
			if evloop.TargetFor(b.Address()) == nil {
				why = fmt.Sprintf("backend %s has address %q, not an IP literal, and the event loop never resolves names", b.ID, b.Address())
				break
			}
		}
	}
	if why != "" {
		p.logger().Info("l7 engine: a goroutine per connection serves the listener", "listener", ln.Addr().String(), "reason", why)
		return false, nil
	}
	deferAccept(ln)
	lnfd, err := evloop.TakeListener(tl)
	if err != nil {
		return true, fmt.Errorf("l7: event loop: %w", err)
	}
	n := p.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	name := tl.Addr().String()
	fronts := make([]*loopFront, 0, n)
	for range n {
		core, err := evloop.New[loopConn](lnfd, name, p.logger())
		if err != nil {
			for _, f := range fronts {
				f.Release()
			}
			evloop.Close(lnfd)
			return true, fmt.Errorf("l7: event loop: %w", err)
		}
		f := &loopFront{
			core:    core,
			p:       p,
			ln:      ln,
			idleUps: make(map[*backend.Backend][]*loopConn),
			targets: make(map[*backend.Backend]*evloop.Target),
			scratch: make([]byte, 4096),
		}
		core.SetHandler(f)
		fronts = append(fronts, f)
	}
	// Each loop holds a duplicate of its own: the socket closes once the
	// last loop has closed its copy (retired, or ended).
	evloop.Close(lnfd)
	p.logger().Info("l7 engine: event loops serve the listener", "listener", name, "loops", n)
	defer func() {
		p.fronts.mu.Lock()
		delete(p.fronts.retired, ln)
		p.fronts.mu.Unlock()
	}()
	ended := make(chan error, len(fronts)-1)
	for _, f := range fronts[1:] {
		go func() { ended <- p.runFront(f) }()
	}
	err = p.runFront(fronts[0])
	for range fronts[1:] {
		if e := <-ended; !loopStopped(e) && loopStopped(err) {
			err = e
		}
	}
	return true, err
}

// runFront runs f under the proxy's accept loop, so that Shutdown and
// Close stop it, and retires the other loops of its listener when it fails.
func (p *Proxy) runFront(f *loopFront) error {
	err := p.loop.Run(f)
	if !loopStopped(err) {
		p.retireLoops(f.ln)
	}
	return err
}

// loopStopped reports whether err is how a loop ends when asked to.
func loopStopped(err error) bool {
	return errors.Is(err, ErrProxyClosed) || errors.Is(err, net.ErrClosed)
}

// retireLoops asks the loops of ln to stop accepting and end once their
// connections have, and returns a channel per loop closed once it accepts
// no more; with the loop engine, loops of ln that start later are retired
// as they start.
func (p *Proxy) retireLoops(ln net.Listener) []<-chan struct{} {
	p.fronts.mu.Lock()
	defer p.fronts.mu.Unlock()
	var done []<-chan struct{}
	for f := range p.fronts.set {
		if f.ln == ln {
			done = append(done, f.core.Retire())
		}
	}
	if !p.loopEngine() {
		return done
	}
	if p.fronts.retired == nil {
		p.fronts.retired = make(map[net.Listener]struct{})
	}
	p.fronts.retired[ln] = struct{}{}
	return done
}

// closeLoopConns asks every loop to cut its exchanges with the backend
// named id (see CloseConns).
func (p *Proxy) closeLoopConns(id string) {
	p.fronts.mu.Lock()
	defer p.fronts.mu.Unlock()
	for f := range p.fronts.set {
		f.closeIDs = append(f.closeIDs, id)
		f.closing.Store(true)
		f.core.Wake()
	}
}

// Serve runs the loop (see accept.Server).
func (f *loopFront) Serve() error {
	p := f.p
	p.fronts.mu.Lock()
	if p.fronts.set == nil {
		p.fronts.set = make(map[*loopFront]struct{})
	}
	p.fronts.set[f] = struct{}{}
	if _, ok := p.fronts.retired[f.ln]; ok {
		f.core.Retire()
	}
	p.fronts.mu.Unlock()
	defer func() {
		p.fronts.mu.Lock()
		delete(p.fronts.set, f)
		p.fronts.mu.Unlock()
	}()
	err := f.core.Serve()
	if errors.Is(err, evloop.ErrStopped) {
		return ErrProxyClosed
	}
	return fmt.Errorf("l7: %w", err)
}

// Stop asks the loop to end (see accept.Server).
func (f *loopFront) Stop(abort bool) { f.core.Stop(abort) }

// Release closes the loop's descriptors (see accept.Server).
func (f *loopFront) Release() { f.core.Release() }

// Open returns how many client connections the loop serves.
func (f *loopFront) Open() int { return f.conns }

// Accepted starts serving a client connection: its first request head may
// be there already (the listener defers accepts until the client sends).
func (f *loopFront) Accepted(fd int, peer netip.AddrPort) {
	p := f.p
	c := f.newConn()
	c.client.Reset(fd, c)
	c.client.Readable, c.client.Writable = true, true
	if f.core.Register(&c.client) != 0 {
		evloop.Close(fd)
		f.freeConn(c)
		return
	}
	evloop.SetNoDelay(fd)
	p.loop.Counts.Opened()
	f.conns++
	addr := peer.Addr().Unmap()
	c.from = peer
	c.addrKey = backend.AddrHash(addr)
	var ip [64]byte
	c.pinKey = pinClientKey(addr.AppendTo(ip[:0]))
	c.cfg = p.tuned.Load()
	c.first, c.headTimed, c.blank = true, true, 0
	c.phase = phHead
	f.arm(c, c.cfg.header)
	f.run(c)
}

// attach gives c a session for the request that comes, set up for its
// client under the settings of its wait.
func (f *loopFront) attach(c *loopConn) {
	var s *session
	if n := len(f.spare); n > 0 {
		s, f.spare = f.spare[n-1], f.spare[:n-1]
	} else {
		s = f.p.newLoopSession()
	}
	cfg := c.cfg
	s.in.reset(&c.cr, s.small(cfg), cfg.heads)
	s.sized = cfg
	s.tune(cfg)
	s.from = c.from
	s.ip = c.from.Addr().Unmap().AppendTo(s.ip[:0])
	s.addrKey, s.pinKey = c.addrKey, c.pinKey
	c.s = s
}

// detach takes c's session back, once it holds nothing of c's: c waits
// for its next request under the settings s has.
func (f *loopFront) detach(c *loopConn) {
	s := c.s
	c.s = nil
	c.cfg = s.cfg
	s.in.reset(nil, s.inBuf, nil)
	s.up.reset(nil, nil, nil)
	s.req.reset()
	s.resp.reset()
	s.st, s.cfg, s.sized = nil, nil, nil
	s.cw = timedWriter{}
	if len(f.spare) < spareSessions {
		f.spare = append(f.spare, s)
	}
}

// spareSessions bounds the sessions a loop keeps for its next busy
// connections; the spare buffers of each kind are bounded alike.
const spareSessions = 64

// Event acts on what an event told about one of the loop's sockets.
func (f *loopFront) Event(ep *evloop.Endpoint[loopConn], ev uint32) {
	c := ep.Owner
	switch {
	case c.phase == phIdleUp:
		// A kept-alive backend connection says something only to close
		// (or to send what answers nothing): either way it is done.
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			f.dropIdle(c)
		}
		return
	case ep == &c.server && c.phase == phConnect:
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := error(unix.ECONNREFUSED)
			if n, gerr := unix.GetsockoptInt(ep.FD, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && n != 0 {
				err = unix.Errno(n)
			}
			f.dialFailed(c, err)
			return
		}
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		c.b.CountConnected()
		f.send(c)
	case ep == &c.client && c.phase == phHead:
		// A request may take a kept-alive backend connection: it waits
		// until every event of this wake has been seen, so that one on
		// which the backend sent bytes or closed since it was kept is
		// closed first (see Work), never given to the request.
		if !c.queued {
			c.queued = true
			f.ready = append(f.ready, c)
		}
		return
	}
	f.run(c)
}

// Work runs the connections that wait for their turn (requests read once
// every event of the wake has been seen, relays that ran out of budget),
// closes the idle clients once the proxy is closing, and cuts the
// exchanges CloseConns asked to.
func (f *loopFront) Work() {
	if len(f.ready) > 0 {
		ready := f.ready
		f.ready = f.later[:0]
		for _, c := range ready {
			if c.queued {
				c.queued = false
				f.run(c)
			}
		}
		clear(ready)
		f.later = ready[:0]
	}
	if !f.swept && f.p.loop.Closing() {
		f.swept = true
		for _, c := range slices.Clone(f.all) {
			if c.phase == phHead && (c.s == nil || c.s.in.buffered() == 0) || c.phase == phIdleUp {
				f.drop(c)
			}
		}
	}
	if f.closing.Load() {
		f.cutExchanges()
	}
}

// cutExchanges closes the client connections whose exchange goes to a
// backend CloseConns named, with their backend connections, and that
// backend's kept-alive connections. An exchange still dialling is not cut.
func (f *loopFront) cutExchanges() {
	p := f.p
	p.fronts.mu.Lock()
	ids := f.closeIDs
	f.closeIDs = nil
	f.closing.Store(false)
	p.fronts.mu.Unlock()
	for _, c := range slices.Clone(f.all) {
		if c.b == nil || !slices.Contains(ids, c.b.ID) {
			continue
		}
		switch c.phase {
		case phSend, phRespHead, phBody, phIdleUp:
			f.drop(c)
		}
	}
}

// Expire acts on the timers due: see timedOut.
func (f *loopFront) Expire() (int64, bool) {
	now := f.core.Now()
	for _, q := range f.timers {
		for c := q.Due(now); c != nil; c = q.Due(now) {
			f.timedOut(c)
		}
	}
	if len(f.timers) > 8 {
		f.timers.Prune(-1)
	}
	return f.timers.Next(), len(f.ready) > 0
}

// CloseAll closes every connection the loop holds.
func (f *loopFront) CloseAll() {
	for len(f.all) > 0 {
		f.drop(f.all[len(f.all)-1])
	}
}

// arm runs c's timer for d from now, or stops it when d is not positive.
func (f *loopFront) arm(c *loopConn, d time.Duration) {
	if d <= 0 {
		c.timer.Stop()
		return
	}
	f.timers.Of(int64(d)).Arm(&c.timer, f.core.Now())
}

// timedOut acts on c's timer: what ran out depends on where c is. Each
// case closes c or arms its timer anew.
func (f *loopFront) timedOut(c *loopConn) {
	s := c.s
	switch c.phase {
	case phHead:
		if c.headTimed && s != nil && s.in.buffered() > 0 {
			f.reject(c, 408)
			return
		}
		f.drop(c)
	case phConnect:
		f.dialFailed(c, errConnectTimeout)
	case phSend, phRespHead:
		// Silence past the server timeout once the backend had the
		// request: its fault, and the client gets 504.
		b := c.b
		f.closeUp(c)
		s.backendFault(b, os.ErrDeadlineExceeded)
		f.answer(c, 504)
		f.run(c)
	default: // a stalled body, a client that does not read, a linger, an idle backend connection
		f.drop(c)
	}
}

// errConnectTimeout is a dial that did not complete within the connect
// timeout.
var errConnectTimeout = errors.New("connect: i/o timeout")

// step is what one step of a connection came to.
type step uint8

const (
	stepOn   step = iota // c may take its next step
	stepWait             // c waits for an event or its timer
	stepGone             // c is closed (or handed over)
)

// run moves c on until it waits or is gone.
func (f *loopFront) run(c *loopConn) {
	for {
		var r step
		switch c.phase {
		case phHead:
			r = f.readRequest(c)
		case phSend:
			r = f.writeRequest(c)
		case phRespHead:
			r = f.readResponse(c)
		case phBody:
			r = f.relayBody(c)
		case phFlush:
			r = f.flushAnswer(c)
		case phLinger:
			r = f.linger(c)
		case phChoose:
			f.connect(c, c.s.next())
		default: // phConnect waits for its event
			return
		}
		if r != stepOn {
			return
		}
	}
}

// newConn returns a connection from the loop's spares, with a session.
func (f *loopFront) newConn() *loopConn {
	var c *loopConn
	if n := len(f.free); n > 0 {
		c, f.free = f.free[n-1], f.free[:n-1]
	} else {
		c = &loopConn{}
	}
	c.client.Reset(-1, c)
	c.server.Reset(-1, c)
	c.timer.Owner = c
	c.cr.ep, c.ur.ep = &c.client, &c.server
	c.slot = len(f.all)
	f.all = append(f.all, c)
	return c
}

// freeConn keeps c, whose sockets are closed or handed on, for reuse.
func (f *loopFront) freeConn(c *loopConn) {
	c.timer.Stop()
	last := f.all[len(f.all)-1]
	f.all[c.slot], last.slot = last, c.slot
	f.all[len(f.all)-1] = nil
	f.all = f.all[:len(f.all)-1]
	if c.s != nil {
		f.detach(c)
	}
	if c.pend != nil {
		f.putPend(c.pend)
	}
	if c.upBuf != nil {
		f.putUpBuf(c.upBuf)
	}
	*c = loopConn{}
	if len(f.free) < 1024 {
		f.free = append(f.free, c)
	}
}

// newLoopSession returns a session for a loop connection: the goroutine
// engine's per-connection state, without a net.Conn.
func (p *Proxy) newLoopSession() *session {
	return &session{
		p:     p,
		inBuf: make([]byte, smallHead),
		out:   make([]byte, 0, 4096),
		tmp:   make([]byte, 0, 1024),
		ip:    make([]byte, 0, 64),
	}
}

// drop closes c at once: a client connection with its backend connection,
// or a kept-alive backend connection.
func (f *loopFront) drop(c *loopConn) {
	if c.phase == phIdleUp {
		f.dropIdle(c)
		return
	}
	f.closeUp(c)
	f.core.Forget(&c.client)
	f.p.loop.Counts.Closed()
	f.conns--
	f.freeConn(c)
}

// readRequest reads the next request head and starts its exchange, as
// the goroutine engine's handle does.
func (f *loopFront) readRequest(c *loopConn) step {
	if c.s == nil {
		if !c.client.Readable {
			return stepWait
		}
		f.attach(c)
	}
	s := c.s
	if s.in.buffered() == 0 {
		if !c.client.Readable {
			return stepWait
		}
		s.in.r, s.in.w, s.in.scan = 0, 0, 0
	}
	head, partial, err := s.in.readHead()
	if err != nil {
		switch {
		case err == errWouldBlock:
			if partial && !c.headTimed {
				// The request's first byte came: its head must be
				// whole within the header timeout.
				c.headTimed = true
				f.arm(c, s.cfg.header)
			}
			return stepWait
		case errors.Is(err, errHeadTooLarge):
			f.reject(c, 431)
		default:
			f.drop(c)
		}
		return stepGone
	}
	if headBlank(head) {
		// Empty lines before a request are ignored (RFC 9112 2.2), a few
		// of them.
		if c.blank++; c.blank > maxBlankHeads {
			f.reject(c, 400)
			return stepGone
		}
		return stepOn
	}
	c.blank = 0
	if err := parseRequestHead(head, &s.req); err != nil {
		var he *headError
		status := 400
		if errors.As(err, &he) {
			status = he.status
		}
		f.reject(c, status)
		return stepGone
	}
	if handedOver(&s.req) {
		f.handOff(c, s.in.r-len(head))
		return stepGone
	}
	c.first = false
	s.beginAccount()
	f.startExchange(c)
	return stepOn
}

// handedOver reports whether the goroutine engine serves req and the rest
// of its connection: a request with a body, an upgrade or an Expect, or
// an HTTP/1.0 one.
func handedOver(req *requestHead) bool {
	return req.chunked || req.contentLength > 0 || req.upgrade || req.expectContinue ||
		string(req.proto) == "HTTP/1.0"
}

// awaitRequest readies c for its next request, after an answer went out
// whole on a connection that stays open.
func (f *loopFront) awaitRequest(c *loopConn) step {
	p, s := f.p, c.s
	s.in.release()
	cfg := c.waitCfg
	if cfg == nil {
		cfg = p.tuned.Load()
	}
	c.waitCfg = nil
	if cfg != s.cfg {
		s.tune(cfg)
	}
	if s.sized != s.cfg && s.in.resize(s.small(s.cfg), s.cfg.heads) {
		s.sized = s.cfg
	}
	if c.pend != nil {
		f.putPend(c.pend)
		c.pend, c.pendOff = nil, 0
	}
	c.phase = phHead
	if s.in.buffered() > 0 {
		c.headTimed = true
		f.arm(c, s.cfg.header)
		return stepOn
	}
	if p.loop.Closing() {
		f.drop(c)
		return stepGone
	}
	c.headTimed = false
	f.arm(c, s.cfg.idle)
	f.detach(c)
	return stepOn
}

// startExchange chooses the backend for the request in s.req, as the
// goroutine engine's exchange does, and starts sending it there.
func (f *loopFront) startExchange(c *loopConn) {
	p, s := f.p, c.s
	req := &s.req
	c.retryable = idempotent(req.method)
	s.isHead = string(req.method) == "HEAD"
	s.http10 = false
	if cfg := p.tuned.Load(); cfg != s.cfg {
		s.tune(cfg)
	}
	s.st = p.current()
	s.try = backend.NewAttempt(s.st.reg, s.cfg.sel, s.addrKey, s.pinned())
	b := s.next()
	if !s.try.Pinned() && p.NAT != nil {
		p.NAT.Session(s.from)
	}
	c.retriedOther, c.retriedFresh = false, false
	f.connect(c, b)
}

// connect gets c a connection to b: a kept-alive one when the request may
// go twice, else a new dial, failing over in the attempt's order while
// dials fail at once. With no backend left, the client gets 503.
func (f *loopFront) connect(c *loopConn, b *backend.Backend) {
	p, s := f.p, c.s
	for {
		if b == nil {
			f.answer(c, 503)
			return
		}
		c.b = b
		if c.retryable && !c.retriedFresh && b.SendProxy() == 0 && f.takeIdle(c, b) {
			c.reused = true
			f.send(c)
			return
		}
		c.reused = false
		t := f.target(b)
		if t == nil {
			// Not the backend's fault: passive health is not told.
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", errNotLiteral)
			s.try.Fail(b)
			b = s.next()
			continue
		}
		fd, e := evloop.Socket(t.Family)
		if e != 0 {
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", e)
			s.try.Fail(b)
			b = s.next()
			continue
		}
		e = evloop.Connect(fd, t)
		if e == 0 || e == unix.EINPROGRESS {
			c.server.Reset(fd, c)
			if e := f.core.Register(&c.server); e != 0 {
				evloop.Close(fd)
				c.server.Reset(-1, c)
				s.try.Fail(b)
				b = s.next()
				continue
			}
			c.upAddr = t.Address
			c.phase = phConnect
			f.arm(c, s.cfg.dialer.Timeout)
			return
		}
		evloop.Close(fd)
		err := b.DialError(e)
		b.CountConnectFailure()
		p.Health.ReportFailure(b, err)
		p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
		s.try.Fail(b)
		b = s.next()
	}
}

// dialFailed ends a dial that failed (or timed out) and moves on to the
// next backend.
func (f *loopFront) dialFailed(c *loopConn, err error) {
	p, s, b := f.p, c.s, c.b
	f.core.Forget(&c.server)
	err = b.DialError(err)
	b.CountConnectFailure()
	p.Health.ReportFailure(b, err)
	p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
	s.try.Fail(b)
	c.b = nil
	// The next backend may be reached over a kept-alive connection: the
	// choice waits for the loop's Work, once every event of the wake has
	// been seen (see Event).
	c.phase = phChoose
	c.timer.Stop()
	if !c.queued {
		c.queued = true
		f.ready = append(f.ready, c)
	}
}

// errNotLiteral is the dial error of a backend that a reload gave a host
// name while an event loop serves: the loop dials IP literals only.
var errNotLiteral = errors.New("address is not an IP literal, which the event loop needs (a restart serves names)")

// target returns b's address in the form connect takes (see the L4
// loop's, which this follows), or nil when it is not an IP literal.
func (f *loopFront) target(b *backend.Backend) *evloop.Target {
	addr := b.Address()
	if t := f.targets[b]; t != nil && t.Address == addr {
		return t
	}
	if reg := f.p.Pool.Registry(); reg != f.reg {
		f.reg = reg
		for old := range f.targets {
			if reg.Get(old.ID) != old {
				delete(f.targets, old)
			}
		}
	}
	t := evloop.TargetFor(addr)
	if t != nil {
		f.targets[b] = t
	}
	return t
}

// send begins the exchange with c.b over c's backend connection: the
// request head (after a PROXY header for a backend that wants one) goes
// out, and the server timeout runs.
func (f *loopFront) send(c *loopConn) {
	s, b := c.s, c.b
	s.tried(b)
	b.Acquire()
	c.held = true
	s.out = s.appendRequestHead(s.out[:0], b)
	c.upOut = s.out
	if v := b.SendProxy(); v != 0 {
		var local netip.AddrPort
		if sa, err := unix.Getsockname(c.client.FD); err == nil {
			local = sockaddrAddrPort(sa)
		}
		hdr := proxyproto.Append(make([]byte, 0, proxyproto.MaxV1+len(s.out)), v, s.from, local)
		c.upOut = append(hdr, s.out...)
	}
	s.acct.sent = time.Now()
	c.phase = phSend
	f.arm(c, s.cfg.server)
}

// writeRequest writes what is left of the request head to the backend.
func (f *loopFront) writeRequest(c *loopConn) step {
	if !c.server.Writable {
		return stepWait
	}
	n, e := evloop.Write(c.server.FD, c.upOut)
	switch {
	case e == unix.EAGAIN:
		c.server.Writable = false
		return stepWait
	case e != 0:
		return f.exchangeFailed(c, e, c.reused, false)
	}
	if c.upOut = c.upOut[n:]; len(c.upOut) > 0 {
		c.server.Writable = false
		return stepWait
	}
	c.upOut = nil
	if c.upBuf == nil {
		c.upBuf = f.getUpBuf()
	}
	c.s.up.reset(&c.ur, c.upBuf, nil)
	c.phase = phRespHead
	return stepOn
}

// readResponse reads the response head, relaying interim responses, and
// starts the final one's relay.
func (f *loopFront) readResponse(c *loopConn) step {
	p, s, b := f.p, c.s, c.b
	head, partial, err := s.up.readHead()
	if err == errWouldBlock {
		return stepWait
	}
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			f.closeUp(c)
			s.backendFault(b, err)
			f.answer(c, 502)
			return stepOn
		}
		return f.exchangeFailed(c, err, c.reused && !partial, true)
	}
	if err := parseResponseHead(head, &s.resp); err != nil {
		f.closeUp(c)
		s.backendFault(b, err)
		f.answer(c, 502)
		return stepOn
	}
	s.headRead(b)
	switch {
	case s.resp.status == 101:
		// Upgrades are handed over before they reach a backend: this
		// backend switched on its own, which any client could provoke,
		// so its health is not told.
		f.closeUp(c)
		p.logger().Debug("backend switched protocols unasked", "backend", b.ID)
		f.answer(c, 502)
		return stepOn
	case s.resp.status < 200:
		// An interim response goes to the client as it is; the final one
		// follows within a fresh server timeout.
		s.out = s.appendResponseHead(s.out[:0], nil, false, false)
		if !f.writeClient(c, s.out) {
			f.drop(c)
			return stepGone
		}
		f.arm(c, s.cfg.server)
		return stepOn
	}
	return f.beginResponse(c)
}

// exchangeFailed handles a backend connection that broke before a
// response head, as the goroutine engine's failed does: a stale kept-alive
// connection is retried fresh, a request that may go twice goes to
// another backend (once), anything else gets 502.
func (f *loopFront) exchangeFailed(c *loopConn, err error, stale, sent bool) step {
	s, b := c.s, c.b
	f.closeUp(c)
	if stale && c.retryable {
		c.retriedFresh = true
		f.connect(c, b)
		return stepOn
	}
	s.backendFault(b, err, "request_sent", sent)
	if !c.retryable || c.retriedOther {
		f.answer(c, 502)
		return stepOn
	}
	c.retriedOther, c.retriedFresh = true, false
	s.try.Fail(b)
	f.connect(c, s.next())
	return stepOn
}

// beginResponse writes the final response head to the client and starts
// its body's relay, as the goroutine engine's relayResponse does.
func (f *loopFront) beginResponse(c *loopConn) step {
	p, s, b := f.p, c.s, c.b
	req, resp := &s.req, &s.resp
	framing := framingOf(s.isHead, resp)
	c.reframe = framing == untilClose && resp.te == nil
	c.closeAfter = req.close || p.loop.Closing() || framing == untilClose && !c.reframe
	c.endKnown = framing != untilClose && !(resp.status == 204 && (resp.contentLength > 0 || resp.chunked))
	var cookieFor *backend.Backend
	if !s.try.Pinned() {
		cookieFor = b
	}
	s.out = s.appendResponseHead(s.out[:0], cookieFor, c.closeAfter, framing == chunkedBody || c.reframe)
	c.waitCfg = p.tuned.Load()
	left := resp.contentLength
	if framing == fixedLength && int64(s.up.buffered()) >= left && int(left) <= cap(s.out)-len(s.out) {
		s.out = append(s.out, s.up.buf[s.up.r:s.up.r+int(left)]...)
		s.up.r += int(left)
		left = 0
	}
	if !f.writeClient(c, s.out) {
		f.drop(c)
		return stepGone
	}
	c.framing, c.left, c.chunk, c.trailers = framing, left, chunkSize, 0
	c.phase = phBody
	return stepOn
}

// relayBody moves the response body on, piece by piece as it arrives,
// checking its framing as copyChunked does; once it is whole the exchange
// ends.
func (f *loopFront) relayBody(c *loopConn) step {
	s := c.s
	for steps := 0; ; steps++ {
		if steps == relaySteps {
			// A fast body must not starve the loop's other
			// connections: the rest waits for the next round.
			c.queued = true
			f.ready = append(f.ready, c)
			return stepWait
		}
		if c.pendOff < len(c.pend) {
			if r := f.flush(c); r != stepOn {
				return r
			}
		}
		var p []byte
		var err error
		done := false
		switch c.framing {
		case noBody:
			done = true
		case fixedLength:
			if c.left == 0 {
				done = true
				break
			}
			if p, err = s.up.next(c.left); err == nil {
				c.left -= int64(len(p))
				if !f.writeClient(c, p) {
					f.drop(c)
					return stepGone
				}
			}
		case chunkedBody:
			done, err = f.relayChunk(c)
		case untilClose:
			p, err = s.up.next(1 << 62)
			if err == io.EOF {
				err, done = nil, true
				c.endKnown = false
				if c.reframe && !f.writeClient(c, lastChunk) {
					f.drop(c)
					return stepGone
				}
				break
			}
			if err == nil && !f.writeChunkOf(c, p) {
				f.drop(c)
				return stepGone
			}
		}
		switch {
		case err == errWouldBlock:
			f.arm(c, s.cfg.server)
			return stepWait
		case err != nil:
			// The head has gone out: the client's connection can only
			// close. A backend that cuts its body is not counted against
			// its health; that is judged before the head.
			f.p.logger().Debug("backend response cut", "backend", c.b.ID, "error", unexpectedEOF(err))
			f.drop(c)
			return stepGone
		case done:
			return f.endExchange(c)
		}
	}
}

// relaySteps bounds the pieces of a body one connection relays before the
// loop's other connections have their turn.
const relaySteps = 32

// writeChunkOf writes p as the client gets a body that runs until the
// backend closes: as one chunk when it is re-framed, else as it is.
func (f *loopFront) writeChunkOf(c *loopConn, p []byte) bool {
	if !c.reframe {
		return f.writeClient(c, p)
	}
	return f.writeClient(c, c.s.up.appendSizeLine(int64(len(p)))) && f.writeClient(c, p) && f.writeClient(c, crlfBytes)
}

// relayChunk takes one step of a chunked body: a size line, a piece of a
// chunk's data, its CRLF, or a trailer line; each is checked before it is
// forwarded, with the size line written as lbctl's own (see copyChunked).
func (f *loopFront) relayChunk(c *loopConn) (done bool, err error) {
	src := &c.s.up
	switch c.chunk {
	case chunkSize:
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return false, chunkStepErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return false, errBadChunk
		}
		if !f.writeClient(c, src.appendSizeLine(size)) {
			return false, errClientWrite
		}
		if size == 0 {
			c.chunk = chunkTrailers
		} else {
			c.chunk, c.left = chunkData, size
		}
	case chunkData:
		p, err := src.next(c.left)
		if err != nil {
			return false, err
		}
		c.left -= int64(len(p))
		if !f.writeClient(c, p) {
			return false, errClientWrite
		}
		if c.left == 0 {
			c.chunk = chunkCRLF
		}
	case chunkCRLF:
		crlf, err := src.readLine(2)
		if err != nil {
			return false, chunkStepErr(err)
		}
		if !bytes.Equal(crlf, crlfBytes) {
			return false, errBadChunk
		}
		if !f.writeClient(c, crlf) {
			return false, errClientWrite
		}
		c.chunk = chunkSize
	case chunkTrailers:
		if c.trailers++; c.trailers > maxTrailers+1 {
			return false, errBadChunk
		}
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return false, chunkStepErr(err)
		}
		if !validTrailer(line) {
			return false, errBadChunk
		}
		if !f.writeClient(c, line) {
			return false, errClientWrite
		}
		return len(line) == 2, nil
	}
	return false, nil
}

// chunkStepErr is chunkErr for a step that may have found nothing yet.
func chunkStepErr(err error) error {
	if err == errWouldBlock {
		return err
	}
	return chunkErr(err)
}

// errClientWrite is a write to the client that failed.
var errClientWrite = errors.New("writing to the client failed")

// endExchange settles both connections once the response is whole: the
// backend connection is kept for the next exchange when the response
// ended where its framing says, and the client's waits for its next
// request once the answer has gone out, unless it closes after it.
func (f *loopFront) endExchange(c *loopConn) step {
	s, b := c.s, c.b
	if c.endKnown && !s.resp.close && s.up.buffered() == 0 {
		f.keepUp(c)
	} else {
		f.closeUp(c)
	}
	b.CountServed()
	s.endAccount()
	c.phase = phFlush
	return stepOn
}

// answer writes a canned error as the answer to the request, as the
// goroutine engine's answer does (the request has no body here), and ends
// the exchange.
func (f *loopFront) answer(c *loopConn, status int) {
	s := c.s
	resp := cannedFor(status)
	s.acct.status = status
	keep := !s.req.close && !f.p.loop.Closing()
	msg := resp.close
	if keep {
		msg = resp.keepAlive
	}
	if s.isHead {
		msg = msg[:len(msg)-resp.bodyLen]
	}
	c.closeAfter = !keep
	c.waitCfg = f.p.tuned.Load()
	c.timer.Stop() // flushAnswer arms it for what comes next
	s.endAccount()
	if !f.writeClient(c, msg) {
		c.closeAfter = true
	}
	c.phase = phFlush
}

// reject answers a request that will not be forwarded with a canned error
// and closes the connection gracefully, as the goroutine engine's reject
// does: the answer, the FIN, then a short linger reading what the client
// still sends, so that closing with unread input does not reset the
// connection before the client has read the answer.
func (f *loopFront) reject(c *loopConn, status int) {
	c.s.acct.status = status
	if !f.writeClient(c, cannedFor(status).close) {
		f.drop(c)
		return
	}
	c.phase = phLinger
	f.arm(c, time.Second)
	f.run(c)
}

// linger sends the FIN once the answer has gone, then drops what the
// client sends until it closes, 256 KiB have come, or the timer ends it.
func (f *loopFront) linger(c *loopConn) step {
	if c.pendOff < len(c.pend) {
		return f.flush(c)
	}
	if !c.shut {
		c.shut = true
		evloop.ShutdownWrite(c.client.FD)
		f.arm(c, 500*time.Millisecond)
	}
	for c.client.Readable {
		n, err := c.cr.Read(f.scratch)
		if err == errWouldBlock {
			break
		}
		if c.lingered += n; err != nil || c.lingered >= 256<<10 {
			f.drop(c)
			return stepGone
		}
	}
	return stepWait
}

// flushAnswer waits for the answer to go out whole, then closes the
// connection or readies it for the next request.
func (f *loopFront) flushAnswer(c *loopConn) step {
	if c.pendOff < len(c.pend) {
		if r := f.flush(c); r != stepOn {
			return r
		}
	}
	if c.closeAfter {
		f.drop(c)
		return stepGone
	}
	return f.awaitRequest(c)
}

// writeClient writes p to the client, keeping what the socket cannot take
// yet for flush. It reports false when the client's socket failed.
func (f *loopFront) writeClient(c *loopConn, p []byte) bool {
	c.s.cw.n += int64(len(p))
	if c.pendOff == len(c.pend) && c.client.Writable {
		n, e := evloop.Write(c.client.FD, p)
		switch {
		case e == unix.EAGAIN:
			n = 0
		case e != 0:
			return false
		}
		if p = p[n:]; len(p) == 0 {
			return true
		}
		c.client.Writable = false
	}
	if c.pend == nil {
		c.pend = f.getPend()
	}
	if c.pendOff == len(c.pend) {
		c.pend, c.pendOff = c.pend[:0], 0
	}
	c.pend = append(c.pend, p...)
	return true
}

// flush writes what the client's socket could not take before; it
// reports stepOn once all of it has gone, stepWait when the client must
// read first (under the idle timeout), stepGone when the socket failed.
func (f *loopFront) flush(c *loopConn) step {
	if !c.client.Writable {
		f.arm(c, c.s.cfg.idle)
		return stepWait
	}
	n, e := evloop.Write(c.client.FD, c.pend[c.pendOff:])
	switch {
	case e == unix.EAGAIN:
		c.client.Writable = false
		f.arm(c, c.s.cfg.idle)
		return stepWait
	case e != 0:
		f.drop(c)
		return stepGone
	}
	if c.pendOff += n; c.pendOff < len(c.pend) {
		c.client.Writable = false
		f.arm(c, c.s.cfg.idle)
		return stepWait
	}
	c.pend, c.pendOff = c.pend[:0], 0
	return stepOn
}

// keepUp keeps c's backend connection for the next exchange with its
// backend, as the goroutine engine's release does: not when the proxy is
// closing, the backend wants PROXY headers, reuse is off, the loop keeps
// enough, or a reload moved the backend since the connection was made.
func (f *loopFront) keepUp(c *loopConn) {
	p, b := f.p, c.b
	ups := f.idleUps[b]
	if p.loop.Closing() || b.SendProxy() != 0 || len(ups) >= p.maxIdle || b.Address() != c.upAddr {
		f.closeUp(c)
		return
	}
	u := f.newConn()
	u.phase, u.b, u.upAddr = phIdleUp, b, c.upAddr
	f.core.Move(&u.server, &c.server)
	f.idleUps[b] = append(ups, u)
	f.arm(u, c.s.cfg.idle)
	f.endUse(c)
}

// takeIdle gives c the most recently used kept-alive connection to b,
// and reports whether there was one. Connections made to an address b no
// longer has are closed.
func (f *loopFront) takeIdle(c *loopConn, b *backend.Backend) bool {
	addr := b.Address()
	for {
		ups := f.idleUps[b]
		if len(ups) == 0 {
			return false
		}
		u := ups[len(ups)-1]
		if u.upAddr != addr {
			f.dropIdle(u)
			continue
		}
		ups[len(ups)-1] = nil
		f.idleUps[b] = ups[:len(ups)-1]
		f.core.Move(&c.server, &u.server)
		c.upAddr = u.upAddr
		f.freeConn(u)
		return true
	}
}

// dropIdle closes a kept-alive backend connection.
func (f *loopFront) dropIdle(u *loopConn) {
	ups := f.idleUps[u.b]
	if i := slices.Index(ups, u); i >= 0 {
		f.idleUps[u.b] = slices.Delete(ups, i, i+1)
	}
	f.core.Forget(&u.server)
	f.freeConn(u)
}

// closeUp closes c's backend connection, if any, and ends its use.
func (f *loopFront) closeUp(c *loopConn) {
	f.core.Forget(&c.server)
	f.endUse(c)
}

// endUse ends the exchange's hold on its backend and its response buffer.
func (f *loopFront) endUse(c *loopConn) {
	if c.held {
		c.b.Release()
		c.held = false
	}
	c.upOut = nil
	if c.s != nil {
		c.s.up.reset(nil, nil, nil)
	}
	if c.upBuf != nil {
		f.putUpBuf(c.upBuf)
		c.upBuf = nil
	}
}

func (f *loopFront) getUpBuf() []byte {
	if n := len(f.upBufs); n > 0 {
		b := f.upBufs[n-1]
		f.upBufs = f.upBufs[:n-1]
		return b
	}
	return make([]byte, upBufSize)
}

func (f *loopFront) putUpBuf(b []byte) {
	if len(f.upBufs) < spareSessions {
		f.upBufs = append(f.upBufs, b)
	}
}

func (f *loopFront) getPend() []byte {
	if n := len(f.pends); n > 0 {
		b := f.pends[n-1]
		f.pends = f.pends[:n-1]
		return b
	}
	return make([]byte, 0, 16<<10)
}

func (f *loopFront) putPend(b []byte) {
	if len(f.pends) < spareSessions {
		f.pends = append(f.pends, b[:0])
	}
}

// handOff gives c's connection to the goroutine engine for the rest of its
// life, with what the loop has read of it from offset from in its input
// buffer on (the request head just parsed, and anything after it): the
// goroutine engine reads the head again as if it had read it itself (see
// resumeHandoff). The connection leaves the loop but stays counted open.
func (f *loopFront) handOff(c *loopConn, from int) {
	p, s := f.p, c.s
	pre := bytes.Clone(s.in.buf[from:s.in.w])
	client := s.from
	fd := f.core.Detach(&c.client)
	f.conns--
	f.freeConn(c)
	file := os.NewFile(uintptr(fd), "l7-client")
	nc, err := net.FileConn(file)
	file.Close()
	if err != nil {
		p.logger().Debug("hand-over to the goroutine engine failed", "client", client.String(), "error", err)
		p.loop.Counts.Closed()
		return
	}
	ac := &accept.Conn{TCPConn: nc.(*net.TCPConn), Client: client}
	p.handoffs.Store(ac, pre)
	if !p.loop.Unpark(ac) {
		p.handoffs.Delete(ac)
	}
}

// resumeHandoff puts the bytes an event loop read of ac, which it handed
// over, in s's input buffer, so that the goroutine engine reads them
// first. It reports false when they do not fit (a Reconfigure lowered the
// head limit meanwhile): the connection must close then.
func (p *Proxy) resumeHandoff(ac *accept.Conn, s *session) bool {
	v, ok := p.handoffs.LoadAndDelete(ac)
	if !ok {
		return true
	}
	pre := v.([]byte)
	if len(pre) > len(s.in.buf) && !s.in.grow() || len(pre) > len(s.in.buf) {
		return false
	}
	s.in.r, s.in.w, s.in.scan = 0, copy(s.in.buf, pre), 0
	return true
}

// sockaddrAddrPort converts a socket address to an address and port.
func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

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
	"github.com/lbctl/lbctl/internal/peek"
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
// its connection's life (see handOff): one whose body did not all come
// with its head (a body that did goes out with the head), a chunked body,
// an upgrade or an Expect. TLS listeners, PROXY protocol
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
	upBufs  evloop.Spares                    // spare response buffers, of upBufSize
	pends   evloop.Spares                    // spare client output buffers
	targets evloop.Targets[*backend.Backend, *backend.Registry]
	scratch []byte      // what a lingering client still sends is read here
	spare   []*session  // sessions of connections that wait for a request
	ready   []*loopConn // connections to run once the wake's events are seen, or whose relay ran out of budget
	later   []*loopConn // the other ready list, swapped each round

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

	hasBody                                       bool // the request's body came whole with its head, and goes out with it
	reused, retryable, retriedFresh, retriedOther bool
	framing                                       bodyFraming
	left                                          int64
	chunk                                         chunkPhase
	trailers                                      int
	closeAfter, endKnown, reframe, dechunk        bool
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
			scratch: make([]byte, 4096),
			upBufs:  evloop.Spares{Size: upBufSize, Max: spareSessions},
			pends:   evloop.Spares{Size: 16 << 10, Max: spareSessions},
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
		// A client that has sent its request already, though the loop
		// has not read it yet, is served (with Connection: close), not
		// reset with the request unread (see accept.Loop's closeConns).
		for _, c := range slices.Clone(f.all) {
			if c.phase == phHead && (c.s == nil || c.s.in.buffered() == 0) && !peek.SentFD(c.client.FD) || c.phase == phIdleUp {
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
		f.pends.Put(c.pend)
	}
	if c.upBuf != nil {
		f.upBufs.Put(c.upBuf)
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

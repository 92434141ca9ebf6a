// Package l4 owns lbctl's TCP front door: it keys each client by its source
// address, keeps that key pinned to one backend in an affinity table, fails
// over to another backend when the dial fails, and relays bytes both ways
// with half-close until both ends are done or the connection is idle.
//
// Two engines serve a listener with the same rules. On Linux, edge-triggered
// epoll event loops, one per core by default (see Proxy.Loops), accept from
// the listener and own every socket as a raw descriptor (see eventLoop);
// elsewhere, or when the listener is not TCP or a backend is named by host
// name (the loop never resolves names), a goroutine per connection accepts
// through internal/accept and relays through internal/splice. Serve logs
// which engine serves and why.
package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/asynclog"
	"github.com/lbctl/lbctl/internal/proxyproto"
	"github.com/lbctl/lbctl/natview"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = accept.ErrClosed

// DefaultConnectTimeout bounds a backend dial when Proxy.ConnectTimeout is zero.
const DefaultConnectTimeout = backend.DefaultConnectTimeout

// Proxy accepts TCP connections and relays each one to the backend its
// client is pinned to. Pool, Selector and Table must be set before Serve;
// the other fields have working zero values. A Proxy must not be copied
// after first use.
type Proxy struct {
	// Pool is the backend pool. A reload of it takes effect at each
	// client's next connection; open connections are left as they are.
	// The event loop never resolves names: a backend that a reload gives
	// a host name is skipped there (not counted as failing) until a
	// restart, which serves the pool on the portable engine.
	Pool *backend.Pool
	// Selector chooses a backend for clients without a usable pin.
	// Selector, ConnectTimeout and IdleTimeout are read when Serve is first
	// called; Reconfigure changes them after that.
	Selector backend.Selector
	// Table holds the client-to-backend pins.
	Table *affinity.Table
	// Health receives dial failures as failed checks (passive health). Nil
	// means dial failures only steer the connection to another backend.
	Health *backend.Prober
	// ConnectTimeout bounds each backend dial. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection after this long with no bytes in
	// either direction. Zero means no idle timeout.
	IdleTimeout time.Duration
	// AccessLog, when not nil, gets one record per client connection at
	// its end; a full log drops records, never waits.
	AccessLog *accesslog.Log
	// ProxyProtocol, when its From is set, makes the listener take its
	// clients' addresses from the PROXY protocol headers of the
	// balancers in front of it (see proxyproto.go).
	ProxyProtocol proxyproto.Policy
	// Loops is how many event loops serve each listener on Linux, each in
	// a goroutine of its own, accepting from the listener's one socket.
	// Zero means runtime.GOMAXPROCS at Serve: a loop per core the Go
	// runtime uses. It is read by Serve; the portable engine ignores it.
	Loops int
	// Logger receives accept errors, and refused clients at debug level.
	// Nil means slog.Default(). The event loop never writes to it (or to
	// Health's logger) itself: it hands its lines to a goroutine of the
	// proxy, so that a stalled log output costs lines (dropped, then
	// counted in a line of their own) and never stalls traffic.
	Logger *slog.Logger
	// NAT counts each accepted connection by its client key, for the NAT
	// view; nil counts nothing.
	NAT *natview.Tracker

	init  sync.Once
	loop  accept.Loop              // the portable engine
	tuned atomic.Pointer[settings] // what new connections use: see Reconfigure

	// What the event loops log through: a queue that a goroutine, started
	// with the first loop and stopped by Shutdown or Close once every loop
	// has ended, writes to Logger and to Health's logger.
	logq       *asynclog.Queue
	loopLog    *slog.Logger    // Logger, through logq
	loopHealth *backend.Prober // Health, logging through logq

	// The event loops serving listeners (Loops per Serve call), for
	// StopAccepting and CloseConns; loop runs and stops them.
	mu    sync.Mutex
	loops map[*eventLoop]struct{}
	// Listeners that StopAccepting retired while Serve serves them: an
	// event loop of theirs that registers late is retired by addLoop.
	retired map[net.Listener]struct{}
	// loopBase holds, by loop index, the connections accepted by the
	// loops that have ended: see LoopAccepts.
	loopBase []uint64

	// The portable engine's open connections, by client connection, for
	// CloseConns.
	relaysMu sync.Mutex
	relays   map[*net.TCPConn]relay
}

// logger returns Logger, or slog.Default() when it is nil (once setup
// has run).
func (p *Proxy) logger() *slog.Logger { return p.loop.Log() }

// settings returns the fields that Reconfigure replaces.
func (p *Proxy) settings() Settings {
	return Settings{Selector: p.Selector, ConnectTimeout: p.ConnectTimeout, IdleTimeout: p.IdleTimeout}
}

func (p *Proxy) setup() {
	p.init.Do(func() {
		p.loop.Handle = p.handle
		if hook := testHookAccepted; hook != nil {
			// The event loop calls it itself: see startSession.
			p.loop.Handle = func(c *accept.Conn) {
				if rc, err := c.SyscallConn(); err == nil {
					rc.Control(func(fd uintptr) { hook(int(fd)) })
				}
				p.handle(c)
			}
		}
		p.loop.Logger = p.Logger
		// A missing Selector is Serve's error to report; the
		// settings then wait for one.
		if r, err := p.settings().resolve(); err == nil {
			p.tuned.Store(r)
		}
		h := p.logger().Handler()
		p.logq = asynclog.New(logQueue, h)
		p.loopLog = slog.New(p.logq.Wrap(h))
		p.loopHealth = p.Health.WithLogHandler(p.logq.Wrap)
	})
}

// Serve accepts connections on ln and relays each to its backend until ln
// fails or the proxy is shut down, in which case it returns ErrProxyClosed.
// Temporary accept errors (such as running out of file descriptors) are
// retried as accept.Backoff says, on either engine. Serve closes ln when
// it returns.
//
// On Linux, when ln is a TCP listener and every backend address is an IP
// literal when Serve is called, event loops serve the connections of ln
// (see eventLoop and Loops): one in the calling goroutine, the others in
// goroutines that Serve waits for. Otherwise each connection gets its own
// goroutine (the portable engine). Both engines keep the same rules (pins,
// failover, half-close, idle timeout); Serve logs at info level which one
// serves ln, and why when it is the portable one. The event loops take
// ln's socket over at once: ln itself is closed when they start, and the
// socket when Serve returns.
func (p *Proxy) Serve(ln net.Listener) error {
	if p.Pool == nil || p.Selector == nil || p.Table == nil {
		ln.Close()
		return errors.New("l4: Proxy needs Pool, Selector and Table")
	}
	p.setup()
	if p.tuned.Load() == nil {
		// Set after a setup that found no Selector.
		r, err := p.settings().resolve()
		if err != nil {
			ln.Close()
			return err
		}
		p.tuned.CompareAndSwap(nil, r)
	}
	defer p.forgetRetired(ln)
	why := "set by a test"
	if !testHookPortable {
		loops, reason, err := p.newEventLoops(ln, p.loopCount())
		if err != nil {
			ln.Close()
			return err
		}
		if loops != nil {
			// Through the loops' queue: Serve's goroutine is a loop's.
			p.loopLog.Info("l4 engine: event loops serve the listener", "listener", loops[0].name(), "loops", len(loops))
			return p.runLoops(loops)
		}
		why = reason
	}
	// Said once per listener, at start: this engine's costs differ (a
	// goroutine and its stack per connection, more system calls).
	p.logger().Info("l4 engine: a goroutine per connection serves the listener", "listener", ln.Addr().String(), "reason", why)
	return p.loop.Serve(ln)
}

// loopCount returns how many event loops serve a listener: Loops, or
// GOMAXPROCS when it is zero.
func (p *Proxy) loopCount() int {
	switch {
	case p.Loops > 0:
		return p.Loops
	case testHookLoops > 0:
		return testHookLoops
	}
	return runtime.GOMAXPROCS(0)
}

// testHookLoops, when set before Serve, is how many event loops serve each
// listener of a proxy whose Loops is zero, in place of GOMAXPROCS: the
// tests run their behaviour tests with one loop and with two.
var testHookLoops int

// runLoops runs loops, the event loops of one listener, under the proxy's
// accept loop, the first in the calling goroutine, and returns once all of
// them have ended. When one fails, the others are retired, so that Serve
// returns the failure. Serve returns ErrProxyClosed when the proxy shut
// the loops down, and an error wrapping net.ErrClosed when they were
// retired (see StopAccepting).
func (p *Proxy) runLoops(loops []*eventLoop) error {
	ended := make(chan error, len(loops)-1)
	for _, l := range loops[1:] {
		go func() { ended <- p.runLoop(l) }()
	}
	err := p.runLoop(loops[0])
	for range loops[1:] {
		if e := <-ended; !stopped(e) && stopped(err) {
			err = e
		}
	}
	return err
}

// runLoop runs l under the proxy's accept loop and, when l fails, retires
// the other loops of its listener.
func (p *Proxy) runLoop(l *eventLoop) error {
	err := p.loop.Run(l)
	if !stopped(err) {
		p.retire(l.listener())
	}
	return err
}

// stopped reports whether err is how a loop ends when asked to: shut down
// with the proxy, or retired.
func stopped(err error) bool {
	return errors.Is(err, ErrProxyClosed) || errors.Is(err, net.ErrClosed)
}

// testHookPortable, when set before Serve, makes Serve use a goroutine per
// connection even where the event loop could serve: the tests set it to
// run their behaviour tests on both engines on Linux.
var testHookPortable bool

// StopAccepting stops accepting on ln, a listener that Serve serves, and
// leaves the connections accepted there to run on: the proxy keeps
// serving its other listeners, and Shutdown still waits for (or closes)
// those connections. Serve(ln) then returns an error wrapping
// net.ErrClosed: at once with a goroutine per connection, once the last of
// its connections has ended with event loops. A reload uses it to move
// the proxy to a new listen address, and an upgrade to hand the listener
// over.
//
// With event loops, StopAccepting returns once every loop of ln has closed
// its copy of the listening socket (or ended): from then on no connection
// is accepted here, and one that arrives waits in the socket's queue for
// whoever else holds the socket (the new process of an upgrade), every
// connection accepted here having been placed and pinned. A loop that has
// not started yet is retired as it starts (see addLoop), before it
// accepts anything.
func (p *Proxy) StopAccepting(ln net.Listener) {
	done := p.retire(ln)
	ln.Close()
	for _, c := range done {
		<-c
	}
}

// retire asks the event loops of ln to stop accepting and end once their
// connections have, and returns a channel per loop that is closed once
// that loop accepts no more; loops of ln that register later (see
// addLoop) are retired as they do, until Serve(ln) returns.
func (p *Proxy) retire(ln net.Listener) []<-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	var done []<-chan struct{}
	for l := range p.loops {
		if l.listener() == ln {
			if c := l.retire(); c != nil {
				done = append(done, c)
			}
		}
	}
	if p.retired == nil {
		p.retired = make(map[net.Listener]struct{})
	}
	p.retired[ln] = struct{}{}
	return done
}

// forgetRetired drops ln from the retired listeners once its Serve has
// returned.
func (p *Proxy) forgetRetired(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.retired, ln)
}

// logQueue is how many log lines of the event loops may wait for the
// writer; more are dropped. The loops log rarely (accept failures, backend
// transitions, refused clients at debug level).
const logQueue = 256

// Shutdown stops accepting, then waits for open connections to finish on
// their own. When ctx ends first, the remaining connections are closed and
// ctx's error is returned once their handlers have exited. The event
// loops' last log lines are then written, for as long as ctx allows.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.setup()
	err := p.loop.Shutdown(ctx)
	p.logq.Stop()
	if err == nil {
		select {
		case <-p.logq.Done():
		case <-ctx.Done(): // a stalled log output
		}
	}
	return err
}

// Close stops accepting and closes every open connection at once, returning
// after their handlers have exited. The event loops' log writer is told to
// stop; Close does not wait for it to write what is queued.
func (p *Proxy) Close() error {
	p.setup()
	err := p.loop.Close()
	p.logq.Stop()
	return err
}

// addLoop registers an event loop that starts serving, for StopAccepting
// and CloseConns, and starts the log writer. Shutdown and Close reach the
// loop through the accept loop that runs it (see accept.Loop.Run), which
// stops the log writer only after the loop has ended.
func (p *Proxy) addLoop(l *eventLoop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loops == nil {
		p.loops = make(map[*eventLoop]struct{})
	}
	p.loops[l] = struct{}{}
	p.logq.Start()
	if _, ok := p.retired[l.listener()]; ok {
		l.retire()
	}
}

// removeLoop takes l out of the set that StopAccepting and CloseConns
// write to, keeping its count of accepted connections for LoopAccepts.
func (p *Proxy) removeLoop(l *eventLoop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.loops, l)
	p.loopBase = growTo(p.loopBase, l.index+1)
	p.loopBase[l.index] += l.accepted()
}

// LoopAccepts returns how many connections each event loop has accepted
// since the proxy started, by loop index (the loops of every listener
// served so far, a listen moved by a reload included, add up by index), or
// nil when no event loop has served: the portable engine, or before Serve.
// It shows how evenly the kernel spreads the connections over the loops.
// The loops count in atomics of their own; this reads them under the
// proxy's lock, off the data path.
func (p *Proxy) LoopAccepts() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]uint64(nil), p.loopBase...)
	for l := range p.loops {
		out = growTo(out, l.index+1)
		out[l.index] += l.accepted()
	}
	return out
}

// growTo returns s extended with zeros to at least n elements.
func growTo(s []uint64, n int) []uint64 {
	for len(s) < n {
		s = append(s, 0)
	}
	return s
}

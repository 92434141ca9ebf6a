// Package accept owns how lbctl's front doors take clients and stop taking
// them: the accept loop with its one retry policy for failed accepts
// (Backoff), the tracking of open connections, the hand-over of idle ones
// to a keeper that holds them without a goroutine (Conn.Park, Unpark), and
// the one graceful shutdown that waits for busy connections while closing
// idle ones. The
// L7 proxy and the L4 proxy's goroutine engine accept through Loop.Serve;
// the L4 event loop, which accepts on its own socket, retries with the same
// Backoff and is shut down by the same Loop through Run.
package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/internal/peek"
)

// ErrClosed is returned by Serve after Shutdown or Close.
var ErrClosed = errors.New("server closed")

// Conn is one accepted connection as its handler sees it.
type Conn struct {
	*net.TCPConn
	// Client is the client the handler found the connection to carry
	// for (the source a PROXY protocol header named), zero until it sets
	// it; a parked connection served again keeps it, since its header was
	// read when it was new.
	Client netip.AddrPort
	idle   atomic.Bool
	// resumed is set when Unpark serves the connection again.
	resumed bool
	// parkUntil and parked are the handler's request to park the
	// connection (see Park), read by the loop once Handle has returned.
	parkUntil time.Time
	parked    bool
}

// Park asks the loop to hand c, idle, to the loop's Park hook once the
// handler returns without closing it, so that an idle connection costs no
// goroutine: the hook watches it until its client sends again (then Unpark
// serves it anew), until, or until it is stopped with the loop (see
// Server). Only a handler may call it, and only when the loop has a Park
// hook; until is zero for no deadline.
func (c *Conn) Park(until time.Time) {
	c.parkUntil, c.parked = until, true
}

// Resumed reports whether the connection is a parked one served again by
// Unpark, rather than one just accepted.
func (c *Conn) Resumed() bool { return c.resumed }

// SetIdle marks the connection as waiting for its client's next request
// (true) or busy (false). Shutdown closes idle connections at once and
// waits for busy ones. Connections start busy.
func (c *Conn) SetIdle(idle bool) { c.idle.Store(idle) }

// Loop accepts TCP connections and hands each to Handle in its own
// goroutine. Handle owns the connection: it must close it before returning.
// A Loop must not be copied after first use.
type Loop struct {
	// Handle serves one connection.
	Handle func(c *Conn)
	// Park, when set, takes a connection whose handler asked to park it
	// (Conn.Park), with the deadline the handler gave. From then on the
	// loop neither waits for the connection nor closes it: the keeper
	// either serves it again through Unpark or closes it and counts it
	// closed. It reports false when it cannot keep c, and the loop closes
	// c then.
	Park func(c *Conn, until time.Time) bool
	// Logger receives accept errors. Nil means slog.Default().
	Logger *slog.Logger
	// Counts counts the connections the loop accepts and their ends; the
	// handlers may count requests on it.
	Counts Counts

	closing atomic.Bool // set under mu: see stopAccepting
	mu      sync.Mutex  // guards lns, conns and servers
	lns     map[net.Listener]struct{}
	conns   map[*Conn]struct{}
	servers map[Server]struct{}
	wg      sync.WaitGroup // one per live handler and per running Server
}

// Log returns Logger, or slog.Default() when it is nil: the logger of the
// front door that owns the loop.
func (l *Loop) Log() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

// Backoff is the retry policy for an accept that failed for want of a
// resource (file descriptors, memory): the first retry comes after 5ms,
// each next one after twice as long, up to 1s, until an accept succeeds.
// Each failure is logged as a warning naming the listener and the wait.
// The zero value is ready to use; it is not safe for concurrent use.
type Backoff struct {
	wait time.Duration
}

// Failed records a failed accept on listener, logs it to log, and returns
// how long to wait before accepting again.
func (b *Backoff) Failed(log *slog.Logger, listener string, err error) time.Duration {
	b.wait = min(max(2*b.wait, 5*time.Millisecond), time.Second)
	log.Warn("accept failed; retrying", "listener", listener, "error", err, "retry_in", b.wait)
	return b.wait
}

// Reset records a successful accept: the next failure waits 5ms again.
func (b *Backoff) Reset() { b.wait = 0 }

// Closing reports whether Shutdown or Close has been called; handlers of
// kept-alive connections check it between requests.
func (l *Loop) Closing() bool { return l.closing.Load() }

// Serve accepts connections on ln until ln fails or the loop is shut down,
// in which case it returns ErrClosed. Temporary accept errors (such as
// running out of file descriptors) are retried as Backoff says. Serve
// closes ln when it returns.
func (l *Loop) Serve(ln net.Listener) error {
	if !join(l, &l.lns, ln, false) {
		ln.Close()
		return ErrClosed
	}
	defer leave(l, &l.lns, ln, false)
	defer ln.Close()
	var backoff Backoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.closing.Load() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			time.Sleep(backoff.Failed(l.Log(), ln.Addr().String(), err))
			continue
		}
		backoff.Reset()
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		conn := &Conn{TCPConn: tc}
		if !join(l, &l.conns, conn, true) {
			tc.Close()
			return ErrClosed
		}
		l.Counts.Opened()
		go l.serveConn(conn)
	}
}

// serveConn runs Handle for c, which has joined the loop, and then either
// counts c closed or hands it to the Park hook. c leaves the loop's set
// before the hook sees it, and the handler counts as running until the
// hook is done, so that Shutdown cannot return while a connection is on
// its way to the keeper, nor the keeper serve c again (Unpark) while it is
// still in the set.
func (l *Loop) serveConn(c *Conn) {
	defer l.wg.Done()
	l.Handle(c)
	parked, until := c.parked, c.parkUntil
	c.parked, c.parkUntil = false, time.Time{}
	leave(l, &l.conns, c, false)
	if parked {
		if l.Park != nil && l.Park(c, until) {
			return
		}
		c.Close()
	}
	l.Counts.Closed()
}

// Unpark serves c, which the Park hook took, again: Handle runs for it in
// a new goroutine, as for a connection just accepted. c may be a new Conn
// that the keeper made of the parked connection's socket, carrying its
// Client. When the loop is closing, Unpark closes c instead, counts it
// closed and reports false.
func (l *Loop) Unpark(c *Conn) bool {
	if !join(l, &l.conns, c, true) {
		c.Close()
		l.Counts.Closed()
		return false
	}
	c.resumed = true
	go l.serveConn(c)
	return true
}

// A Server serves a listener of its own instead of through Serve (the L4
// event loop takes its listener's socket and every connection into one
// goroutine), and is shut down with the loop's connections: see Run.
type Server interface {
	// Serve serves until the server has been stopped and its connections
	// have ended, or it fails.
	Serve() error
	// Stop asks the server to stop accepting and to end once its
	// connections have (abort false), or to close every connection and
	// end at once (abort true). It is called with the loop's lock held,
	// while Serve runs or before it starts, so it must not block.
	Stop(abort bool)
	// Release frees what Serve used. It runs once, after Serve has
	// returned (or instead of it) and once Stop can no longer be called.
	Release()
}

// Run serves s in the calling goroutine under the loop's shutdown: from
// then on, Shutdown and Close stop s with the loop's own connections and
// wait until s has served and been released. When the loop is closing
// already, s is released without serving and Run returns ErrClosed.
func (l *Loop) Run(s Server) error {
	if !join(l, &l.servers, s, true) {
		s.Release()
		return ErrClosed
	}
	return l.serveServer(s)
}

// Start is Run in a goroutine of its own, except that s joins the loop
// before Start returns, so that a Shutdown that follows waits for it. It
// reports false, having released s, when the loop is closing. An error
// that ends s is logged.
func (l *Loop) Start(s Server) bool {
	if !join(l, &l.servers, s, true) {
		s.Release()
		return false
	}
	go func() {
		if err := l.serveServer(s); err != nil {
			l.Log().Error("server failed", "error", err)
		}
	}()
	return true
}

// serveServer serves s, which has joined the loop, and releases it.
func (l *Loop) serveServer(s Server) error {
	defer l.wg.Done()
	defer s.Release()
	defer leave(l, &l.servers, s, false)
	return s.Serve()
}

// stopServers asks every running Server to stop, or to abort.
func (l *Loop) stopServers(abort bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.servers {
		s.Stop(abort)
	}
}

// Shutdown stops accepting, closes idle connections, and waits for busy
// ones to finish (closing each as soon as it turns idle) and for every
// Server to end. When ctx ends first, the remaining connections are
// closed, the Servers aborted, and ctx's error is returned once their
// handlers have exited.
func (l *Loop) Shutdown(ctx context.Context) error {
	l.stopAccepting()
	l.stopServers(false)
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		l.closeConns(true)
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			l.closeConns(false)
			l.stopServers(true)
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once, aborting
// every Server, and returns after their handlers and the Servers have
// exited.
func (l *Loop) Close() error {
	l.stopAccepting()
	l.closeConns(false)
	l.stopServers(true)
	l.wg.Wait()
	return nil
}

// join adds x to set, counting it in wg when counted, unless the loop is
// closing; it reports whether x joined. It takes the lock under which
// stopAccepting marks the loop closing, so that nothing joins once
// Shutdown or Close waits.
func join[T comparable](l *Loop, set *map[T]struct{}, x T, counted bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return false
	}
	if *set == nil {
		*set = make(map[T]struct{})
	}
	(*set)[x] = struct{}{}
	if counted {
		l.wg.Add(1)
	}
	return true
}

// leave removes x from set, and marks it done in wg when counted.
func leave[T comparable](l *Loop, set *map[T]struct{}, x T, counted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(*set, x)
	if counted {
		l.wg.Done()
	}
}

// stopAccepting marks the loop closing and closes its listeners.
func (l *Loop) stopAccepting() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closing.Store(true)
	for ln := range l.lns {
		ln.Close()
	}
}

// closeConns closes the idle connections, or all of them; each handler then
// sees an error and releases what it holds. An idle connection whose
// client has already sent its next request (or closed) is left to its
// handler, which reads it: closing it with the request unread would reset
// it, and the client could not tell whether the request was served.
func (l *Loop) closeConns(idleOnly bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if !idleOnly || c.idle.Load() && !peek.Sent(c.TCPConn) {
			c.Close()
		}
	}
}

// Package accept is the accept loop and connection tracking that both front
// doors share: it backs off on temporary accept errors, runs one handler
// goroutine per connection, and shuts down gracefully, waiting for busy
// connections while closing idle ones.
package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Serve after Shutdown or Close.
var ErrClosed = errors.New("server closed")

// Conn is one accepted connection as its handler sees it.
type Conn struct {
	*net.TCPConn
	idle atomic.Bool
}

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
	// Logger receives accept errors. Nil means slog.Default().
	Logger *slog.Logger
	// Counts counts the connections the loop accepts and their ends; the
	// handlers may count requests on it.
	Counts Counts

	closing atomic.Bool
	mu      sync.Mutex // guards lns and conns
	lns     map[net.Listener]struct{}
	conns   map[*Conn]struct{}
	wg      sync.WaitGroup // one per live handler
}

func (l *Loop) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

// Closing reports whether Shutdown or Close has been called; handlers of
// kept-alive connections check it between requests.
func (l *Loop) Closing() bool { return l.closing.Load() }

// Serve accepts connections on ln until ln fails or the loop is shut down,
// in which case it returns ErrClosed. Temporary accept errors (such as
// running out of file descriptors) are retried with a backoff from 5ms
// doubling to 1s. Serve closes ln when it returns.
func (l *Loop) Serve(ln net.Listener) error {
	if !l.track(ln, true) {
		ln.Close()
		return ErrClosed
	}
	defer l.track(ln, false)
	defer ln.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.closing.Load() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.logger().Warn("accept failed; retrying", "listener", ln.Addr().String(), "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		conn := &Conn{TCPConn: tc}
		if !l.trackConn(conn, true) {
			tc.Close()
			return ErrClosed
		}
		go l.serveConn(conn)
	}
}

func (l *Loop) serveConn(c *Conn) {
	l.Counts.Opened()
	defer l.Counts.Closed()
	defer l.trackConn(c, false)
	l.Handle(c)
}

// Shutdown stops accepting, closes idle connections, and waits for busy
// ones to finish (closing each as soon as it turns idle). When ctx ends
// first, the remaining connections are closed and ctx's error is returned
// once their handlers have exited.
func (l *Loop) Shutdown(ctx context.Context) error {
	l.closing.Store(true)
	l.closeListeners()
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
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once, returning
// after their handlers have exited.
func (l *Loop) Close() error {
	l.closing.Store(true)
	l.closeListeners()
	l.closeConns(false)
	l.wg.Wait()
	return nil
}

// track adds or removes a listener; adding fails once the loop is closing.
func (l *Loop) track(ln net.Listener, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !add {
		delete(l.lns, ln)
		return true
	}
	if l.closing.Load() {
		return false
	}
	if l.lns == nil {
		l.lns = make(map[net.Listener]struct{})
	}
	l.lns[ln] = struct{}{}
	return true
}

// trackConn adds or removes a live connection and keeps wg in step; adding
// fails once the loop is closing.
func (l *Loop) trackConn(c *Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !add {
		delete(l.conns, c)
		l.wg.Done()
		return true
	}
	if l.closing.Load() {
		return false
	}
	if l.conns == nil {
		l.conns = make(map[*Conn]struct{})
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *Loop) closeListeners() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ln := range l.lns {
		ln.Close()
	}
}

// closeConns closes the idle connections, or all of them; each handler then
// sees an error and releases what it holds.
func (l *Loop) closeConns(idleOnly bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if !idleOnly || c.idle.Load() {
			c.Close()
		}
	}
}

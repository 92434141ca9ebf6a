// Package l4 is lbctl's TCP front door: it keys each client by its source
// address, keeps that key pinned to one backend in an affinity table, and
// splices bytes both ways between the client and the backend.
package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = errors.New("l4: proxy closed")

// DefaultConnectTimeout bounds a backend dial when Proxy.ConnectTimeout is zero.
const DefaultConnectTimeout = 3 * time.Second

// Proxy accepts TCP connections and relays each one to the backend its
// client is pinned to. Registry, Selector and Table must be set before Serve;
// the other fields have working zero values. A Proxy must not be copied
// after first use.
type Proxy struct {
	// Registry is the backend pool.
	Registry *backend.Registry
	// Selector chooses a backend for clients without a usable pin.
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
	// Logger receives the few events worth a line: accept errors, and
	// clients refused because no backend is available. Nil means
	// slog.Default().
	Logger *slog.Logger

	closing atomic.Bool
	mu      sync.Mutex // guards listeners and conns
	lns     map[net.Listener]struct{}
	conns   map[*net.TCPConn]struct{}
	wg      sync.WaitGroup // one per live connection handler

	dialer    net.Dialer
	dialerSet sync.Once
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Serve accepts connections on ln and handles each in its own goroutine
// until ln fails or the proxy is shut down, in which case it returns
// ErrProxyClosed. Temporary accept errors (such as running out of file
// descriptors) are retried with a backoff from 5ms doubling to 1s. Serve
// closes ln when it returns.
func (p *Proxy) Serve(ln net.Listener) error {
	if p.Registry == nil || p.Selector == nil || p.Table == nil {
		return errors.New("l4: Proxy needs Registry, Selector and Table")
	}
	if !p.track(ln, true) {
		ln.Close()
		return ErrProxyClosed
	}
	defer p.track(ln, false)
	defer ln.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.closing.Load() {
				return ErrProxyClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.logger().Warn("accept failed; retrying", "listener", ln.Addr().String(), "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			continue
		}
		if !p.trackConn(tc, true) {
			tc.Close()
			return ErrProxyClosed
		}
		go p.handle(tc)
	}
}

// Shutdown stops accepting, then waits for open connections to finish on
// their own. When ctx ends first, the remaining connections are closed and
// ctx's error is returned once their handlers have exited.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.closing.Store(true)
	p.closeListeners()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		p.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and closes every open connection at once, returning
// after their handlers have exited.
func (p *Proxy) Close() error {
	p.closing.Store(true)
	p.closeListeners()
	p.closeConns()
	p.wg.Wait()
	return nil
}

// track adds or removes a listener; adding fails once the proxy is closing.
func (p *Proxy) track(ln net.Listener, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.lns, ln)
		return true
	}
	if p.closing.Load() {
		return false
	}
	if p.lns == nil {
		p.lns = make(map[net.Listener]struct{})
	}
	p.lns[ln] = struct{}{}
	return true
}

// trackConn adds or removes a live connection and keeps wg in step; adding
// fails once the proxy is closing.
func (p *Proxy) trackConn(c *net.TCPConn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		p.wg.Done()
		return true
	}
	if p.closing.Load() {
		return false
	}
	if p.conns == nil {
		p.conns = make(map[*net.TCPConn]struct{})
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) closeListeners() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ln := range p.lns {
		ln.Close()
	}
}

// closeConns closes client connections; each handler then sees an error on
// both directions and closes its backend connection itself.
func (p *Proxy) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

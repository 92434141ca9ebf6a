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
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = accept.ErrClosed

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
	// Logger receives accept errors, and refused clients at debug level.
	// Nil means slog.Default().
	Logger *slog.Logger

	init   sync.Once
	loop   accept.Loop
	dialer net.Dialer
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Proxy) setup() {
	p.init.Do(func() {
		p.loop.Handle = p.handle
		p.loop.Logger = p.Logger
		p.dialer.Timeout = p.ConnectTimeout
		if p.dialer.Timeout <= 0 {
			p.dialer.Timeout = DefaultConnectTimeout
		}
		// Dead peers are found by the idle timeout; TCP keep-alive
		// would only add three system calls to every dial.
		p.dialer.KeepAlive = -1
	})
}

// Serve accepts connections on ln and handles each in its own goroutine
// until ln fails or the proxy is shut down, in which case it returns
// ErrProxyClosed. Temporary accept errors (such as running out of file
// descriptors) are retried with a backoff from 5ms doubling to 1s. Serve
// closes ln when it returns.
func (p *Proxy) Serve(ln net.Listener) error {
	if p.Registry == nil || p.Selector == nil || p.Table == nil {
		ln.Close()
		return errors.New("l4: Proxy needs Registry, Selector and Table")
	}
	p.setup()
	return p.loop.Serve(ln)
}

// Shutdown stops accepting, then waits for open connections to finish on
// their own. When ctx ends first, the remaining connections are closed and
// ctx's error is returned once their handlers have exited.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.setup()
	return p.loop.Shutdown(ctx)
}

// Close stops accepting and closes every open connection at once, returning
// after their handlers have exited.
func (p *Proxy) Close() error {
	p.setup()
	return p.loop.Close()
}

// Package l7 is lbctl's HTTP/1.1 front door: it keeps each browser on one
// backend with a persistence cookie, moves it with a new cookie when that
// backend fails, and forwards requests and responses as streams over
// kept-alive connections.
//
// The HTTP engine is lbctl's own: request heads are read into a
// per-connection buffer and parsed in place by a strict parser that rejects
// ambiguous framing before anything reaches a backend; bodies are streamed
// with fixed buffers; the sticky-cookie path allocates nothing once warm.
package l7

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = accept.ErrClosed

// Defaults for zero Proxy fields.
const (
	DefaultConnectTimeout    = 3 * time.Second
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultServerTimeout     = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxIdlePerBackend = 256
)

// Proxy is an HTTP/1.1 reverse proxy with cookie persistence. Registry and
// Selector must be set before Serve; every other field has a working zero
// value. Fields must not change after Serve is first called.
type Proxy struct {
	// Registry is the backend pool.
	Registry *backend.Registry
	// Selector places requests that carry no usable cookie.
	Selector backend.Selector
	// Health receives connect failures and failed exchanges as failed
	// checks (passive health). Nil means they only steer the request.
	Health *backend.Prober
	// Cookie configures the persistence cookie. A zero Name means
	// "SERVERID"; the other zero values are taken as they are (a session
	// cookie, no Path, no attributes).
	Cookie CookieOptions

	// ConnectTimeout bounds a backend dial. Zero means 3s.
	ConnectTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive client connection may wait
	// for its next request, and how long a body or a response may stall.
	// Zero means no limit.
	IdleTimeout time.Duration
	// HeaderTimeout bounds the arrival of a whole request head, from its
	// first byte (from accept, for a connection's first request). Zero
	// means 10s.
	HeaderTimeout time.Duration
	// ServerTimeout bounds the wait for a backend's response head, and any
	// stall while reading its body; when the head does not come in time
	// the client gets 504. Zero means 60s.
	ServerTimeout time.Duration
	// MaxHeaderBytes is the largest request head accepted; larger ones get
	// 431. Zero means 64 KiB.
	MaxHeaderBytes int
	// MaxIdlePerBackend caps the kept-alive backend connections held per
	// backend. Zero means 256; negative disables reuse.
	MaxIdlePerBackend int
	// Logger receives accept errors, and failed exchanges at debug level.
	// Nil means slog.Default().
	Logger *slog.Logger

	init     sync.Once
	loop     accept.Loop
	dialer   net.Dialer
	codec    *cookieCodec
	pools    map[*backend.Backend]*upstreamPool
	sessions sync.Pool
	heads    sync.Pool // buffers of maxHead bytes, for heads that outgrow a session's own
	ups      sync.Pool // buffers of upBufSize bytes, one per exchange in progress
	cfg      settings
}

// settings are the Proxy's fields with defaults resolved.
type settings struct {
	header, server, idle time.Duration
	maxHead, maxIdle     int
	cookie               string // the persistence cookie's name
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
		p.dialer.Timeout = orDefault(p.ConnectTimeout, DefaultConnectTimeout)
		// Dead peers are found by the timeouts; TCP keep-alive would
		// only add three system calls to every dial.
		p.dialer.KeepAlive = -1
		p.cfg = settings{
			header:  orDefault(p.HeaderTimeout, DefaultHeaderTimeout),
			server:  orDefault(p.ServerTimeout, DefaultServerTimeout),
			idle:    max(p.IdleTimeout, 0),
			maxHead: orDefault(p.MaxHeaderBytes, DefaultMaxHeaderBytes),
			maxIdle: orDefault(p.MaxIdlePerBackend, DefaultMaxIdlePerBackend),
		}
		if p.MaxIdlePerBackend < 0 {
			p.cfg.maxIdle = 0
		}
		opts := p.Cookie
		if opts.Name == "" {
			opts.Name = "SERVERID"
		}
		p.cfg.cookie = opts.Name
		p.codec = newCookieCodec(opts, p.Registry.All())
		p.heads.New = func() any { b := make([]byte, p.cfg.maxHead); return &b }
		p.ups.New = func() any { b := make([]byte, upBufSize); return &b }
		p.pools = make(map[*backend.Backend]*upstreamPool, p.Registry.Len())
		for _, b := range p.Registry.All() {
			p.pools[b] = &upstreamPool{}
		}
	})
}

// headBufs returns the pool a client reader grows into, or nil when a
// session's own buffer already holds the largest head.
func (p *Proxy) headBufs() *sync.Pool {
	if p.cfg.maxHead <= smallHead {
		return nil
	}
	return &p.heads
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ln fails or the proxy is shut down, in which case it returns
// ErrProxyClosed. Serve closes ln when it returns.
//
// On Linux, a TCP listener hands a connection over only once its client
// has sent something (see deferAccept).
func (p *Proxy) Serve(ln net.Listener) error {
	if p.Registry == nil || p.Selector == nil {
		ln.Close()
		return errors.New("l7: Proxy needs Registry and Selector")
	}
	p.setup()
	deferAccept(ln)
	return p.loop.Serve(ln)
}

// Shutdown stops accepting, closes idle kept-alive connections, and lets
// requests in flight finish (their responses say Connection: close). When
// ctx ends first, the remaining connections are closed and ctx's error is
// returned. Kept-alive backend connections are closed in both cases.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.setup()
	err := p.loop.Shutdown(ctx)
	p.closeIdleUpstreams()
	return err
}

// Close stops accepting and closes every connection at once.
func (p *Proxy) Close() error {
	p.setup()
	err := p.loop.Close()
	p.closeIdleUpstreams()
	return err
}

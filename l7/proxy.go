// Package l7 owns lbctl's HTTP/1.1 front door: it keeps each browser on one
// backend with a persistence cookie, moves it with a new cookie when that
// backend fails, and forwards requests and responses as streams over
// kept-alive connections. It accepts through internal/accept and relays
// protocol upgrades through internal/splice.
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
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/proxyproto"
	"github.com/lbctl/lbctl/natview"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = accept.ErrClosed

// Defaults for zero Proxy fields.
const (
	DefaultConnectTimeout    = backend.DefaultConnectTimeout
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultServerTimeout     = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxIdlePerBackend = 1024
)

// Proxy is an HTTP/1.1 reverse proxy with cookie persistence. Pool and
// Selector must be set before Serve; every other field has a working zero
// value. Fields must not change after Serve is first called: Reconfigure
// changes the ones that Settings holds while the proxy serves.
type Proxy struct {
	// Pool is the backend pool. A reload of it takes effect at the next
	// request: a cookie naming a kept backend still reaches it, one naming
	// a removed backend gets a new one; requests in flight finish where
	// they are.
	Pool *backend.Pool
	// Selector places requests that carry no usable cookie.
	Selector backend.Selector
	// Health receives connect failures and failed exchanges as failed
	// checks (passive health). Nil means they only steer the request.
	Health *backend.Prober
	// Cookie configures the persistence cookie. A zero Name means
	// "SERVERID"; the other zero values are taken as they are (a session
	// cookie, no Path, no attributes).
	Cookie CookieOptions

	// ProxyProtocol, when its From is set, makes the listener take its
	// clients' addresses from the PROXY protocol headers of the
	// balancers in front of it (see proxyproto.go).
	ProxyProtocol proxyproto.Policy

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
	// backend, by each event loop with EngineLoop (a loop's connections
	// are its own, so it shares none and takes no lock for them). Zero
	// means DefaultMaxIdlePerBackend; negative keeps none. Connections
	// kept beyond what the load still uses are closed once they have idled
	// past IdleTimeout, so a high cap holds a burst's connections only
	// while they are needed.
	MaxIdlePerBackend int
	// AccessLog, when not nil, gets one record per request (see
	// account.go); a full log drops records, never waits.
	AccessLog *accesslog.Log
	// TLS, when set, terminates TLS on every connection the proxy
	// accepts (see TLS); its options change with TLS.Update.
	TLS *TLS
	// Logger receives accept errors, and failed exchanges at debug level.
	// Nil means slog.Default().
	Logger *slog.Logger
	// NAT counts each new persistence session by its source, for the NAT
	// view; nil counts nothing.
	NAT *natview.Tracker
	// Engine is how plain HTTP/1.1 connections are served: EngineLoop
	// serves them from event loops on Linux (see loop_linux.go);
	// anything else, the zero value included, gives each connection its
	// own goroutine.
	Engine string
	// Loops is how many event loops serve each listener with EngineLoop;
	// zero means one per core the Go runtime uses (GOMAXPROCS).
	Loops int

	init     sync.Once
	loop     accept.Loop
	tuned    atomic.Pointer[settings] // see Reconfigure
	state    atomic.Pointer[poolState]
	rebuild  sync.Mutex // serialises the building of state after a reload or Reconfigure
	sessions sync.Pool
	ups      sync.Pool    // buffers of upBufSize bytes, one per exchange in progress
	live     liveSessions // the sessions serving a connection, for CloseConns
	h2       h2front      // HTTP/2 over TLS (see h2.go)
	parks    parking      // the watcher of idle connections (see park.go)
	fronts   loopFronts   // the event loops serving, with EngineLoop
	handoffs sync.Map     // *accept.Conn to the bytes a loop read of it before handing it over
}

// logger returns Logger, or slog.Default() when it is nil (once setup
// has run).
func (p *Proxy) logger() *slog.Logger { return p.loop.Log() }

func (p *Proxy) setup() {
	p.init.Do(func() {
		p.loop.Handle = p.handle
		p.loop.Park = p.parkConn
		p.loop.Logger = p.Logger
		cfg := p.fields().resolve(nil)
		if cfg.sel != nil {
			// Without a Selector, Serve refuses to start and the
			// settings wait for one (see Serve).
			p.tuned.Store(cfg)
		}
		p.state.Store(newPoolState(cfg.cookie, p.Pool.Registry(), nil))
		p.ups.New = func() any { b := make([]byte, upBufSize); return &b }
	})
}

// poolState is what the proxy derives from one snapshot of the backend
// pool: the cookie codec and each backend's kept-alive connections. It is
// immutable once published, so a request reads it without a lock; the
// first request after a reload builds the next one (see current).
type poolState struct {
	reg   *backend.Registry
	codec *cookieCodec
	ups   map[*backend.Backend]*upstreamPool
	pins  map[*backend.Backend]*pinCount // the clients each keeps by cookie (see Pinned)
}

// newPoolState builds the state of reg. A backend that old already had, at
// the same address, keeps its kept-alive connections.
func newPoolState(opts CookieOptions, reg *backend.Registry, old *poolState) *poolState {
	st := &poolState{
		reg:   reg,
		codec: newCookieCodec(opts, reg.All()),
		ups:   make(map[*backend.Backend]*upstreamPool, reg.Len()),
		pins:  make(map[*backend.Backend]*pinCount, reg.Len()),
	}
	for _, b := range reg.All() {
		st.pins[b] = old.pinCount(b)
		addr := b.Address()
		if u := old.upstreams(b); u != nil && u.address == addr {
			st.ups[b] = u
			continue
		}
		st.ups[b] = &upstreamPool{address: addr}
	}
	return st
}

// upstreams returns b's kept-alive connections, or nil when b is not in
// the state's pool (or st is nil).
func (st *poolState) upstreams(b *backend.Backend) *upstreamPool {
	if st == nil {
		return nil
	}
	return st.ups[b]
}

// current returns the state of the pool's current registry. A request
// takes it once and uses it throughout, so that a reload never shows it a
// cookie codec and connections of different pools.
func (p *Proxy) current() *poolState {
	st := p.state.Load()
	if reg := p.Pool.Registry(); st.reg != reg {
		return p.follow(reg)
	}
	return st
}

// follow builds and publishes the state of reg, once however many
// requests find the old one at the same time, and closes the kept-alive
// connections of backends that left the pool or moved to another address.
func (p *Proxy) follow(reg *backend.Registry) *poolState {
	p.rebuild.Lock()
	defer p.rebuild.Unlock()
	old := p.state.Load()
	if old.reg == reg {
		return old
	}
	st := newPoolState(p.tuned.Load().cookie, reg, old)
	p.state.Store(st)
	for b, u := range old.ups {
		if st.ups[b] != u {
			u.retire()
		}
	}
	return st
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
	if p.Pool == nil || p.Selector == nil {
		ln.Close()
		return errors.New("l7: Proxy needs Pool and Selector")
	}
	p.setup()
	if p.tuned.Load() == nil {
		p.tuned.CompareAndSwap(nil, p.fields().resolve(nil))
	}
	if p.loopEngine() {
		if served, err := p.serveLoops(ln); served {
			return err
		}
	}
	deferAccept(ln)
	return p.loop.Serve(ln)
}

// loopEngine reports whether the loop engine is to serve.
func (p *Proxy) loopEngine() bool {
	return p.Engine == EngineLoop || p.Engine == "" && testHookEngine == EngineLoop
}

// testHookEngine, when set before Serve, is the engine of every proxy
// whose Engine is empty: the tests set it to run their suites on both
// engines.
var testHookEngine string

// StopAccepting stops accepting on ln, a listener that Serve serves, and
// leaves the connections accepted there to run on: the proxy keeps
// serving its other listeners, and Shutdown still waits for those
// connections. Serve(ln) returns at once, with an error wrapping
// net.ErrClosed. A reload uses it to move the proxy to a new listen
// address.
//
// With event loops, StopAccepting returns once every loop of ln has
// closed its copy of the listening socket, and Serve(ln) returns once
// their connections have ended.
func (p *Proxy) StopAccepting(ln net.Listener) {
	done := p.retireLoops(ln)
	ln.Close()
	for _, c := range done {
		<-c
	}
}

// Shutdown stops accepting, closes idle kept-alive connections, and lets
// requests in flight finish (their responses say Connection: close). When
// ctx ends first, the remaining connections are closed and ctx's error is
// returned. Kept-alive backend connections are closed in both cases.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.setup()
	p.h2.goAway()
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

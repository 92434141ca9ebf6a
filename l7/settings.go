package l7

import (
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// Settings are the proxy's settings that Reconfigure changes while it
// serves. Each field means what the Proxy field of the same name means,
// zero values included.
type Settings struct {
	Selector       backend.Selector
	Cookie         CookieOptions
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	HeaderTimeout  time.Duration
	ServerTimeout  time.Duration
	MaxHeaderBytes int
	// MaxIdlePerBackend is the cap on kept-alive backend connections; see
	// the Proxy field. A lower cap takes effect as connections come back.
	MaxIdlePerBackend int
}

// settings are Settings with defaults resolved, as requests use them. They
// are immutable once published.
type settings struct {
	sel                  backend.Selector
	dialer               net.Dialer
	header, server, idle time.Duration
	maxHead              int
	maxIdle              int // kept-alive backend connections per backend (per loop); 0 keeps none
	// heads gives buffers of maxHead bytes, for heads that outgrow a
	// session's own buffer; nil when that buffer holds the largest head.
	heads  *sync.Pool
	cookie CookieOptions // with its default name
}

// fields returns the Proxy fields that Reconfigure replaces.
func (p *Proxy) fields() Settings {
	return Settings{
		Selector:          p.Selector,
		Cookie:            p.Cookie,
		ConnectTimeout:    p.ConnectTimeout,
		IdleTimeout:       p.IdleTimeout,
		HeaderTimeout:     p.HeaderTimeout,
		ServerTimeout:     p.ServerTimeout,
		MaxHeaderBytes:    p.MaxHeaderBytes,
		MaxIdlePerBackend: p.MaxIdlePerBackend,
	}
}

// resolve returns s with defaults resolved. When old has the same head
// limit, its buffers are kept: a buffer of the pool always has the size
// of the limit it enforces.
func (s Settings) resolve(old *settings) *settings {
	r := &settings{
		sel:     s.Selector,
		header:  orDefault(s.HeaderTimeout, DefaultHeaderTimeout),
		server:  orDefault(s.ServerTimeout, DefaultServerTimeout),
		idle:    max(s.IdleTimeout, 0),
		maxHead: orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		maxIdle: max(s.MaxIdlePerBackend, 0),
		cookie:  s.Cookie,
		dialer:  backend.Dialer(s.ConnectTimeout),
	}
	if r.cookie.Name == "" {
		r.cookie.Name = "SERVERID"
	}
	if s.MaxIdlePerBackend == 0 {
		r.maxIdle = DefaultMaxIdlePerBackend
	}
	r.cookie.Secrets = slices.Clone(s.Cookie.Secrets)
	switch {
	case r.maxHead <= smallHead:
	case old != nil && old.maxHead == r.maxHead:
		r.heads = old.heads
	default:
		size := r.maxHead
		r.heads = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	}
	return r
}

// errNoSelector is the error of settings without a selector.
var errNoSelector = errors.New("l7: settings need a Selector")

// Reconfigure applies s while the proxy serves, closing no listener and no
// connection. A connection's next request uses s: its head is read under
// the settings in force when the connection starts waiting for it (idle
// and header timeouts, head size limit), and its exchange under those in
// force once the head has arrived (policy, cookie, connect, server and
// idle timeouts). A request in progress finishes under the settings it
// started with. A new cookie codec serves from the next exchange on: with
// the new secret first and the old ones after it, cookies signed with an
// old secret still pin their browsers (and are not replaced), and new
// cookies are signed with the new one. It fails, changing nothing, when s
// has no Selector. It may be called before Serve, and concurrently with
// itself (the last call wins).
func (p *Proxy) Reconfigure(s Settings) error {
	if s.Selector == nil {
		return errNoSelector
	}
	p.setup()
	p.rebuild.Lock()
	defer p.rebuild.Unlock()
	old := p.tuned.Load()
	next := s.resolve(old)
	p.tuned.Store(next)
	// The codec belongs to the pool state: rebuild it with the same pool,
	// which keeps every kept-alive connection.
	if old == nil || !sameCookie(old.cookie, next.cookie) {
		st := p.state.Load()
		p.state.Store(newPoolState(next.cookie, st.reg, st))
	}
	return nil
}

// sameCookie reports whether a and b make the same cookie codec.
func sameCookie(a, b CookieOptions) bool {
	return a.Name == b.Name && a.MaxAge == b.MaxAge && a.Path == b.Path && a.Domain == b.Domain &&
		a.HTTPOnly == b.HTTPOnly && a.Secure == b.Secure && a.SameSite == b.SameSite &&
		slices.Equal(a.Secrets, b.Secrets)
}

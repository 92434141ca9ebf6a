package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/splice"
)

// testHookDialing, when set before Serve, sees the socket of every dial
// to a backend before it connects, on either engine (tests bind it to a
// source port that makes connect fail).
var testHookDialing func(fd uintptr)

// errNoBackend means every backend is unavailable or failed its dial.
var errNoBackend = errors.New("no backend available")

// handle serves one client connection from pin to the end of the splice.
func (p *Proxy) handle(c *accept.Conn) {
	client := c.TCPConn
	defer client.Close()
	cfg := p.tuned.Load() // this connection's settings, to its end
	start := time.Now()
	from, err := p.client(client)
	if err != nil {
		p.loop.Counts.RefusedProxy()
		p.logger().Debug("client refused", "client", client.RemoteAddr().String(), "error", err)
		p.logConn(remoteAddrPort(client), nil, start, 0, 0)
		return
	}
	key := p.Table.Key(from.Addr())
	p.NAT.Opened(key, from.Port())
	defer p.NAT.Closed(key)
	b, server, err := p.connect(key, cfg)
	if err != nil {
		p.logger().Debug("client refused", "client", from.String(), "error", err)
		p.logConn(from, nil, start, 0, 0)
		return
	}
	defer b.Release()
	defer server.Close()
	if err := sendProxy(server, b, from, client.LocalAddr()); err != nil {
		p.logConn(from, b, start, 0, 0)
		return
	}
	p.track(client, server, b)
	defer p.untrack(client)
	up, down := splice.Relay(client, server, cfg.idle)
	p.logConn(from, b, start, up, down)
}

// connect returns an open connection to the backend key is pinned to, or,
// when the pin is missing, names an unknown backend, points at an
// unavailable one, or its dial fails, to the next backend the selector
// offers, pinning key to whichever answered. Every failed dial is reported
// to passive health (which leaves out the proxy's own faults, such as
// running out of source ports: see backend.LocalFault) and excluded from
// the rest of the attempt.
func (p *Proxy) connect(key affinity.Key, cfg *settings) (*backend.Backend, *net.TCPConn, error) {
	seen, _ := p.Table.Lookup(key) // "" on a miss
	try := p.attempt(key, seen, cfg)
	var lastErr error
	for {
		var b *backend.Backend
		if b, seen = p.choose(&try, key, seen); b == nil {
			break
		}
		b.Acquire()
		server, err := b.Dial(context.Background(), &cfg.dialer)
		if err == nil {
			b.CountServed()
			return b, server, nil
		}
		b.Release()
		p.Health.ReportFailure(b, err)
		lastErr = err
		try.Fail(b)
	}
	return nil, nil, refused(lastErr)
}

// attempt begins the choice of backend for the client of key, whose pin
// names seen ("" for none), as cfg places clients without one.
func (p *Proxy) attempt(key affinity.Key, seen string, cfg *settings) backend.Attempt {
	reg := p.Pool.Registry()
	return backend.NewAttempt(reg, cfg.sel, backend.AddrHash(key.Addr()), reg.Get(seen))
}

// choose returns the backend the attempt's client should be connected to
// next, and the pin it now has: the backend seen (the pin this connection
// last saw) while the attempt offers it, or else the attempt's new choice,
// pinned in its place. It returns nil when the attempt has no backend left.
//
// Connections of one client may arrive, or fail over, together. Each new
// pin is therefore conditional on the pin this connection saw; when another
// connection moved it first, this one follows that pin instead of choosing
// on its own, so the client ends on one backend.
func (p *Proxy) choose(try *backend.Attempt, key affinity.Key, seen string) (*backend.Backend, string) {
	// Each round either returns or follows a pin another connection moved;
	// a bound keeps a pathological race from looping. A pin to a backend
	// that a reload removed finds no backend, and moves.
	reg := try.Registry()
	for range 2*reg.Len() + 4 {
		next := try.Next()
		if next == nil || try.Pinned() {
			return next, seen
		}
		if cur := p.Table.PinIf(key, seen, next.ID); cur != next.ID {
			seen = cur // another connection of this client moved it first
			try.Follow(reg.Get(cur))
			continue
		}
		if seen != "" && seen != next.ID {
			p.Pool.Repins.Count(try.WhyRepin(reg.Get(seen)))
		}
		try.Follow(next)
		return next, next.ID
	}
	return nil, seen
}

// refused is the error of a client that no backend took; lastErr is the
// last failed dial, if any.
func refused(lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("%w: %w", errNoBackend, lastErr)
	}
	return errNoBackend
}

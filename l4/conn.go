package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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
	from, err := p.client(client)
	if err != nil {
		p.logger().Debug("client refused", "client", client.RemoteAddr().String(), "error", err)
		return
	}
	key := p.Table.Key(from.Addr())
	b, server, err := p.connect(key, cfg)
	if err != nil {
		p.logger().Debug("client refused", "client", from.String(), "error", err)
		return
	}
	defer b.Release()
	defer server.Close()
	if err := sendProxy(server, b, from, client.LocalAddr()); err != nil {
		return
	}
	p.track(client, server, b)
	defer p.untrack(client)
	splice.Relay(client, server, cfg.idle)
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
	var avoidBuf [4]*backend.Backend
	avoid := avoidBuf[:0]
	var lastErr error
	for {
		var b *backend.Backend
		if b, seen = p.choose(key, seen, avoid, cfg.sel); b == nil {
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
		avoid = append(avoid, b)
	}
	return nil, nil, refused(lastErr)
}

// choose returns the backend key should be connected to next, and the pin
// it now has: the backend seen (the pin this connection last saw) when that
// keeps its pinned clients (up, and ready or draining before its deadline)
// and is not in avoid, or else sel's choice, pinned in its place.
// It returns nil when no backend outside avoid is available.
//
// Connections of one client may arrive, or fail over, together. Each new
// pin is therefore conditional on the pin this connection saw; when another
// connection moved it first, this one follows that pin instead of choosing
// on its own, so the client ends on one backend.
func (p *Proxy) choose(key affinity.Key, seen string, avoid []*backend.Backend, sel backend.Selector) (*backend.Backend, string) {
	// Each round either returns or follows a pin another connection moved;
	// a bound keeps a pathological race from looping. A pin to a backend
	// that a reload removed finds no backend, and moves.
	reg := p.Pool.Registry()
	for range 2*reg.Len() + 4 {
		// A ready backend keeps its pins without a reading of the clock.
		if b := reg.Get(seen); b != nil && (b.Available() || b.KeepsPinned(time.Now())) && !slices.Contains(avoid, b) {
			return b, seen
		}
		next := sel.Select(reg.All(), avoid)
		if next == nil {
			return nil, seen
		}
		if cur := p.Table.PinIf(key, seen, next.ID); cur != next.ID {
			seen = cur // another connection of this client moved it first
			continue
		}
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

package l4

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/splice"
)

// errNoBackend means every backend is unavailable or failed its dial.
var errNoBackend = errors.New("no backend available")

// handle serves one client connection from pin to the end of the splice.
func (p *Proxy) handle(c *accept.Conn) {
	client := c.TCPConn
	defer client.Close()
	key := p.key(client)
	b, server, err := p.connect(key)
	if err != nil {
		p.logger().Debug("client refused", "client", client.RemoteAddr().String(), "error", err)
		return
	}
	defer b.Release()
	defer server.Close()
	splice.Relay(client, server, p.IdleTimeout)
}

// key derives the affinity key from the client's source address.
func (p *Proxy) key(c *net.TCPConn) affinity.Key {
	var a = c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	return p.Table.Key(a)
}

// connect returns an open connection to the backend key is pinned to, or,
// when the pin is missing, names an unknown backend, points at an
// unavailable one, or its dial fails, to the next backend the selector
// offers, pinning key to whichever answered. Every failed dial is reported
// to passive health and excluded from the rest of the attempt.
func (p *Proxy) connect(key affinity.Key) (*backend.Backend, *net.TCPConn, error) {
	var b *backend.Backend
	pinned := false
	if id, ok := p.Table.Lookup(key); ok {
		if b = p.Registry.Get(id); b != nil && b.Available() {
			pinned = true
		} else {
			b = nil
		}
	}
	var avoidBuf [4]*backend.Backend
	avoid := avoidBuf[:0]
	var lastErr error
	for {
		if b == nil {
			if b = p.Selector.Select(p.Registry.All(), avoid); b == nil {
				if lastErr != nil {
					return nil, nil, fmt.Errorf("%w: %w", errNoBackend, lastErr)
				}
				return nil, nil, errNoBackend
			}
		}
		b.Acquire()
		server, err := p.dial(b)
		if err == nil {
			if !pinned {
				p.Table.Pin(key, b.ID)
			}
			return b, server, nil
		}
		b.Release()
		p.Health.ReportFailure(b, err)
		lastErr = err
		avoid = append(avoid, b)
		b, pinned = nil, false
	}
}

// dial connects to b within the connect timeout.
func (p *Proxy) dial(b *backend.Backend) (*net.TCPConn, error) {
	return b.Dial(context.Background(), &p.dialer)
}

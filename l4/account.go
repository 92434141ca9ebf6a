package l4

import (
	"net"
	"net/netip"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
)

// logConn writes the access log record of a connection of the portable
// engine that started at start and moved up bytes from the client and down
// bytes back; b is nil when no backend took it.
func (p *Proxy) logConn(client netip.AddrPort, b *backend.Backend, start time.Time, up, down int64) {
	if p.AccessLog == nil {
		return
	}
	r := accesslog.Record{L4: true, Time: time.Now(), Client: client, BytesIn: up, BytesOut: down}
	r.Duration = r.Time.Sub(start)
	if b != nil {
		r.Backend = b.ID
	}
	p.AccessLog.Write(&r)
}

// Counts returns the proxy's connection counts, of both engines.
func (p *Proxy) Counts() *accept.Counts { return &p.loop.Counts }

// remoteAddrPort returns the address c's peer connects from.
func remoteAddrPort(c *net.TCPConn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

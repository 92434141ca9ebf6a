package l4

import (
	"net"
	"net/netip"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// PROXY protocol, both ways. Behind an upstream L4 balancer every
// connection comes from the balancer's address, so every client would
// share one pin; with Proxy.ProxyProtocol set, the balancer's header names
// the client, whose address then keys the pin and appears in logs. A
// backend with send_proxy gets such a header first on each connection, in
// turn.

// client returns the client of c on the goroutine engine: its peer, or
// with the PROXY protocol on, the client its header names. On an error the
// connection is refused.
func (p *Proxy) client(c *net.TCPConn) (netip.AddrPort, error) {
	return p.ProxyProtocol.Client(c)
}

// sendProxy writes the PROXY protocol header b wants, if any, to server,
// naming client and the address it reached, local. The header is small
// and the connection new, so the write does not wait.
func sendProxy(server *net.TCPConn, b *backend.Backend, client netip.AddrPort, local net.Addr) error {
	v := b.SendProxy()
	if v == 0 {
		return nil
	}
	var buf [proxyproto.MaxV1]byte
	hdr := proxyproto.Append(buf[:0], v, client, local.(*net.TCPAddr).AddrPort())
	_, err := server.Write(hdr)
	return err
}

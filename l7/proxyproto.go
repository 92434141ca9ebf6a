package l7

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// PROXY protocol. Behind an upstream L4 balancer every connection comes
// from the balancer's address; with Proxy.ProxyProtocol set, the header
// the balancer sends before the first request names the client, whose
// address then goes into X-Forwarded-For and X-Real-IP. The header is read
// off the socket before the first request, within the policy's timeout
// (timeouts.header), consuming nothing of the request.

// proxyClient returns the client of c when the PROXY protocol is on (the
// zero address when it is off: c's peer is the client), and false when
// c must be refused: an untrusted peer, or no valid header in time.
func (p *Proxy) proxyClient(c *net.TCPConn) (netip.AddrPort, bool) {
	if !p.ProxyProtocol.On() {
		return netip.AddrPort{}, true
	}
	src, err := p.ProxyProtocol.Client(c)
	if err != nil {
		p.Counts().RefusedProxy()
		p.logger().Debug("client refused", "client", c.RemoteAddr().String(), "error", err)
		return netip.AddrPort{}, false
	}
	return src, true
}

// setClient makes src, when valid, the session's client for forwarded
// headers, the pinned-client count and send_proxy headers; otherwise the
// connection's peer is.
func (s *session) setClient(src netip.AddrPort) {
	if !src.IsValid() {
		if a, ok := s.client.RemoteAddr().(*net.TCPAddr); ok {
			s.from = a.AddrPort()
		}
		return
	}
	s.from = src
	s.ip = src.Addr().Unmap().AppendTo(s.ip[:0])
	s.pinKey = pinClientKey(s.ip)
}

// upstreamFor is upstream for an exchange with b of the client from,
// whose connection to lbctl is client. A backend with send_proxy gets a
// new connection for each exchange, starting with a header naming the
// client: a header names one client, and a kept-alive connection would
// carry the next exchange of any client (release closes such connections
// rather than keep them).
func (p *Proxy) upstreamFor(st *poolState, cfg *settings, b *backend.Backend, reuse bool, from netip.AddrPort, client *net.TCPConn, io *upIO) (*net.TCPConn, bool, error) {
	v := b.SendProxy()
	if v == 0 {
		return p.upstream(st, cfg, b, reuse, io)
	}
	c, _, err := p.upstream(st, cfg, b, false, io)
	if err != nil {
		return nil, false, err
	}
	var buf [proxyproto.MaxV1]byte
	local, _ := client.LocalAddr().(*net.TCPAddr)
	if _, err := c.Write(proxyproto.Append(buf[:0], v, from, local.AddrPort())); err != nil {
		c.Close()
		return nil, false, b.DialError(fmt.Errorf("PROXY protocol header: %w", err))
	}
	return c, false, nil
}

package l7

import (
	"net"
	"net/netip"
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
		p.logger().Debug("client refused", "client", c.RemoteAddr().String(), "error", err)
		return netip.AddrPort{}, false
	}
	return src, true
}

// setClient makes src, when valid, the session's client for forwarded
// headers and for the pinned-client count.
func (s *session) setClient(src netip.AddrPort) {
	if !src.IsValid() {
		return
	}
	s.ip = src.Addr().Unmap().AppendTo(s.ip[:0])
	s.pinKey = pinClientKey(s.ip)
}

package l4

import (
	"net"
	"net/netip"
	"testing"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// BenchmarkConnectionProxyProtocol is BenchmarkConnection with the PROXY
// protocol: "plain" as there, "header" with the client sending a v2 header
// first to a proxy whose listen_proxy lists it, "header+send" with the
// backend wanting a v2 header too. The difference from "plain" is the cost
// per connection of reading (and writing) a header.
func BenchmarkConnectionProxyProtocol(b *testing.B) {
	out, in := make([]byte, 1), make([]byte, 64)
	addr := serialBackend(b, func(c net.Conn) {
		// A header, when the backend wants one, comes first: read up to
		// the client's byte, then answer it.
		for {
			n, err := c.Read(in)
			if err != nil {
				return
			}
			if n > 0 && in[n-1] == 'x' {
				c.Write(out)
				return
			}
		}
	})
	peers, _ := proxyproto.ParsePeers([]string{"127.0.0.1"})
	plain := serveProxy(b, newRegistry(b, addr), nil)
	header := serveProxy(b, newRegistry(b, addr), func(p *Proxy) { p.ProxyProtocol = proxyproto.Policy{From: peers} })
	sendReg, err := backend.NewRegistry([]*backend.Backend{backend.NewFromSpec(backend.Spec{ID: "app-01", Address: addr, Weight: 1, SendProxy: 2})})
	if err != nil {
		b.Fatal(err)
	}
	both := serveProxy(b, sendReg, func(p *Proxy) { p.ProxyProtocol = proxyproto.Policy{From: peers} })

	hdr := proxyproto.Append(nil, 2, netip.MustParseAddrPort("203.0.113.7:5000"), netip.MustParseAddrPort("192.0.2.1:443"))
	b.Run("plain", func(b *testing.B) { connectEach(b, plain, nil) })
	b.Run("header", func(b *testing.B) { connectEach(b, header, hdr) })
	b.Run("header+send", func(b *testing.B) { connectEach(b, both, hdr) })
}

package l4

import (
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// Each connection refused for its PROXY header (an untrusted peer, a bad
// header, none in time) is counted as a PROXY refusal, on both engines,
// and opens and closes like any other: the open count returns to zero.
func TestProxyRefusalsCounted(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		tb := startBackend(t, "app-01")
		peers, err := proxyproto.ParsePeers([]string{balancer + "/32"})
		if err != nil {
			t.Fatal(err)
		}
		var p *Proxy
		addr := serveProxy(t, newRegistry(t, tb.addr), func(q *Proxy) {
			p = q
			q.ProxyProtocol = proxyproto.Policy{From: peers, Timeout: 300 * time.Millisecond}
		})
		closed := func(src string, send []byte) {
			t.Helper()
			c, br := sendFirst(t, src, addr, send)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if b, err := br.ReadByte(); err == nil {
				t.Errorf("from %s: read %q, want the connection refused", src, b)
			}
		}
		closed("127.0.0.3", header(1, "203.0.113.7:5000")) // not the balancer
		closed(balancer, []byte("PROXY NONSENSE\r\n"))     // a bad header
		closed(balancer, []byte("PROX"))                   // no whole header in time
		c, br := sendFirst(t, balancer, addr, header(1, "203.0.113.9:5000"))
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if line, err := br.ReadString('\n'); err != nil || line != "app-01\n" {
			t.Fatalf("behind a valid header: %q, %v", line, err)
		}
		c.Close()
		counts := p.Counts()
		eventually.True(t, "every connection closed", func() bool { return counts.Open() == 0 })
		if got := counts.ProxyRefused(); got != 3 {
			t.Errorf("%d PROXY refusals counted, want 3", got)
		}
		if got := counts.Accepted(); got != 4 {
			t.Errorf("%d connections accepted, want 4", got)
		}
	})
}

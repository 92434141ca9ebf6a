package l4

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/logtest"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// Each connection refused for its PROXY header (an untrusted peer, a bad
// header, none in time) is counted as a PROXY refusal, on both engines,
// and opens and closes like any other: the open count returns to zero.
func TestProxyRefusalsCounted(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		tb := startBackend(t, "app-01")
		var p *Proxy
		addr := serveProxy(t, newRegistry(t, tb.addr), func(q *Proxy) {
			p = q
			q.ProxyProtocol = balancerPolicy(t, 300*time.Millisecond)
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

// The access log's bytes_in counts the client's bytes alone on both
// engines: the PROXY header sent to a send_proxy backend is not the
// client's, and the goroutine engine writes it apart from the relay.
func TestSendProxyHeaderNotInBytesIn(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if _, _, err := proxyproto.Read(c.(*net.TCPConn), time.Now().Add(10*time.Second)); err != nil {
						return
					}
					io.Copy(c, c)
				}()
			}
		}()
		reg, err := backend.NewRegistry([]*backend.Backend{backend.NewFromSpec(backend.Spec{ID: "app-01", Address: ln.Addr().String(), Weight: 1, SendProxy: 1})})
		if err != nil {
			t.Fatal(err)
		}
		var out logtest.Buffer
		lg := accesslog.New(&out, 64)
		defer lg.Close(context.Background())
		addr := serveProxy(t, reg, func(p *Proxy) { p.AccessLog = lg })
		c := dialFrom(t, "127.0.0.43", addr)
		io.WriteString(c, "hello")
		buf := make([]byte, 5)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("echo %q, %v", buf, err)
		}
		c.Close()
		// Written counts a line as it is formatted; the line reaches the
		// output when the writer flushes.
		eventually.True(t, "the line", func() bool { return lg.Written() == 1 && strings.HasSuffix(out.String(), "\n") })
		var l struct {
			BytesIn  int64 `json:"bytes_in"`
			BytesOut int64 `json:"bytes_out"`
		}
		if err := json.Unmarshal([]byte(out.Lines()[0]), &l); err != nil {
			t.Fatal(err)
		}
		if l.BytesIn != 5 || l.BytesOut != 5 {
			t.Errorf("bytes_in %d, bytes_out %d; want 5 and 5, the client's own", l.BytesIn, l.BytesOut)
		}
	})
}

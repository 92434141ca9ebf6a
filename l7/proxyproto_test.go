package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// behindBalancer is an L7 fixture that takes PROXY headers from
// 127.0.0.2, the upstream balancer, within wait.
func behindBalancer(t *testing.T, wait time.Duration) *fixture {
	t.Helper()
	peers, err := proxyproto.ParsePeers([]string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, fixtureOpts{n: 2, configure: func(p *Proxy) {
		p.ProxyProtocol = proxyproto.Policy{From: peers, Timeout: wait}
	}})
}

// exchangeFrom connects from src, sends each piece once the proxy has
// acknowledged the one before (so that each arrives on its own), and
// returns the response (nil when the connection ended without one).
func exchangeFrom(t *testing.T, src, addr string, pieces ...[]byte) *http.Response {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range pieces {
		if i > 0 {
			if err := loopback.WaitAcked(c); err != nil {
				t.Fatalf("piece %d from %s: %v", i-1, src, err)
			}
		}
		c.Write(p)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func proxyHeader(version byte, client string) []byte {
	return proxyproto.Append(nil, version, netip.MustParseAddrPort(client), netip.MustParseAddrPort("192.0.2.1:80"))
}

const plainGet = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"

func TestProxyProtocolNamesTheClient(t *testing.T) {
	f := behindBalancer(t, 10*time.Second)
	for _, tc := range []struct {
		client string
		hdr    []byte
	}{
		{"203.0.113.7", proxyHeader(1, "203.0.113.7:5000")},
		{"203.0.113.8", proxyHeader(2, "203.0.113.8:5000")},
		{"2001:db8::9", proxyHeader(2, "[2001:db8::9]:5000")},
	} {
		// The header in pieces, the request right behind its last one.
		resp := exchangeFrom(t, "127.0.0.2", f.addr, tc.hdr[:7], append(tc.hdr[7:], plainGet...))
		if resp == nil || resp.StatusCode != 200 {
			t.Fatalf("client %s: response %v", tc.client, resp)
		}
		var h http.Header
		for _, b := range f.backends {
			if lh := b.lastHeader(); lh != nil && lh.Get("X-Forwarded-For") == tc.client {
				h = lh
			}
		}
		if h == nil || h.Get("X-Real-Ip") != tc.client || len(h.Values("X-Forwarded-For")) != 1 {
			t.Errorf("client %s: no backend saw it as X-Forwarded-For and X-Real-IP alone", tc.client)
		}
	}
	// A header that names no client (a balancer's health check) leaves
	// the balancer as the client.
	if resp := exchangeFrom(t, "127.0.0.2", f.addr, append([]byte("PROXY UNKNOWN\r\n"), plainGet...)); resp == nil || resp.StatusCode != 200 {
		t.Errorf("PROXY UNKNOWN: response %v", resp)
	}
}

func TestProxyProtocolRefusesWithoutAResponse(t *testing.T) {
	f := behindBalancer(t, 300*time.Millisecond)
	overrun := proxyHeader(2, "203.0.113.7:5000")
	overrun[14], overrun[15] = 0xff, 0xff
	for _, tc := range []struct {
		name string
		src  string
		send []byte
	}{
		{"untrusted peer", "127.0.0.3", append(proxyHeader(1, "203.0.113.7:5000"), plainGet...)},
		{"plain request from the balancer", "127.0.0.2", []byte(plainGet)},
		{"v1 without CRLF in 107 bytes", "127.0.0.2", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5000 80" + strings.Repeat(" ", 80))},
		{"v2 length overrun", "127.0.0.2", overrun},
		{"slow", "127.0.0.2", proxyHeader(1, "203.0.113.7:5000")[:12]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := exchangeFrom(t, tc.src, f.addr, tc.send); resp != nil {
				t.Errorf("got a %d response; want the connection closed", resp.StatusCode)
			}
		})
	}
	for _, b := range f.backends {
		if h := b.lastHeader(); h != nil {
			t.Errorf("%s got a request from a refused connection", b.id)
		}
	}
}

// A backend with send_proxy gets, on a connection of its own for each
// exchange, a header naming the client: the connection's peer, or the
// client a balancer's header named.
func TestSendProxyL7(t *testing.T) {
	for _, version := range []byte{1, 2} {
		addr := proxyHeaderBackend(t)
		reg, err := backend.NewRegistry([]*backend.Backend{backend.NewFromSpec(backend.Spec{ID: "app-01", Address: addr, Weight: 1, SendProxy: version})})
		if err != nil {
			t.Fatal(err)
		}
		peers, _ := proxyproto.ParsePeers([]string{"127.0.0.2"})
		f := newFixture(t, fixtureOpts{configure: func(p *Proxy) {
			p.Pool = backend.NewPool(reg)
			p.ProxyProtocol = proxyproto.Policy{From: peers}
		}})
		// Two requests of two clients on one balancer connection each,
		// kept alive: each gets its own header.
		for _, client := range []string{"203.0.113.7", "203.0.113.8"} {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			c, err := d.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(proxyHeader(version, client+":5000"))
			r := bufio.NewReader(c)
			for range 2 {
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if want := client + " <nil>"; string(body) != want {
					t.Errorf("v%d: the backend saw %q, want %q", version, body, want)
				}
			}
			c.Close()
		}
	}
}

// TestShutdownServesARequestAlreadySent: a connection accepted before
// Shutdown whose request arrives as Shutdown begins (here, behind a PROXY
// header that ends then) is served, with Connection: close, not closed
// with the request unread: that resets it, and its client cannot tell
// whether the request was served.
func TestShutdownServesARequestAlreadySent(t *testing.T) {
	f := behindBalancer(t, 10*time.Second)
	hdr := proxyHeader(2, "203.0.113.7:5000")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write(hdr[:7])
	eventually.True(t, "the connection accepted and its PROXY header awaited", func() bool {
		return goroutineIn("(*Proxy).proxyClient")
	})
	done := make(chan error, 1)
	go func() { done <- f.proxy.Shutdown(context.Background()) }()
	eventually.True(t, "the proxy shutting down", f.proxy.loop.Closing)
	c.Write(append(hdr[7:], plainGet...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the request sent as Shutdown began got no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("answer %d, close=%v; want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// proxyHeaderBackend starts a backend that reads a PROXY header from each
// connection and answers every request on it with the client the header
// named and the error reading it gave, as "ADDR ERR".
func proxyHeaderBackend(t *testing.T) string {
	t.Helper()
	return rawBackend(t, func(c net.Conn) {
		src, _, err := proxyproto.Read(c.(*net.TCPConn), time.Now().Add(5*time.Second))
		r := bufio.NewReader(c)
		for {
			req, rerr := http.ReadRequest(r)
			if rerr != nil {
				return
			}
			body := fmt.Sprintf("%v %v", src.Addr(), err)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			req.Body.Close()
		}
	})
}

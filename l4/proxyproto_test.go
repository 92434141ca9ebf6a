package l4

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// onBothEngines runs test on the event loop (where there is one) and on
// the goroutine engine.
func onBothEngines(t *testing.T, test func(t *testing.T)) {
	for _, portable := range []bool{false, true} {
		name := map[bool]string{false: "loop", true: "goroutines"}[portable]
		t.Run(name, func(t *testing.T) {
			was := testHookPortable
			testHookPortable = portable
			defer func() { testHookPortable = was }()
			test(t)
		})
	}
}

// balancer is the address that plays the upstream L4 balancer: the only
// peer listen_proxy lists.
const balancer = "127.0.0.2"

// proxyBehindBalancer serves a proxy over three greeting backends that
// takes PROXY headers from balancer, with a header timeout of wait, and
// returns its address and its table. Each of more is applied to the proxy
// before it serves, for what a test adds (a NAT tracker, say).
func proxyBehindBalancer(t *testing.T, wait time.Duration, more ...func(*Proxy)) (string, *affinity.Table) {
	t.Helper()
	var bs []*backend.Backend
	for i := range 3 {
		tb := startBackend(t, fmt.Sprintf("app-%02d", i+1))
		bs = append(bs, backend.New(tb.id, tb.addr, 1))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		t.Fatal(err)
	}
	table := affinity.New(affinity.Options{})
	t.Cleanup(table.Close)
	addr := serveProxy(t, reg, func(p *Proxy) {
		p.Table = table
		p.ProxyProtocol = balancerPolicy(t, wait)
		for _, f := range more {
			f(p)
		}
	})
	return addr, table
}

// balancerPolicy takes PROXY headers from balancer alone, within wait.
func balancerPolicy(t *testing.T, wait time.Duration) proxyproto.Policy {
	t.Helper()
	peers, err := proxyproto.ParsePeers([]string{balancer + "/32"})
	if err != nil {
		t.Fatal(err)
	}
	return proxyproto.Policy{From: peers, Timeout: wait}
}

// sendFirst connects from src, writes each piece of first once the proxy
// has acknowledged the one before (so that each arrives on its own), and
// returns the connection and a reader of its answers.
func sendFirst(t *testing.T, src, addr string, first ...[]byte) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c := dialFrom(t, src, addr)
	t.Cleanup(func() { c.Close() })
	for i, p := range first {
		if i > 0 {
			if err := loopback.WaitAcked(c); err != nil {
				t.Fatalf("piece %d from %s: %v", i-1, src, err)
			}
		}
		if _, err := c.Write(p); err != nil {
			t.Fatalf("write from %s: %v", src, err)
		}
	}
	return c, bufio.NewReader(c)
}

func header(version byte, client string) []byte {
	return proxyproto.Append(nil, version, netip.MustParseAddrPort(client), netip.MustParseAddrPort("192.0.2.1:443"))
}

// Clients behind one balancer, named by v1 and v2 headers (one in pieces),
// are keyed on their own addresses, each on its backend; what a client
// sends after the header reaches its backend untouched.
func TestProxyProtocolKeysOnTheNamedClient(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		addr, table := proxyBehindBalancer(t, 10*time.Second)
		got := map[string]string{}
		for _, tc := range []struct {
			client string
			pieces [][]byte
		}{
			{"203.0.113.7:5000", [][]byte{header(1, "203.0.113.7:5000")}},
			{"203.0.113.8:5001", func() [][]byte {
				h := header(2, "203.0.113.8:5001")
				return [][]byte{h[:5], h[5:15], h[15:20], h[20:]}
			}()},
			{"[2001:db8::9]:5002", [][]byte{header(1, "[2001:db8::9]:5002")[:9], header(1, "[2001:db8::9]:5002")[9:]}},
		} {
			pieces := append(tc.pieces, []byte("hello\n"))
			c, r := sendFirst(t, balancer, addr, pieces...)
			id, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("client %s: %v", tc.client, err)
			}
			echo, err := r.ReadString('\n')
			if err != nil || echo != "hello\n" {
				t.Errorf("client %s: echo %q, %v; want what it sent after the header", tc.client, echo, err)
			}
			c.Close()
			key := table.Key(netip.MustParseAddrPort(tc.client).Addr())
			pinned, _, ok := table.Get(key)
			if !ok || pinned != strings.TrimSpace(id) {
				t.Errorf("client %s reached %s, pinned %q %v", tc.client, id, pinned, ok)
			}
			got[tc.client] = pinned
		}
		if len(map[string]bool{got["203.0.113.7:5000"]: true, got["203.0.113.8:5001"]: true, got["[2001:db8::9]:5002"]: true}) != 3 {
			t.Errorf("three clients behind one balancer share backends: %v", got)
		}
		if _, _, ok := table.Get(table.Key(netip.MustParseAddr(balancer))); ok {
			t.Error("the balancer's own address was pinned")
		}
		// The same client again, by the other version, keeps its backend.
		_, r := sendFirst(t, balancer, addr, header(2, "203.0.113.7:6000"))
		if id, _ := r.ReadString('\n'); strings.TrimSpace(id) != got["203.0.113.7:5000"] {
			t.Errorf("203.0.113.7 came back to %q, was on %s", id, got["203.0.113.7:5000"])
		}
	})
}

// Nothing reaches a backend from a peer listen_proxy does not list, nor
// from a listed peer without a valid header in time: the connection ends
// with no greeting.
func TestProxyProtocolRefuses(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		addr, table := proxyBehindBalancer(t, 300*time.Millisecond)
		overrun := header(2, "203.0.113.7:5000")
		overrun[14], overrun[15] = 0xff, 0xff
		for _, tc := range []struct {
			name   string
			src    string
			send   []byte
			finish bool // half-close after sending
		}{
			{"untrusted peer with a valid header", "127.0.0.3", header(1, "203.0.113.7:5000"), false},
			{"plain request", balancer, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
			{"v1 without CRLF in 107 bytes", balancer, []byte("PROXY TCP4 203.0.113.7 192.0.2.1 5000 443" + strings.Repeat(" ", 80)), false},
			{"v2 length overrun", balancer, overrun, false},
			{"truncated", balancer, header(1, "203.0.113.7:5000")[:20], true},
			{"slow", balancer, header(2, "203.0.113.7:5000")[:10], false},
			{"bad address", balancer, []byte("PROXY TCP4 203.0.113.700 192.0.2.1 5000 443\r\n"), false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, r := sendFirst(t, tc.src, addr, tc.send)
				if tc.finish {
					c.CloseWrite()
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, err := r.ReadString('\n')
				if err == nil || line != "" {
					t.Errorf("got %q, %v; want the connection closed with nothing", line, err)
				}
			})
		}
		if st := table.Stats(); st.Size != 0 {
			t.Errorf("refused connections pinned %d keys", st.Size)
		}
	})
}

// A backend with send_proxy gets a header naming the client first: the
// connection's peer, or the client a balancer's header named.
func TestSendProxy(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		for _, version := range []byte{1, 2} {
			seen := make(chan string, 2)
			// report waits for what the backend saw of the next connection.
			report := func() string {
				var got string
				eventually.True(t, "the backend to report", func() bool {
					select {
					case got = <-seen:
						return true
					default:
						return false
					}
				})
				return got
			}
			addr := connBackend(t, func(c net.Conn) {
				src, ok, err := proxyproto.Read(c.(*net.TCPConn), time.Now().Add(10*time.Second))
				rest, _ := io.ReadAll(io.LimitReader(c, 5))
				seen <- fmt.Sprintf("%v %v %v %s", src, ok, err, rest)
			})
			reg, err := backend.NewRegistry([]*backend.Backend{backend.NewFromSpec(backend.Spec{ID: "app-01", Address: addr, Weight: 1, SendProxy: version})})
			if err != nil {
				t.Fatal(err)
			}
			peers, _ := proxyproto.ParsePeers([]string{balancer})
			direct := serveProxy(t, reg, nil)
			behind := serveProxy(t, reg, func(p *Proxy) { p.ProxyProtocol = proxyproto.Policy{From: peers} })

			c := dialFrom(t, "127.0.0.5", direct)
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			c.Write([]byte("hello"))
			want := fmt.Sprintf("%v true <nil> hello", local)
			if got := report(); got != want {
				t.Errorf("v%d direct: backend saw %q, want %q", version, got, want)
			}
			c.Close()

			c, _ = sendFirst(t, balancer, behind, header(2, "203.0.113.7:5000"), []byte("hello"))
			if got, want := report(), "203.0.113.7:5000 true <nil> hello"; got != want {
				t.Errorf("v%d behind a balancer: backend saw %q, want %q", version, got, want)
			}
			c.Close()
		}
	})
}

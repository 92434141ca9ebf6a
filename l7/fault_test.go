package l7

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// settled waits until no exchange is in progress on any backend of f: the
// exchange that is ending has made its health report, if any, by then.
func (f *fixture) settled(t *testing.T) {
	t.Helper()
	eventually.True(t, "the exchanges in progress to end", func() bool {
		for _, b := range f.registry.All() {
			if b.Active() != 0 {
				return false
			}
		}
		return true
	})
}

// requireAllUp fails the test unless every backend of f is still up.
func (f *fixture) requireAllUp(t *testing.T, after string) {
	t.Helper()
	for _, b := range f.registry.All() {
		if !b.Available() {
			t.Fatalf("%s: backend %s was marked down", after, b.ID)
		}
	}
}

// TestClientBodyFaultsNeverCountAgainstBackends sends the malformed
// chunked bodies that used to take a pool down, each past a well-formed
// first chunk line (so the request has reached a backend), to two backends
// that one failed check marks down. Each gets 400 and a closed connection;
// no backend goes down, and a normal request still gets 200.
func TestClientBodyFaultsNeverCountAgainstBackends(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, prober: true})
	const head = "POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tt := range []struct{ name, body string }{
		{"bad size after the first chunk", "5\r\nhello\r\nzz\r\n"},
		{"lone CR after chunk data", "5\r\nhello\r5\r\nhello\r\n0\r\n\r\n"},
		{"lone LF after chunk data", "5\r\nhello\n0\r\n\r\n"},
		{"0x0 as the last chunk", "5\r\nhello\r\n0x0\r\n\r\n"},
		{"malformed extension after the first chunk", "5\r\nhello\r\n5;=x\r\nhello\r\n0\r\n\r\n"},
		{"overlong size line", "5\r\nhello\r\n5;a=" + strings.Repeat("b", 5000) + "\r\nhello\r\n0\r\n\r\n"},
		{"malformed trailer", "5\r\nhello\r\n0\r\nno colon\r\n\r\n"},
		{"101 trailer fields", "5\r\nhello\r\n0\r\n" + strings.Repeat("X-T: 1\r\n", 101) + "\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, f.addr, head+tt.body)
			if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "Connection: close") {
				t.Errorf("answer %.80q, want 400 and the connection closed", got)
			}
			f.settled(t)
			f.requireAllUp(t, tt.name)
		})
	}
	if id, resp := get(t, f.client(t), f.url("/")); resp.StatusCode != 200 || id == "" {
		t.Errorf("after the bad bodies: %d %q, want 200 from a backend", resp.StatusCode, id)
	}
}

// TestClientAbortIsNobodysFault: a client that goes away or stalls in the
// middle of its body gets no answer, and no backend is penalised.
func TestClientAbortIsNobodysFault(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, prober: true, configure: func(p *Proxy) { p.IdleTimeout = 300 * time.Millisecond }})
	const fixed = "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
	const chunked = "POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"
	served := func() (n int64) {
		for _, hb := range f.backends {
			n += hb.Served()
		}
		return n
	}
	for _, tt := range []struct {
		name, raw string
		end       func(c *net.TCPConn) // how the client leaves; nil: it stalls
	}{
		{"half-close in a fixed body", fixed, func(c *net.TCPConn) { c.CloseWrite() }},
		{"half-close in a chunk", chunked, func(c *net.TCPConn) { c.CloseWrite() }},
		{"reset in a fixed body", fixed, func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
		{"reset in a chunk", chunked, func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
		{"stall past the idle timeout", fixed, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := served()
			c := dialProxy(t, f.addr).(*net.TCPConn)
			io.WriteString(c, tt.raw)
			// The request has reached a backend before the client leaves.
			eventually.True(t, "the request to reach a backend", func() bool { return served() > before })
			if tt.end != nil {
				tt.end(c)
			}
			if tt.end == nil || !strings.HasPrefix(tt.name, "reset") {
				if got, _ := io.ReadAll(c); len(got) != 0 {
					t.Errorf("the client that left got %.80q, want nothing", got)
				}
			}
			f.settled(t)
			f.requireAllUp(t, tt.name)
		})
	}
	if id, resp := get(t, f.client(t), f.url("/")); resp.StatusCode != 200 || id == "" {
		t.Errorf("after the aborts: %d %q, want 200 from a backend", resp.StatusCode, id)
	}
}

// TestSixBadBodiesDoNotEmptyAPool is the report: with fall = 3,
// six malformed bodies over two backends took both down, and every client
// then got 503.
func TestSixBadBodiesDoNotEmptyAPool(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, prober: true, configure: func(p *Proxy) { p.Health.Fall = 3 }})
	for range 6 {
		got := rawExchange(t, f.addr, "POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
			t.Errorf("answer %.60q, want 400", got)
		}
	}
	f.settled(t)
	for _, b := range f.registry.All() {
		if n := b.ConsecutiveFailures(); n != 0 || !b.Available() {
			t.Errorf("backend %s: %d failures counted, available %v; want none, up", b.ID, n, b.Available())
		}
	}
	if _, resp := get(t, f.client(t), f.url("/")); resp.StatusCode != 200 {
		t.Errorf("after six bad bodies: %d, want 200", resp.StatusCode)
	}
}

// healthFixture is newRawFixture with passive health on: one failed check
// marks the backend down.
func healthFixture(t *testing.T, addr string, configure func(*Proxy)) (string, *backend.Backend) {
	t.Helper()
	var b *backend.Backend
	proxy := newRawFixture(t, addr, func(p *Proxy) {
		p.Health = &backend.Prober{Pool: p.Pool, Checker: &backend.TCPCheck{}, Rise: 1, Fall: 1}
		b = p.Pool.Registry().Get("app-01")
		if configure != nil {
			configure(p)
		}
	})
	return proxy, b
}

// TestBackendFaultsCountAgainstHealth: what only the backend can be blamed
// for takes it down (fall = 1); silence while the client is still sending
// its body, or a response cut after its head, does not. Only the cases
// about silence run with a short timeouts.server, so that a slow machine
// cannot turn the others into timeouts.
func TestBackendFaultsCountAgainstHealth(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	silent := func(c net.Conn) { io.Copy(io.Discard, c) }
	for _, tt := range []struct {
		name     string
		backend  func(c net.Conn)
		request  string
		silence  bool   // the case is about timeouts.server
		status   string // "" for a relayed, cut response
		wantDown bool
	}{
		{"EOF before the head", func(c net.Conn) {}, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false, "502", true},
		{"malformed head", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 2OO OK\r\n\r\n") }, get, false, "502", true},
		{"oversized head", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX: "+strings.Repeat("a", 70000)+"\r\n\r\n")
		}, get, false, "502", true},
		{"silent past timeouts.server", silent, get, true, "504", true},
		{"silent while the body still comes", silent,
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part", true, "504", false},
		{"cut after the head", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
		}, get, false, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := scriptedBackend(t, tt.backend)
			proxy, b := healthFixture(t, addr, func(p *Proxy) {
				if tt.silence {
					p.ServerTimeout = 300 * time.Millisecond
				}
			})
			c := dialProxy(t, proxy)
			io.WriteString(c, tt.request)
			r := bufio.NewReader(c)
			line, _ := r.ReadString('\n')
			io.Copy(io.Discard, r) // until lbctl closes
			if tt.status == "" {
				if !strings.HasPrefix(line, "HTTP/1.1 200 ") {
					t.Errorf("status line %q, want the backend's 200", line)
				}
			} else if !strings.HasPrefix(line, "HTTP/1.1 "+tt.status+" ") {
				t.Errorf("status line %q, want %s", line, tt.status)
			}
			eventually.True(t, "the exchange to end", func() bool { return b.Active() == 0 })
			if down := !b.Available(); down != tt.wantDown {
				t.Errorf("backend down = %v, want %v", down, tt.wantDown)
			}
		})
	}
}

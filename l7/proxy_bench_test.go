package l7

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/testbackend"
	"github.com/lbctl/lbctl/natview"
)

// cannedBackend answers every request head it reads on a kept-alive
// connection with the same small response, without allocating, so that a
// benchmark through the proxy measures the proxy.
func cannedBackend(t testing.TB, resp string) string {
	t.Helper()
	b, err := testbackend.StartTCPFunc("app-01", func(c net.Conn) {
		buf := make([]byte, 64<<10)
		out := []byte(resp)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(out); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b.Addr()
}

// benchProxy starts a proxy over one canned backend "app-01".
func benchProxy(b *testing.B, resp string) string { return benchProxyT(b, resp) }

func benchProxyT(b testing.TB, resp string) string {
	b.Helper()
	return startProxy(b, cannedBackend(b, resp), nil)
}

// startProxy starts a proxy over one backend "app-01" at addr, round
// robin, with the default cookie; configure, when not nil, adjusts it
// first. It returns the proxy's address and closes it when the test ends
// (see serveOn).
func startProxy(t testing.TB, addr string, configure func(*Proxy)) string {
	t.Helper()
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// The NAT view counts new sessions, as it does in lbctl serve.
	p := &Proxy{Pool: backend.NewPool(reg), Selector: &backend.RoundRobin{}, Cookie: defaultCookie(), NAT: new(natview.Tracker)}
	if configure != nil {
		configure(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, p, ln)
	return ln.Addr().String()
}

const benchResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n"

// benchRequests sends req over one kept-alive connection b.N times and
// reads each response, which must be respLen bytes.
func benchRequests(b *testing.B, addr, req string, respLen int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out, in := []byte(req), make([]byte, respLen)
	// Warm the session and connection pools.
	exchangeN(b, c, out, in, 10)
	b.ReportAllocs()
	b.ResetTimer()
	exchangeN(b, c, out, in, b.N)
}

// exchangeN writes out on c and reads a response of len(in) bytes into
// in, n times. It allocates nothing, so that what a benchmark counts is
// the proxy's.
func exchangeN(b *testing.B, c net.Conn, out, in []byte, n int) {
	for range n {
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStickyRequest is the hot path: a browser request with a valid
// persistence cookie on a kept-alive connection. Allocations per op are the
// proxy's (the client and the canned backend allocate nothing).
func BenchmarkStickyRequest(b *testing.B) {
	addr := benchProxy(b, benchResponse)
	req := "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Cookie: theme=dark; SERVERID=app-01; session=0123456789abcdef\r\n\r\n"
	benchRequests(b, addr, req, len(benchResponse))
}

// BenchmarkNewSession is a request without a cookie: the selector places
// it and the response carries Set-Cookie.
func BenchmarkNewSession(b *testing.B) {
	addr := benchProxy(b, benchResponse)
	req := "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
	// The response grows by the Set-Cookie and Cache-Control fields.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c.Write([]byte(req))
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	c.Close()
	benchRequests(b, addr, req, n)
}

// TestStickyPathDoesNotAllocate holds the proxy to zero allocations per
// request on the sticky and the new-session paths once warm.
func TestStickyPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for name, req := range map[string]string{
		"sticky":      "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; SERVERID=app-01\r\n\r\n",
		"new session": "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			addr := benchProxyT(t, benchResponse)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			out := []byte(req)
			c.Write(out)
			first := make([]byte, 4096)
			n, err := c.Read(first)
			if err != nil {
				t.Fatal(err)
			}
			in := make([]byte, n)
			roundTrip := func() {
				c.Write(out)
				if _, err := io.ReadFull(c, in); err != nil {
					t.Fatal(err)
				}
			}
			for range 20 {
				roundTrip()
			}
			if avg := testing.AllocsPerRun(500, roundTrip); avg >= 1 {
				t.Errorf("%.2f allocations per request, want 0", avg)
			}
		})
	}
}

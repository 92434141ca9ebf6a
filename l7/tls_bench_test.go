package l7

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/lbctl/lbctl/backend"
)

// tlsBenchProxy starts a TLS proxy with o over one canned backend
// "app-01", as benchProxy does for plain HTTP.
func tlsBenchProxy(b *testing.B, resp string, o TLSOptions) string {
	b.Helper()
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", cannedBackend(b, resp), 1)})
	if err != nil {
		b.Fatal(err)
	}
	front, err := NewTLS(o)
	if err != nil {
		b.Fatal(err)
	}
	p := &Proxy{Pool: backend.NewPool(reg), Selector: &backend.RoundRobin{}, Cookie: defaultCookie(), TLS: front}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(ln)
	b.Cleanup(func() { p.Close() })
	return ln.Addr().String()
}

// BenchmarkTLSStickyRequest is BenchmarkStickyRequest over TLS 1.3: a
// kept-alive connection whose session was resumed from a ticket. The
// client's TLS work is in the figures too.
func BenchmarkTLSStickyRequest(b *testing.B) {
	addr := tlsBenchProxy(b, benchResponse, TLSOptions{Certificates: []tls.Certificate{testCert(b, "lb.test")}})
	conf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	req := "GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Cookie: theme=dark; SERVERID=app-01; session=0123456789abcdef\r\n\r\n"
	out, in := []byte(req), make([]byte, len(benchResponse))
	// A first connection gets a ticket; the measured one resumes.
	for i := range 2 {
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		exchangeN(b, c, out, in, 10)
		if i == 0 {
			continue
		}
		if !c.ConnectionState().DidResume {
			b.Fatal("the session was not resumed")
		}
		b.ReportAllocs()
		b.ResetTimer()
		exchangeN(b, c, out, in, b.N)
	}
}

// BenchmarkTLSHandshake is a new client's full TLS 1.3 handshake with the
// ECDSA P-256 certificate, and one request on it. The client is Go's, which
// offers X25519MLKEM768 as browsers do, and gets it.
func BenchmarkTLSHandshake(b *testing.B) {
	benchHandshakes(b, nil)
}

// BenchmarkTLSHandshakeX25519 is BenchmarkTLSHandshake with a client that
// offers X25519 alone, as OpenSSL 3.0 clients do.
func BenchmarkTLSHandshakeX25519(b *testing.B) {
	benchHandshakes(b, []tls.CurveID{tls.X25519})
}

func benchHandshakes(b *testing.B, curves []tls.CurveID) {
	addr := tlsBenchProxy(b, benchResponse, TLSOptions{Certificates: []tls.Certificate{testCert(b, "lb.test")}})
	conf := &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves}
	out, in := []byte("GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-01\r\n\r\n"), make([]byte, len(benchResponse))
	b.ReportAllocs()
	for b.Loop() {
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			b.Fatal(err)
		}
		exchangeN(b, c, out, in, 1)
		c.Close()
	}
}

// BenchmarkH2StickyRequest is a sticky GET as one stream of a kept-alive
// HTTP/2 connection. The allocations include Go's HTTP/2 client's.
func BenchmarkH2StickyRequest(b *testing.B) {
	addr := tlsBenchProxy(b, benchResponse, TLSOptions{Certificates: []tls.Certificate{testCert(b, "lb.test")}, ALPN: []string{"h2"}})
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	req, _ := http.NewRequest("GET", "https://"+addr+"/index.html", nil)
	req.Header.Set("Cookie", "theme=dark; SERVERID=app-01; session=0123456789abcdef")
	buf := make([]byte, 64)
	do := func() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := io.ReadFull(resp.Body, buf[:12]); n != 12 || resp.ProtoMajor != 2 {
			b.Fatalf("read %d bytes over %s", n, resp.Proto)
		}
		resp.Body.Close()
	}
	for range 10 {
		do()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
}

package l7

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/selfsigned"
)

// testCert returns a self-signed certificate for names, failing the test
// on an error.
func testCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c, err := selfsigned.Certificate(names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsFixture is newFixture with TLS on the listener, from o.
func tlsFixture(t testing.TB, n int, o TLSOptions, configure func(p *Proxy)) (*fixture, *TLS) {
	t.Helper()
	front, err := NewTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{n: n, configure: func(p *Proxy) {
		p.TLS = front
		if configure != nil {
			configure(p)
		}
	}})
	return f, front
}

// tlsClient is an HTTP/1.1 client over TLS with a cookie jar and
// kept-alive connections, trusting any certificate, as a browser told to
// go on would be.
func tlsClient(t testing.TB, conf *tls.Config) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	if conf == nil {
		conf = &tls.Config{InsecureSkipVerify: true}
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: conf, MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second}
}

// checkEchoed reads resp's body, closes it, and fails the test unless it
// is body, byte for byte. The body is hashed as it arrives, so a large one
// is never held twice.
func checkEchoed(t testing.TB, resp *http.Response, body []byte) {
	t.Helper()
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || n != int64(len(body)) {
		t.Fatalf("echoed %d bytes, %v; want %d", n, err, len(body))
	}
	if sum := sha256.Sum256(body); !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Error("echoed body differs")
	}
}

// handshakeName dials addr over TLS with serverName as SNI and returns the
// first DNS name of the certificate it gets.
func handshakeName(t testing.TB, addr, serverName string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial with SNI %q: %v", serverName, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].DNSNames[0]
}

func TestTLSCertificateBySNI(t *testing.T) {
	f, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{
		testCert(t, "default.test"),
		testCert(t, "*.wild.test"),
		testCert(t, "exact.wild.test"),
	}}, nil)
	for sni, want := range map[string]string{
		"exact.wild.test": "exact.wild.test", // exact before wildcard
		"EXACT.wild.test": "exact.wild.test",
		"a.wild.test":     "*.wild.test",
		"a.b.wild.test":   "default.test", // a wildcard covers one label
		"wild.test":       "default.test",
		"unknown.test":    "default.test",
		"":                "default.test", // no SNI
	} {
		if got := handshakeName(t, f.addr, sni); got != want {
			t.Errorf("SNI %q got the certificate of %q, want %q", sni, got, want)
		}
	}
}

func TestTLSRequestsCarryForwardedProtoAndStick(t *testing.T) {
	f, _ := tlsFixture(t, 2, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}, nil)
	c := tlsClient(t, nil)
	url := "https://" + f.addr + "/"
	first, resp := get(t, c, url)
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "SERVERID="+first) {
		t.Fatalf("first response sets %q, want the SERVERID cookie", sc)
	}
	if got := f.byID[first].lastHeader().Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
	for range 5 {
		if id, _ := get(t, c, url); id != first {
			t.Fatalf("request went to %s, want %s (the cookie's)", id, first)
		}
	}
	// Failover: the pinned backend dies, the next request moves with a new
	// cookie.
	f.byID[first].Kill()
	id, resp := get(t, c, url)
	if id == first || !strings.Contains(resp.Header.Get("Set-Cookie"), "SERVERID="+id) {
		t.Errorf("after %s died: served by %s with Set-Cookie %q", first, id, resp.Header.Get("Set-Cookie"))
	}
}

func TestTLSCookieSecure(t *testing.T) {
	cookie := defaultCookie()
	cookie.Secure = true
	front, err := NewTLS(TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{n: 1, cookie: cookie, configure: func(p *Proxy) { p.TLS = front }})
	_, resp := get(t, tlsClient(t, nil), "https://"+f.addr+"/")
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Errorf("Set-Cookie over TLS = %q, want Secure", sc)
	}
}

func TestTLSUpdateSwapsCertificateForNewHandshakes(t *testing.T) {
	f, front := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "old.test")}}, nil)
	c := tlsClient(t, nil)
	url := "https://" + f.addr + "/"
	_, resp := get(t, c, url)
	if got := resp.TLS.PeerCertificates[0].DNSNames[0]; got != "old.test" {
		t.Fatalf("certificate %q, want old.test", got)
	}
	if err := front.Update(TLSOptions{Certificates: []tls.Certificate{testCert(t, "new.test")}}); err != nil {
		t.Fatal(err)
	}
	// The kept-alive connection goes on, with its session.
	_, resp = get(t, c, url)
	if got := resp.TLS.PeerCertificates[0].DNSNames[0]; got != "old.test" {
		t.Errorf("open connection now shows %q, want old.test: it must not have been replaced", got)
	}
	if got := handshakeName(t, f.addr, "new.test"); got != "new.test" {
		t.Errorf("new handshake got %q, want new.test", got)
	}
	// A bad update changes nothing.
	if err := front.Update(TLSOptions{}); err == nil {
		t.Error("Update without certificates succeeded")
	}
	if got := handshakeName(t, f.addr, ""); got != "new.test" {
		t.Errorf("after a failed update: %q, want new.test", got)
	}
}

func TestTLSMinVersion(t *testing.T) {
	f, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}, MinVersion: tls.VersionTLS13}, nil)
	_, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 client against min 1.3: %v, want a protocol version alert", err)
	}
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %#x, want TLS 1.3", v)
	}
	// Older than 1.2 is never accepted, whatever the options.
	f2, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}, nil)
	if _, err := tls.Dial("tcp", f2.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was accepted")
	}
}

func TestTLSSessionTicketsResume(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			f, front := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}, nil)
			conf := &tls.Config{InsecureSkipVerify: true, MaxVersion: version, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
			resumed := func() bool {
				t.Helper()
				c, err := tls.Dial("tcp", f.addr, conf)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				// TLS 1.3 tickets come after the handshake: a request
				// and its answer make sure the client has read them.
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\n\r\n")
				if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
					t.Fatal(err)
				}
				return c.ConnectionState().DidResume
			}
			if resumed() {
				t.Fatal("first connection resumed")
			}
			if !resumed() {
				t.Error("second connection did not resume its session")
			}
			// A certificate update keeps the ticket keys.
			if err := front.Update(TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}); err != nil {
				t.Fatal(err)
			}
			if !resumed() {
				t.Error("no resumption after an update")
			}
		})
	}
}

// TestTLSBadHandshakesNeverReachABackend: a client that stalls in the
// middle of its ClientHello is cut at the header timeout, and one that
// sends plain HTTP or garbage is closed; neither reaches a backend.
func TestTLSBadHandshakesNeverReachABackend(t *testing.T) {
	const header = 500 * time.Millisecond
	f, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}},
		func(p *Proxy) { p.HeaderTimeout = header })
	for name, send := range map[string]string{
		"stalled ClientHello": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"plain HTTP":          "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"garbage":             "\x00\x01\x02\x03garbage\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, send)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(c)
			took := time.Since(start)
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("reading: %v (after %v): want the connection closed", err, took)
			}
			if bytes.Contains(got, []byte("HTTP/1.1")) {
				t.Errorf("got an HTTP answer %q", got)
			}
			if name == "stalled ClientHello" && took < header {
				t.Errorf("closed after %v, before the header timeout %v", took, header)
			}
		})
	}
	if n := f.backends[0].Served(); n != 0 {
		t.Errorf("backend served %d requests from bad handshakes", n)
	}
}

// TestTLSStreamsBodiesBothWays sends a large body up and gets it echoed
// back through TLS, as it arrives.
func TestTLSStreamsBodiesBothWays(t *testing.T) {
	f, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}, nil)
	body := make([]byte, 16<<20)
	rand.Read(body)
	resp, err := tlsClient(t, nil).Post("https://"+f.addr+"/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	checkEchoed(t, resp, body)
}

// TestTLSUpgradeRelaysBothWays: a protocol switch (WebSocket) over TLS
// relays bytes both ways, and a clean end from the backend reaches the
// client.
func TestTLSUpgradeRelaysBothWays(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprintf(c, "echo %s", line)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, r)
	})
	front, err := NewTLS(TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}})
	if err != nil {
		t.Fatal(err)
	}
	proxy, _ := healthFixture(t, addr, func(p *Proxy) { p.TLS = front })
	c, err := tls.Dial("tcp", proxy, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	io.WriteString(c, "hello\n")
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "echo hello\n" {
		t.Errorf("after the switch got %q, %v; want the echo then a clean end", rest, err)
	}
}

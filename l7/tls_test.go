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
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/lbctl/lbctl/internal/selfsigned"
	"github.com/lbctl/lbctl/internal/testca"
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
			// The clock starts before the dial: the header timeout runs
			// from the accept, which a test held up after its dial (past
			// the listener's deferred accept) would otherwise precede.
			start := time.Now()
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
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

// dialCurves handshakes with addr offering curves (nil: Go's default) and
// returns the key exchange negotiated.
func dialCurves(addr string, curves []tls.CurveID) (tls.CurveID, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, CurvePreferences: curves})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().CurveID, nil
}

// TestTLSCurves: by default a client that offers the X25519MLKEM768
// hybrid, as browsers and Go do, gets it; Curves narrows the set, and a
// client with nothing in it is refused.
func TestTLSCurves(t *testing.T) {
	cert := testCert(t, "lb.test")
	f, front := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{cert}}, nil)
	if got, err := dialCurves(f.addr, nil); err != nil || got != tls.X25519MLKEM768 {
		t.Errorf("default: negotiated %v, %v; want X25519MLKEM768", got, err)
	}
	if got, err := dialCurves(f.addr, []tls.CurveID{tls.X25519}); err != nil || got != tls.X25519 {
		t.Errorf("default, an X25519 client: negotiated %v, %v", got, err)
	}

	if err := front.Update(TLSOptions{Certificates: []tls.Certificate{cert}, Curves: []tls.CurveID{tls.X25519, tls.CurveP256}}); err != nil {
		t.Fatal(err)
	}
	if got, err := dialCurves(f.addr, nil); err != nil || got != tls.X25519 {
		t.Errorf("X25519 and P-256 only: negotiated %v, %v; want X25519", got, err)
	}
	if got, err := dialCurves(f.addr, []tls.CurveID{tls.CurveP256}); err != nil || got != tls.CurveP256 {
		t.Errorf("a P-256 client: negotiated %v, %v", got, err)
	}
	if got, err := dialCurves(f.addr, []tls.CurveID{tls.X25519MLKEM768}); err == nil {
		t.Errorf("a hybrid-only client negotiated %v with X25519 and P-256 only", got)
	}
}

// testCA returns a certificate authority for the test.
func testCA(t testing.TB) *testca.CA {
	t.Helper()
	ca, err := testca.New("Test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue returns a certificate for name from ca, its chain carrying ca.
func issue(t testing.TB, ca *testca.CA, name string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ocspOf returns ca's OCSP response about c saying r.
func ocspOf(t testing.TB, ca *testca.CA, c tls.Certificate, r testca.Response) []byte {
	t.Helper()
	der, err := ca.OCSP(c.Leaf, r)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// stapled handshakes with addr asking for OCSP stapling, with serverName
// as SNI, and returns the response stapled (nil for none).
func stapled(t testing.TB, addr, serverName string) []byte {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().OCSPResponse
}

// TestTLSOCSPStapling: a certificate's OCSP response is stapled to its
// handshakes, under TLS 1.2 and 1.3, and a certificate without one gets
// none; once the response is past its NextUpdate, handshakes get the
// certificate without it.
func TestTLSOCSPStapling(t *testing.T) {
	ca := testCA(t)
	withStaple, without := issue(t, ca, "ocsp.test"), issue(t, ca, "plain.test")
	now := time.Now()
	der := ocspOf(t, ca, withStaple, testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)})
	withStaple.OCSPStaple = der

	var clock atomic.Int64 // unix nanoseconds
	clock.Store(now.UnixNano())
	front, err := newTLS(TLSOptions{Certificates: []tls.Certificate{withStaple, without}}, func() time.Time { return time.Unix(0, clock.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.TLS = front }})

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, err := tls.Dial("tcp", f.addr, &tls.Config{ServerName: "ocsp.test", InsecureSkipVerify: true, MaxVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ConnectionState().OCSPResponse; !bytes.Equal(got, der) {
			t.Errorf("%s: stapled %d bytes, want the %d of the response", tls.VersionName(v), len(got), len(der))
		}
		c.Close()
	}
	if got := stapled(t, f.addr, "plain.test"); got != nil {
		t.Errorf("a certificate without a response stapled %d bytes", len(got))
	}

	clock.Store(now.Add(time.Hour).UnixNano()) // the response's NextUpdate
	if got := stapled(t, f.addr, "ocsp.test"); got != nil {
		t.Errorf("a stale response is still stapled (%d bytes)", len(got))
	}
	if got := handshakeName(t, f.addr, "ocsp.test"); got != "ocsp.test" {
		t.Errorf("after its response went stale, the certificate of %q is served", got)
	}
}

// TestTLSOCSPRejects: a response that is not a current "good" about the
// certificate, signed by its issuer, is refused naming what is wrong, and
// the options in force stay.
func TestTLSOCSPRejects(t *testing.T) {
	ca, other := testCA(t), testCA(t)
	cert, stranger := issue(t, ca, "ocsp.test"), issue(t, ca, "other.test")
	now := time.Now()
	current := testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)}
	rogue := issue(t, ca, "responder.test") // a server certificate, not an OCSP signer
	signerPEM, signerKey, err := ca.IssuePEM("responder.test", true)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tls.X509KeyPair(signerPEM, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := testCert(t, "ocsp.test")
	tests := []struct {
		name string
		cert tls.Certificate
		der  []byte
		want string
	}{
		{"garbage", cert, []byte("not an OCSP response"), "OCSP response: asn1: structure error"},
		{"revoked", cert, ocspOf(t, ca, cert, testca.Response{Status: ocsp.Revoked, ThisUpdate: current.ThisUpdate, NextUpdate: current.NextUpdate}), "OCSP response: the certificate was revoked at "},
		{"unknown", cert, ocspOf(t, ca, cert, testca.Response{Status: ocsp.Unknown, ThisUpdate: current.ThisUpdate, NextUpdate: current.NextUpdate}), "OCSP response: the certificate's status is unknown to its CA"},
		{"expired", cert, ocspOf(t, ca, cert, testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(-time.Hour)}), "OCSP response: expired at "},
		{"future", cert, ocspOf(t, ca, cert, testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(time.Hour), NextUpdate: now.Add(2 * time.Hour)}), "OCSP response: issued for "},
		{"another certificate", cert, ocspOf(t, ca, stranger, current), "OCSP response: no response matching the supplied certificate"},
		{"another CA", cert, ocspOf(t, other, cert, current), "OCSP response: bad OCSP signature"},
		{"responder not for OCSP", cert, ocspOf(t, ca, cert, testca.Response{Status: ocsp.Good, ThisUpdate: current.ThisUpdate, NextUpdate: current.NextUpdate, Responder: &rogue}), `OCSP response: its responder "CN=responder.test" is not authorized for OCSP signing`},
		{"no issuer in the chain", selfSigned, ocspOf(t, ca, cert, current), "OCSP response: the certificate file holds no issuer certificate"},
	}
	front, err := NewTLS(TLSOptions{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cert
			c.OCSPStaple = tt.der
			err := front.Update(TLSOptions{Certificates: []tls.Certificate{c}})
			if err == nil || !strings.HasPrefix(err.Error(), "tls: certificate 0: "+tt.want) {
				t.Errorf("error = %v\nwant it to start with tls: certificate 0: %s", err, tt.want)
			}
		})
	}
	if got := front.Certificate("ocsp.test"); got.OCSPStaple != nil || got.Leaf != cert.Leaf {
		t.Error("a refused update changed the certificate served")
	}

	// A response from a responder the CA delegated is fine.
	c := cert
	c.OCSPStaple = ocspOf(t, ca, cert, testca.Response{Status: ocsp.Good, ThisUpdate: current.ThisUpdate, NextUpdate: current.NextUpdate, Responder: &signer})
	if err := front.Update(TLSOptions{Certificates: []tls.Certificate{c}}); err != nil {
		t.Errorf("a delegated responder's response: %v", err)
	}
}

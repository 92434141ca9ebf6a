package instance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/selfsigned"
	"github.com/lbctl/lbctl/internal/testca"
)

// writeCert writes a self-signed certificate for names and its key to
// dir/name.pem and dir/name.key, replacing what is there, and returns the
// paths.
func writeCert(t *testing.T, dir, name string, names ...string) (cert, key string) {
	t.Helper()
	c, k, err := selfsigned.PEM(names...)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// tlsConfig parses an L7 config over a backend at addr with [tls] tail, as
// a file would be read, defaults included.
func tlsConfig(t *testing.T, addr, tail string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf("mode = \"l7\"\nlisten = \"127.0.0.1:8443\"\n[health]\ncheck = \"none\"\n[[backend]]\nid = \"app-01\"\naddress = %q\n\n[tls]\n%s\n", addr, tail)
	cfg, err := config.Parse([]byte(doc), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// peerName dials addr over TLS and returns the first DNS name of the
// certificate it is shown.
func peerName(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].DNSNames[0]
}

// TestTLSReloadSwapsCertificates: a reload reads the certificate files
// again; new handshakes get the new certificate while an open connection
// goes on; a broken file refuses the reload, naming the file, and the
// certificate in force stays.
func TestTLSReloadSwapsCertificates(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "site", "old.test")
	cfg := tlsConfig(t, startStatusBackend(t, "app-01"), fmt.Sprintf("certificates = [{cert = %q, key = %q}]", cert, key))
	if !cfg.Cookie.Secure {
		t.Fatal("cookie.secure is not true by default on a TLS listener")
	}
	next := cfg
	in, addr := startInstance(t, cfg, &next)

	// A kept-alive client, open across the reload.
	open, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(open)
	request := func() *http.Response {
		t.Helper()
		io.WriteString(open, "GET / HTTP/1.1\r\nHost: old.test\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if sc := request().Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Errorf("Set-Cookie %q on a TLS listener, want Secure", sc)
	}

	writeCert(t, dir, "site", "new.test")
	res, err := in.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Summary, "~tls(certificates)") {
		t.Errorf("reload summary %q does not name the certificates", res.Summary)
	}
	if got := peerName(t, addr); got != "new.test" {
		t.Errorf("handshake after the reload shows %q, want new.test", got)
	}
	if resp := request(); resp.StatusCode != 200 {
		t.Errorf("open connection after the reload: %d", resp.StatusCode)
	}
	if got := open.ConnectionState().PeerCertificates[0].DNSNames[0]; got != "old.test" {
		t.Errorf("open connection shows %q", got)
	}

	// A reload with nothing changed says so.
	if res, err := in.Reload(context.Background()); err != nil || strings.Contains(res.Summary, "tls") {
		t.Errorf("reload without change: %q, %v", res.Summary, err)
	}

	// A broken certificate file.
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = in.Reload(context.Background())
	var re *admin.ReloadError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "tls.certificates[0]: "+cert) ||
		!strings.Contains(err.Error(), "the certificates in force are kept") {
		t.Errorf("reload with a broken certificate: %v, want a ReloadError naming %s", err, cert)
	}
	// A missing key file.
	writeCert(t, dir, "site", "newer.test")
	os.Remove(key)
	if _, err = in.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "tls.certificates[0].key: open "+key) {
		t.Errorf("reload with a missing key: %v", err)
	}
	if got := peerName(t, addr); got != "new.test" {
		t.Errorf("after failed reloads the handshake shows %q, want new.test (kept)", got)
	}
	if resp := request(); resp.StatusCode != 200 {
		t.Errorf("open connection after the failed reloads: %d", resp.StatusCode)
	}
}

func TestTLSReloadRefusesTurningTLSOffOrMovingTheRedirect(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "site", "lb.test")
	backend := startStatusBackend(t, "app-01")
	cfg := tlsConfig(t, backend, fmt.Sprintf("certificates = [{cert = %q, key = %q}]", cert, key))
	next := cfg
	in, _ := startInstance(t, cfg, &next)
	next = tlsConfig(t, backend, "")
	if _, err := in.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "tls.certificates: TLS turned off: changed; it takes effect only at a restart") {
		t.Errorf("reload turning TLS off: %v", err)
	}
	next = tlsConfig(t, backend, fmt.Sprintf("certificates = [{cert = %q, key = %q}]\nredirect_http = \"127.0.0.1:1\"", cert, key))
	if _, err := in.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "tls.redirect_http: changed") {
		t.Errorf("reload moving the redirect: %v", err)
	}
}

// TestTLSRedirectHTTP: the plain listener answers 308 to the same host,
// path and query over https at the TLS listener's port, without reaching
// a backend, and closes a client that sends no head within
// timeouts.header.
func TestTLSRedirectHTTP(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "site", "lb.test")
	redirect := refusedAddress(t)
	cfg := tlsConfig(t, refusedAddress(t), fmt.Sprintf("certificates = [{cert = %q, key = %q}]\nredirect_http = %q", cert, key, redirect))
	cfg.Timeouts.Header = config.Duration(time.Second)
	next := cfg
	_, addr := startInstance(t, cfg, &next)
	_, port, _ := net.SplitHostPort(addr)

	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, "http://"+redirect+"/a/b?q=1&r=%2F", strings.NewReader("body"))
		req.Host = "www.example.test:8081"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://www.example.test:" + port + "/a/b?q=1&r=%2F"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("%s: %d to %q, want 308 to %q", method, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	// A client that sends nothing is closed at timeouts.header.
	idle, err := net.Dial("tcp", redirect)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(idle); err != nil {
		t.Errorf("silent client on the redirect listener: %v after %v, want it closed", err, time.Since(start))
	}
}

// TestTLSOCSPFileStapledAndReloaded: tls.certificates[].ocsp is stapled,
// read again on a reload, and a response that does not fit the
// certificate refuses the reload, naming the file, keeping the one in
// force; tls.curves is applied and a reload that changes it says so.
func TestTLSOCSPFileStapledAndReloaded(t *testing.T) {
	dir := t.TempDir()
	ca, err := testca.New("Test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssuePEM("ocsp.test", false)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, resp := filepath.Join(dir, "site.pem"), filepath.Join(dir, "site.key"), filepath.Join(dir, "site.ocsp")
	writeOCSP := func(r testca.Response) []byte {
		t.Helper()
		der, err := ca.OCSP(pair.Leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(resp, der, 0o600); err != nil {
			t.Fatal(err)
		}
		return der
	}
	for path, data := range map[string][]byte{cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	first := writeOCSP(testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)})
	tail := fmt.Sprintf("certificates = [{cert = %q, key = %q, ocsp = %q}]\ncurves = [\"X25519\"]", cert, key, resp)
	cfg := tlsConfig(t, startStatusBackend(t, "app-01"), tail)
	next := cfg
	in, addr := startInstance(t, cfg, &next)
	handshake := func() tls.ConnectionState {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState()
	}
	if st := handshake(); !bytes.Equal(st.OCSPResponse, first) || st.CurveID != tls.X25519 {
		t.Errorf("stapled %d bytes (want the %d of the file) over %v (want X25519)", len(st.OCSPResponse), len(first), st.CurveID)
	}

	// A renewed response is taken up by a reload.
	renewed := writeOCSP(testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(2 * time.Hour)})
	res, err := in.Reload(context.Background())
	if err != nil || !strings.Contains(res.Summary, "~tls(certificates)") {
		t.Fatalf("reload with a renewed response: %v, summary %q", err, res.Summary)
	}
	if st := handshake(); !bytes.Equal(st.OCSPResponse, renewed) {
		t.Error("the renewed response is not stapled after the reload")
	}

	// An expired response refuses the reload, naming the file.
	writeOCSP(testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(-time.Hour)})
	_, err = in.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "tls.certificates[0].ocsp: "+resp+" for "+cert+": OCSP response: expired at ") ||
		!strings.Contains(err.Error(), "the certificates in force are kept") {
		t.Errorf("reload with an expired response: %v", err)
	}
	if st := handshake(); !bytes.Equal(st.OCSPResponse, renewed) {
		t.Error("a refused reload changed the stapled response")
	}

	// tls.curves changes with a reload.
	writeOCSP(testca.Response{Status: ocsp.Good, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(2 * time.Hour)})
	next = tlsConfig(t, cfg.Backends[0].Address, strings.Replace(tail, `["X25519"]`, `["P-256"]`, 1))
	res, err = in.Reload(context.Background())
	if err != nil || !strings.Contains(res.Summary, "curves") {
		t.Fatalf("reload with other curves: %v, summary %q", err, res.Summary)
	}
	if st := handshake(); st.CurveID != tls.CurveP256 {
		t.Errorf("after the reload the key exchange is %v, want P-256", st.CurveID)
	}
}

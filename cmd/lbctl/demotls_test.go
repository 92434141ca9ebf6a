package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/selfsigned"
)

func TestDemoTLSListensOn8443ByDefault(t *testing.T) {
	cfg := config.Default()
	cleanup, err := demoTLS(&cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if cfg.Listen != "127.0.0.1:8443" || !cfg.TLS.On() || !cfg.Cookie.Secure {
		t.Errorf("demo TLS config: listen %q, tls %v, secure %v", cfg.Listen, cfg.TLS.On(), cfg.Cookie.Secure)
	}
}

// TestServeDemoTLS: `serve --demo --mode l7 --tls` answers over https with
// its self-signed certificate, with a Secure cookie, and curl -k takes it
// too, over HTTP/2 and HTTP/1.1, when curl is installed.
func TestServeDemoTLS(t *testing.T) {
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- runServe(ctx, serveOptions{demo: true, tls: true, mode: "l7", listen: listen, grace: time.Second, logLevel: "warn"})
	}()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("runServe after cancel = %v, want nil", err)
		}
	}()
	var resp *http.Response
	eventually.True(t, "the TLS demo answers", func() bool {
		c, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		resp, err = http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil
	})
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), "; Secure") {
		t.Errorf("demo over TLS: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	// curl, when installed, gets the answer over HTTP/2 (it offers h2
	// first) and over HTTP/1.1 when told to.
	if _, err := exec.LookPath("curl"); err == nil {
		for proto, want := range map[string]string{"--http2": "2", "--http1.1": "1.1"} {
			out, err := exec.Command("curl", "-sk", proto, "--max-time", "20", "-w", "\n%{http_version}", "https://"+listen+"/").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "app-0") || !strings.HasSuffix(string(out), "\n"+want) {
				t.Errorf("curl -k %s https://%s/: %q, %v; want an answer over HTTP/%s", proto, listen, out, err, want)
			}
		}
	}
}

func TestServeTLSNeedsDemo(t *testing.T) {
	err := runServe(context.Background(), serveOptions{tls: true, config: writeConfig(t, ""), logLevel: "warn"})
	if err == nil || !strings.Contains(err.Error(), "--tls goes with --demo") {
		t.Errorf("serve --tls without --demo: %v", err)
	}
}

// TestServeTLSReloadsCertificatesOnSIGHUP: a real lbctl serve takes up a
// renewed certificate on SIGHUP, and a broken one is refused with the
// file named in the log while the one in force stays.
func TestServeTLSReloadsCertificatesOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "site.pem"), filepath.Join(dir, "site.key")
	writePair := func(name string) {
		t.Helper()
		c, k, err := selfsigned.PEM(name)
		if err != nil {
			t.Fatal(err)
		}
		if os.WriteFile(cert, c, 0o600) != nil || os.WriteFile(key, k, 0o600) != nil {
			t.Fatal("writing the certificate")
		}
	}
	writePair("old.test")
	listen := freeAddr(t)
	path := writeConfig(t, fmt.Sprintf(`mode = "l7"
listen = %q
[health]
check = "none"
[tls]
certificates = [{ cert = %q, key = %q }]
[[backend]]
id = "app-01"
address = "127.0.0.1:1"
`, listen, cert, key))
	cmd, log := startServe(t, "-c", path)
	name := func() string {
		c, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	if got := name(); got != "old.test" {
		t.Fatalf("certificate %q, want old.test", got)
	}
	writePair("new.test")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, log, "~tls(certificates)")
	if got := name(); got != "new.test" {
		t.Errorf("after SIGHUP the certificate is %q, want new.test", got)
	}
	os.WriteFile(cert, []byte("broken"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, log, "tls.certificates[0]: "+cert)
	if got := name(); got != "new.test" {
		t.Errorf("after a broken certificate the handshake shows %q, want new.test (kept)", got)
	}
}

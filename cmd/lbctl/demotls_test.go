package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
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

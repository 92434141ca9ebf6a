package instance

import (
	"bufio"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
)

// Behind listen_proxy, in both modes: a connection from a peer not listed
// and one with a bad header are refused and counted as such (and as
// connections, which open and close), while a connection with a valid
// header is served and logged with the client the header names.
func TestProxyRefusalsCounted(t *testing.T) {
	for _, mode := range []string{"l4", "l7"} {
		t.Run(mode, func(t *testing.T) {
			var cfg *config.Config
			if mode == "l4" {
				cfg = testConfig(t, startEchoBackend(t).ln.Addr().String())
			} else {
				cfg = l7TestConfig(t, startStatusBackend(t, "app-01"))
			}
			cfg.ListenProxy = []string{"127.0.0.70"}
			logPath := filepath.Join(t.TempDir(), "access.log")
			cfg.Log.Access = logPath
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			in, addr := startInstance(t, cfg, &cfg)
			base := serveAdmin(t, in)
			before := scrape(t, base)

			refused := func(src, send string) {
				t.Helper()
				c := dialFrom(t, src, addr)
				defer c.Close()
				io.WriteString(c, send)
				if n, err := c.Read(make([]byte, 64)); err == nil {
					t.Errorf("from %s sending %q: read %d bytes, want the connection closed", src, send, n)
				}
			}
			refused("127.0.0.71", "PROXY TCP4 192.0.2.8 127.0.0.1 5555 80\r\n")
			refused("127.0.0.70", "GARBAGE AND MORE\r\n\r\n")

			c := dialFrom(t, "127.0.0.70", addr)
			io.WriteString(c, "PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n")
			if mode == "l4" {
				echoOnce(t, c)
			} else {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("request behind a valid header: %v, %v", resp, err)
				}
				resp.Body.Close()
			}
			c.Close()
			eventually.True(t, "no connection left open", func() bool { return in.Stats().Front.ActiveConnections == 0 })

			after := scrape(t, base)
			if got := after.value(t, "lbctl_front_proxy_refused_total") - before.value(t, "lbctl_front_proxy_refused_total"); got != 2 {
				t.Errorf("PROXY refusals moved by %v, want 2", got)
			}
			if got := after.value(t, "lbctl_front_connections_total") - before.value(t, "lbctl_front_connections_total"); got != 3 {
				t.Errorf("front connections moved by %v, want 3", got)
			}
			if got := in.Stats().Front.ProxyRefused; got != 2 {
				t.Errorf("Stats: %d PROXY refusals, want 2", got)
			}
			want := 1 // L7 logs requests
			if mode == "l4" {
				want = 3 // L4 logs connections, refused ones included
			}
			served := 0
			for _, l := range readAccessLog(t, logPath, want) {
				if l.Backend != nil && *l.Backend != "" {
					served++
					if l.Client != "192.0.2.9:5555" {
						t.Errorf("access log client %q, want the header's 192.0.2.9:5555", l.Client)
					}
				}
			}
			if served != 1 {
				t.Errorf("%d access log lines with a backend, want 1", served)
			}
		})
	}
}

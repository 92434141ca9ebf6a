package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lbctl/lbctl/internal/eventually"
)

// A real lbctl serve answers /metrics on its admin listener with the
// token, counts the connections it served there, and writes one access
// log line per connection to the configured file, all of them by the time
// it exits.
func TestServeMetricsAndAccessLog(t *testing.T) {
	listen, adminAddr := freeAddr(t), freeAddr(t)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	cfg := fmt.Sprintf(liveConfig, listen, "60s", adminAddr) + "token = \"scrape-me\"\n[log]\naccess = " + fmt.Sprintf("%q", accessLog) + "\n" +
		liveBackends("app-01", echoBackend(t, "app-01"))
	cmd, log := startServe(t, "--config", writeConfig(t, cfg), "--grace", "2s")

	const clients = 3
	for i := range clients {
		if got := greeting(t, listen, fmt.Sprintf("127.0.44.%d", i+1)); got != "app-01" {
			t.Fatalf("greeting %q", got)
		}
	}
	scrape := func() map[string]float64 {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer scrape-me")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /metrics: %s", resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for name, f := range fams {
			for _, m := range f.GetMetric() {
				key := name
				for _, l := range m.GetLabel() {
					if l.GetName() != "goversion" && l.GetName() != "revision" && l.GetName() != "version" {
						key += "," + l.GetName() + "=" + l.GetValue()
					}
				}
				out[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return out
	}
	var m map[string]float64
	// A connection is counted as ended, and its line written, just after
	// the client sees its end.
	eventually.True(t, "the three connections counted as ended and logged", func() bool {
		m = scrape()
		return m["lbctl_front_connections_total"] == clients && m["lbctl_front_active_connections"] == 0 &&
			m["lbctl_access_log_lines_total"] == clients
	})
	for key, want := range map[string]float64{
		"lbctl_backend_connections_total,backend=app-01": clients,
		"lbctl_build_info,mode=l4":                       1,
		"lbctl_access_log_lines_total":                   clients,
		"lbctl_access_log_dropped_total":                 0,
		"lbctl_affinity_entries":                         clients,
	} {
		if m[key] != want {
			t.Errorf("%s = %v, want %v", key, m[key], want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lbctl exited with %v\n%s", err, log.String())
	}
	f, err := os.Open(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); n++ {
		if !strings.Contains(s.Text(), `"backend":"app-01"`) || !strings.Contains(s.Text(), `"client":"127.0.44.`) {
			t.Errorf("access log line %q", s.Text())
		}
	}
	if n != clients {
		t.Errorf("access log has %d lines, want %d", n, clients)
	}
}

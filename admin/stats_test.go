package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// GET /api/stats answers the fields of the stats contract, with the
// instance's figures.
func TestStats(t *testing.T) {
	f := startAPI(t, "s3cret")
	a := f.call(t, "GET", "/api/stats", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatal(err)
	}
	keys := func(m any, want ...string) {
		t.Helper()
		obj, ok := m.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object", m)
		}
		for _, k := range want {
			if _, ok := obj[k]; !ok {
				t.Errorf("no %q in %v", k, obj)
			}
		}
	}
	keys(v, "time", "version", "mode", "listen", "started", "front", "backends", "affinity", "repins", "reload",
		"state_save_failures", "access_log")
	keys(v["front"], "active_connections", "connections_total", "requests_total")
	keys(v["affinity"], "entries", "capacity", "hits", "misses", "repins", "evictions", "expirations")
	keys(v["repins"], "backend_down", "maint", "drain_deadline", "removed", "failed")
	keys(v["reload"], "reloads_ok", "reloads_failed", "last_ok", "last_summary")
	keys(v["access_log"], "enabled", "written", "dropped")
	bs := v["backends"].([]any)
	if len(bs) != 3 {
		t.Fatalf("%d backends, want 3", len(bs))
	}
	keys(bs[0], "id", "address", "weight", "health", "state", "active", "pinned", "served",
		"connections_total", "requests_total", "responses", "connect_failures_total")
	keys(bs[0].(map[string]any)["responses"], "1xx", "2xx", "3xx", "4xx", "5xx")
	if _, err := time.Parse(time.RFC3339Nano, v["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if s := v["started"].(string); !strings.HasSuffix(s, "Z") && !strings.Contains(s, "+") || strings.Contains(s, ".") {
		t.Errorf("started %q is not RFC 3339 to the second", s)
	}
	if v["mode"] != "l4" || bs[0].(map[string]any)["id"] != "app-01" || bs[0].(map[string]any)["connections_total"] != 40.0 {
		t.Errorf("figures differ from the instance's: %s", a.body)
	}

	if a := f.call(t, "POST", "/api/stats", ""); a.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/stats: %d, want 405", a.status)
	}
	if a := f.callAs(t, "GET", "/api/stats", "", func(*http.Request) {}); a.status != http.StatusUnauthorized {
		t.Errorf("GET /api/stats without the token: %d, want 401", a.status)
	}
}

// GET /metrics is behind the same token as the API and parses as the
// Prometheus text format.
func TestMetricsEndpoint(t *testing.T) {
	f := startAPI(t, "s3cret")
	get := func(auth string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+f.addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}
	resp = get("Bearer s3cret")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("with the token: %d, %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var up []string
	for _, m := range fams["lbctl_backend_up"].GetMetric() {
		up = append(up, m.GetLabel()[0].GetValue()+"="+model.SampleValue(m.GetGauge().GetValue()).String())
	}
	slices.Sort(up)
	if got := strings.Join(up, " "); got != "app-01=1 app-02=1 app-03=0" {
		t.Errorf("lbctl_backend_up: %s", got)
	}
}

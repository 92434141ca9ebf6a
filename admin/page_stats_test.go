package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/backend"
)

// statsJSON is an answer of GET /api/stats as the contract between the
// page and the metrics code gives it.
const statsJSON = `{
  "time": "2026-11-30T14:00:05Z", "version": "v1.2.3", "mode": "l4", "listen": "127.0.0.1:8080",
  "started": "2026-11-30T13:00:00Z",
  "front": {"active_connections": 17, "connections_total": 123456, "requests_total": 0},
  "backends": [
    {"id": "app-01", "address": "10.0.0.1:80", "weight": 1, "health": "up", "state": "ready", "active": 12,
     "pinned": 40, "served": 100000, "connections_total": 100000, "requests_total": 0,
     "responses": {"1xx":0,"2xx":0,"3xx":0,"4xx":0,"5xx":0}, "connect_failures_total": 3},
    {"id": "app-02", "address": "10.0.0.2:80", "weight": 2, "health": "down", "state": "maint", "active": 0,
     "pinned": 0, "served": 23456, "connections_total": 23456, "requests_total": 0,
     "responses": {"1xx":0,"2xx":0,"3xx":0,"4xx":0,"5xx":0}, "connect_failures_total": 9}
  ],
  "affinity": {"entries": 40, "capacity": 1000000, "hits": 5000, "misses": 40, "repins": 7, "evictions": 0, "expirations": 2},
  "repins": {"backend_down": 7},
  "reload": {"reloads_ok": 2, "reloads_failed": 1, "last_time": "2026-11-30T13:30:00Z", "last_ok": false, "last_summary": "config not reloaded"}
}`

// natOnly is an Instance that answers NAT (and Backends, which the page
// must not use when /api/stats answers); the page reads the rest from
// the stats JSON.
type natOnly struct{ Instance }

func (natOnly) NAT(int) NATView { return NATView{Mode: "l4", IPAffinitySkew: 1} }
func (natOnly) Backends() []BackendStatus {
	return []BackendStatus{{ID: "wrong", Health: "up", State: backend.Ready.String()}}
}

// TestPageRendersStats renders the page from a full /api/stats answer: the
// front door, every backend with its errors, the table's figures, re-pins
// and the last reload.
func TestPageRendersStats(t *testing.T) {
	s := &Server{Instance: natOnly{}}
	api := http.NewServeMux()
	api.HandleFunc("/api/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/stats" || r.Method != http.MethodGet {
			t.Errorf("page asked for %s %s", r.Method, r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, statsJSON)
	})
	rec := httptest.NewRecorder()
	s.page(api)(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"v1.2.3", "127.0.0.1:8080", `id="front-active">17<`, "123\u2009456 connections",
		`data-id="app-01"`, `data-id="app-02"`, `<span class="pill maint">maint</span>`, ">9<", // app-02's errors
		"1 / 2", "table 40 / 1\u2009000\u2009000", "backend_down 7", "reload failed", "2 ok · 1 failed", `data-stats="yes"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "wrong") {
		t.Error("page took the backends from Backends although /api/stats answered")
	}
}

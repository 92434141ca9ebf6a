package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// sampleReport is a report of both modes with a failure, built by hand.
func sampleReport() *Report {
	v := 3.5
	run := func(mode string, loads ...int) RunResult {
		r := RunResult{Mode: mode, TotalRequests: 100, FailedRequests: 2, FailoverMS: &v,
			Failovers: []Failover{{Backend: "app-02", AtMS: 2000, RepinnedUsers: 7, FailoverMS: &v}},
			Timeline:  Timeline{BucketMS: 100}, DurationMS: 4000}
		for i, n := range loads {
			id := backendID(i)
			r.ServedRequests += n
			r.Backends = append(r.Backends, BackendResult{ID: id, Users: n / 5, Requests: n, TopGatewayRequests: []int{n / 2, n / 4}})
			s := Series{ID: id}
			for k := range 40 {
				if id != "app-02" || k < 20 {
					s.Requests = append(s.Requests, n/40+k%3)
				} else {
					s.Requests = append(s.Requests, 0)
				}
			}
			r.Timeline.Backends = append(r.Timeline.Backends, s)
		}
		loadsF := make([]float64, len(loads))
		for i, n := range loads {
			loadsF[i] = float64(n)
			r.Backends[i].Share = float64(n) / float64(r.ServedRequests)
		}
		r.MaxOverMean, r.CoV, r.Jain = MaxOverMean(loadsF), CoV(loadsF), Jain(loadsF)
		r.Finding = mode + ": app-01 carries the most"
		return r
	}
	return &Report{
		Scenario: Scenario{Users: 50, Gateways: 5, Skew: "zipf", ZipfS: 1.1, Seed: 1, Backends: 3, Requests: 2,
			TotalRequests: 100, DurationMS: 4000, Policy: "roundrobin", Health: "http /healthz every 200ms (rise 2, fall 2)",
			Failures:    []EventReport{{Backend: "app-02", AtMS: 2000}},
			Recoveries:  []EventReport{{Backend: "app-02", AtMS: 3000}},
			TopGateways: []GatewayShare{{Addr: "127.1.0.1", Users: 20, Share: 0.4}, {Addr: "127.1.0.2", Users: 10, Share: 0.2}}},
		Runs: []RunResult{run("l4", 60, 10, 28), run("l7", 33, 32, 33)},
	}
}

func TestWriteTextShowsModesSideBySide(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"50 users behind 5 gateways (zipf s=1.1, seed 1), 3 backends, 2 requests per user, 25 req/s over 4s",
		"gateway 127.1.0.1 holds 40.0% of users",
		"fail app-02 at 2s, recover at 3s",
		"l4 (source IP)", "l7 (cookie)",
		"app-01", "60", "61.2%",
		"max_over_mean", "cov", "jain", "broken_sessions", "repinned_users",
		"failed_requests", "2/100", "failover_ms", "3.5", "latency_p50_ms", "latency_p99_ms", "generator_rps",
		"l4: app-01 carries the most", "l7: app-01 carries the most",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONHasTheIssueKeys(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenario map[string]any   `json:"scenario"`
		Runs     []map[string]any `json:"runs"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"users", "gateways", "skew", "zipf_s", "seed", "backends", "requests", "failures"} {
		if _, ok := doc.Scenario[k]; !ok {
			t.Errorf("scenario lacks %q", k)
		}
	}
	if len(doc.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(doc.Runs))
	}
	for _, run := range doc.Runs {
		for _, k := range []string{"mode", "backends", "max_over_mean", "cov", "jain", "broken_sessions",
			"repinned_users", "failed_requests", "failover_ms", "latency_p50_ms", "latency_p99_ms", "generator_rps", "duration_ms"} {
			if _, ok := run[k]; !ok {
				t.Errorf("run lacks %q", k)
			}
		}
		backends, _ := run["backends"].([]any)
		if len(backends) != 3 {
			t.Fatalf("run has %d backends, want 3", len(backends))
		}
		for _, b := range backends {
			b := b.(map[string]any)
			for _, k := range []string{"id", "users", "requests", "share"} {
				if _, ok := b[k]; !ok {
					t.Errorf("backend lacks %q", k)
				}
			}
		}
	}
}

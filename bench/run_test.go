package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/leakcheck"
)

// small is a scenario that runs in about a second per mode, even under the
// race detector.
func small() Options {
	o := DefaultOptions()
	o.Backends = 3
	o.Users = 120
	o.Gateways = 12
	o.Requests = 4
	o.Concurrency = 16
	o.Rate = 0
	return o
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Runs) != len(o.Modes) {
		t.Fatalf("%d runs, want %d", len(rep.Runs), len(o.Modes))
	}
	return rep
}

// checkAccounting asserts that every request is accounted for: served by a
// backend that recorded it, or failed.
func checkAccounting(t *testing.T, o Options, res *RunResult) {
	t.Helper()
	total := o.Users * o.Requests
	perBackend := 0
	for _, b := range res.Backends {
		perBackend += b.Requests
	}
	if res.TotalRequests != total || res.ServedRequests+res.FailedRequests != total || perBackend != res.ServedRequests {
		t.Errorf("%s: total %d, served %d + failed %d, sum over backends %d; want %d = served + failed, served = sum",
			res.Mode, res.TotalRequests, res.ServedRequests, res.FailedRequests, perBackend, total)
	}
	if res.Unrecorded != 0 {
		t.Errorf("%s: %d served requests that no backend recorded", res.Mode, res.Unrecorded)
	}
	if res.BackendRecords < res.ServedRequests {
		t.Errorf("%s: backends recorded %d requests, fewer than the %d served", res.Mode, res.BackendRecords, res.ServedRequests)
	}
}

// TestEveryRequestIsAccountedFor runs both modes flat out with 16 requests
// in flight: every request must be served and recorded by the backend that
// answered, and cookies keep every session in place.
func TestEveryRequestIsAccountedFor(t *testing.T) {
	o := small()
	rep := run(t, o)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		checkAccounting(t, o, res)
		if res.FailedRequests != 0 || res.BackendRecords != res.ServedRequests {
			t.Errorf("%s: %d failed, %d recorded of %d served; want none failed, all recorded once (%v)",
				res.Mode, res.FailedRequests, res.BackendRecords, res.ServedRequests, res.FailureReasons)
		}
		for _, b := range res.Backends {
			if b.Recorded != b.Requests {
				t.Errorf("%s: %s recorded %d requests, served %d", res.Mode, b.ID, b.Recorded, b.Requests)
			}
		}
		if res.RepinnedUsers != 0 || res.FailoverMS != nil {
			t.Errorf("%s: %d repinned users, failover %v without a failure", res.Mode, res.RepinnedUsers, res.FailoverMS)
		}
	}
	if l7 := rep.Result(L7); l7.BrokenSessions != 0 || l7.MaxOverMean > 1.1 {
		t.Errorf("l7: %d broken sessions, max_over_mean %.2f; want 0 and even", l7.BrokenSessions, l7.MaxOverMean)
	}
	// Users of one gateway arrive together under L4; they must still
	// share one pin.
	if l4 := rep.Result(L4); l4.BrokenSessions != 0 {
		t.Errorf("l4: %d broken sessions with 16 requests in flight, want 0", l4.BrokenSessions)
	}
	if l4 := rep.Result(L4); l4.Affinity == nil || l4.Affinity.Size > o.Gateways {
		t.Errorf("l4: affinity %+v, want at most one pin per gateway", l4.Affinity)
	}
}

// TestNoFailureBreaksNoSession paces a zipf population one request at a
// time: without a failure no user may change backend in either mode, and
// IP affinity keeps each gateway on one backend.
func TestNoFailureBreaksNoSession(t *testing.T) {
	o := small()
	o.Concurrency = 4
	o.Duration = time.Second
	rep := run(t, o)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		checkAccounting(t, o, res)
		if res.BrokenSessions != 0 || res.RepinnedUsers != 0 || res.FailedRequests != 0 {
			t.Errorf("%s: broken %d, repinned %d, failed %d; want 0, 0, 0",
				res.Mode, res.BrokenSessions, res.RepinnedUsers, res.FailedRequests)
		}
	}
	if l4 := rep.Result(L4); !strings.Contains(l4.Finding, "holds") {
		t.Errorf("l4 finding %q does not name the gateway that holds the top backend", l4.Finding)
	}
	if l7 := rep.Result(L7); !strings.Contains(l7.Finding, "end on 3 backends") {
		t.Errorf("l7 finding %q does not say the gateway's users are spread", l7.Finding)
	}
}

// failoverSeed returns a seed whose earliest user sits behind gateway 0, so
// that with round robin gateway 0, the biggest, is the first pinned, to
// app-01.
func failoverSeed(t *testing.T, o Options) uint64 {
	for seed := uint64(1); seed < 1000; seed++ {
		p, err := NewPopulation(o.Users, o.Gateways, o.Skew, o.ZipfS, seed)
		if err != nil {
			t.Fatal(err)
		}
		first := p.Users[0]
		for _, u := range p.Users {
			if u.Phase < first.Phase {
				first = u
			}
		}
		if first.Gateway == 0 {
			return seed
		}
	}
	t.Fatal("no seed puts the earliest user behind gateway 0")
	return 0
}

// TestFailoverRepinsOnceAndStays kills app-01, which the biggest gateway is
// pinned to under L4, and brings it back: its users must move once, to a
// backend they then keep, with no session broken and app-01 left idle after
// it returns (nobody flaps back).
func TestFailoverRepinsOnceAndStays(t *testing.T) {
	o := small()
	o.Users, o.Gateways = 90, 3
	o.ZipfS = 2 // gateway 0 holds 66 of the 90 users
	o.Requests = 6
	o.Concurrency = 4
	o.Duration = 2 * time.Second
	o.Failures = []Event{{Backend: "app-01", At: 600 * time.Millisecond}}
	o.Recoveries = []Event{{Backend: "app-01", At: 1200 * time.Millisecond}}
	o.Seed = failoverSeed(t, o)
	rep := run(t, o)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		checkAccounting(t, o, res)
		if len(res.Warnings) > 0 {
			t.Errorf("%s: warnings %q", res.Mode, res.Warnings)
		}
		// Every move is a repin off the killed backend; none rebalanced.
		if res.Broken.Rebalanced != 0 || res.BrokenSessions != res.RepinnedUsers || res.Broken.BackendFailed != res.RepinnedUsers {
			t.Errorf("%s: broken %d %+v, repinned %d; want every broken session a repin, none rebalanced",
				res.Mode, res.BrokenSessions, res.Broken, res.RepinnedUsers)
		}
		if res.RepinnedUsers == 0 || res.MaxRepinsPerUser != 1 || res.Repins != res.RepinnedUsers {
			t.Errorf("%s: %d users repinned by %d moves, at most %d per user; want some, each moved once",
				res.Mode, res.RepinnedUsers, res.Repins, res.MaxRepinsPerUser)
		}
		// Only the requests in flight to app-01 when it is killed may
		// fail: at most one per worker, each cut mid-answer.
		if res.FailedRequests > o.Concurrency || res.FailedRequests != res.FailureReasons["connection closed"] {
			t.Errorf("%s: %d failed requests (%v); want at most %d, each in flight at the kill (connection closed)",
				res.Mode, res.FailedRequests, res.FailureReasons, o.Concurrency)
		}
		if len(res.Failovers) != 1 || res.FailoverMS == nil || *res.FailoverMS <= 0 || *res.FailoverMS > 1000 {
			t.Errorf("%s: failovers %+v, failover_ms %v; want one, re-pinned within a second", res.Mode, res.Failovers, res.FailoverMS)
		}
		// After app-01 is back (and health has seen it up), nobody returns.
		tl := res.Timeline
		for k, n := range tl.Backends[0].Requests {
			if from := float64(k) * tl.BucketMS; from >= 1200 && n > 0 {
				t.Errorf("%s: app-01 served %d requests %vms into the run, after it came back", res.Mode, n, from)
			}
		}
	}
	l4 := rep.Result(L4)
	// Every one of gateway 0's users was on app-01 and had requests after
	// the kill.
	if l4.RepinnedUsers < 66 {
		t.Errorf("l4: %d users repinned, want all 66 of gateway 0 at least", l4.RepinnedUsers)
	}
	if !strings.Contains(l4.Finding, "gateway 127.1.0.1 holds") {
		t.Errorf("l4 finding %q: want gateway 127.1.0.1 on one backend after failover", l4.Finding)
	}
	if l7 := rep.Result(L7); l7.RepinnedUsers < 20 || l7.RepinnedUsers > 40 {
		t.Errorf("l7: %d users repinned, want about a third of 90", l7.RepinnedUsers)
	}
}

// TestKeepAliveAndConfig runs L7 with kept-alive connections and a config
// file that has no backends, leastconn and tcp health checks.
func TestKeepAliveAndConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.toml")
	os.WriteFile(path, []byte("[balance]\npolicy = \"leastconn\"\n[health]\ncheck = \"tcp\"\ninterval = \"100ms\"\n"), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	o := small()
	o.Modes = []Mode{L7}
	o.KeepAlive = true
	o.Config = cfg
	rep := run(t, o)
	if rep.Scenario.Policy != "leastconn" || !strings.HasPrefix(rep.Scenario.Health, "tcp every 100ms") || !rep.Scenario.KeepAlive {
		t.Errorf("scenario %+v, want leastconn, tcp health every 100ms, keepalive", rep.Scenario)
	}
	res := &rep.Runs[0]
	checkAccounting(t, o, res)
	if res.BrokenSessions != 0 || res.FailedRequests != 0 {
		t.Errorf("broken %d, failed %d; want 0, 0", res.BrokenSessions, res.FailedRequests)
	}
}

func TestLoadConfigReportsProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[balance]\npolicy = \"fastest\"\n"), 0o600)
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), `bad.toml:2: balance.policy: "fastest"`) {
		t.Errorf("LoadConfig = %v, want the bad policy with its line", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("LoadConfig of a missing file succeeded")
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"backends", func(o *Options) { o.Backends = 0 }, "--backends: 0 is out of range 1..99"},
		{"users", func(o *Options) { o.Users = 0 }, "--users: 0 must be at least 1"},
		{"gateways", func(o *Options) { o.Gateways = MaxGateways + 1 }, "--gateways"},
		{"skew", func(o *Options) { o.Skew = "foo" }, `--skew: "foo" is not a skew (want zipf or uniform)`},
		{"zipf-s", func(o *Options) { o.ZipfS = 0 }, "--zipf-s: 0 is out of range"},
		{"requests", func(o *Options) { o.Requests = 0 }, "--requests: 0 must be at least 1"},
		{"too many", func(o *Options) { o.Users, o.Requests = 1_000_000, 10 }, "more than 5000000 requests"},
		{"mode", func(o *Options) { o.Modes = []Mode{"l5"} }, `--mode: "l5" is not l4, l7 or both`},
		{"concurrency", func(o *Options) { o.Concurrency = 0 }, "--concurrency: 0 must be at least 1"},
		{"rate", func(o *Options) { o.Rate = -1 }, "--rate: -1"},
		{"unknown backend", func(o *Options) { o.Failures = []Event{{"nobody", time.Second}} },
			`--fail nobody@1s: no backend "nobody" (the lab runs app-01..app-04)`},
		{"after the run", func(o *Options) { o.Failures = []Event{{"app-02", time.Minute}} },
			"--fail app-02@1m0s: each run lasts 10s (20000 requests at --rate 2000)"},
		{"recover first", func(o *Options) { o.Recoveries = []Event{{"app-02", time.Second}} },
			"--recover app-02@1s: app-02 has not failed by then"},
		{"fail twice", func(o *Options) {
			o.Failures = []Event{{"app-02", time.Second}, {"app-02", 2 * time.Second}}
		}, "--fail app-02@2s: app-02 has already failed by then"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.edit(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	o := DefaultOptions()
	o.Failures = []Event{{"app-02", 2 * time.Second}}
	o.Recoveries = []Event{{"app-02", 5 * time.Second}}
	if err := o.Validate(); err != nil {
		t.Errorf("the default scenario with a failure and recovery: %v", err)
	}
}

func TestParseEventAndModes(t *testing.T) {
	e, err := ParseEvent("app-02@1.5s")
	if err != nil || e != (Event{"app-02", 1500 * time.Millisecond}) {
		t.Errorf("ParseEvent = %+v, %v", e, err)
	}
	for _, bad := range []string{"app-02", "@1s", "app-02@", "app-02@soon", "app-02@-1s"} {
		if _, err := ParseEvent(bad); err == nil {
			t.Errorf("ParseEvent(%q) succeeded", bad)
		}
	}
	for s, n := range map[string]int{"l4": 1, "l7": 1, "both": 2} {
		if m, err := ParseModes(s); err != nil || len(m) != n {
			t.Errorf("ParseModes(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseModes("l5"); err == nil {
		t.Error("ParseModes(l5) succeeded")
	}
}

// TestRunLeavesNothingRunning checks that every goroutine and descriptor
// Run starts (backends, front doors, prober, schedule, generator) is gone
// when it returns, and that an event after the end of a run is reported.
func TestRunLeavesNothingRunning(t *testing.T) {
	base := leakcheck.Take(t)
	o := small()
	o.Users = 40
	o.Duration = 300 * time.Millisecond
	o.KeepAlive = true
	o.Failures = []Event{{Backend: "app-02", At: 100 * time.Millisecond}}
	o.Recoveries = []Event{{Backend: "app-02", At: 290 * time.Millisecond}}
	rep := run(t, o)
	for i := range rep.Runs {
		checkAccounting(t, o, &rep.Runs[i])
	}
	base.Wait(t, 10*time.Second)
}

func TestEventAfterTheRunIsAWarning(t *testing.T) {
	o := small()
	o.Modes = []Mode{L7}
	o.Users = 20
	o.Rate = 0
	o.Failures = []Event{{Backend: "app-02", At: time.Hour}}
	rep := run(t, o)
	w := rep.Runs[0].Warnings
	if len(w) != 1 || !strings.Contains(w[0], "--fail app-02@1h0m0s did not happen: the run ended after") {
		t.Errorf("warnings %q, want the --fail that did not happen", w)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "warning: l7: --fail app-02@1h0m0s did not happen") {
		t.Errorf("text report lacks the warning:\n%s", b.String())
	}
}

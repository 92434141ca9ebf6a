package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchPrintsBothModesAndWritesFiles(t *testing.T) {
	dir := t.TempDir()
	report, picture := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.svg")
	cmd := lbctl(t, "bench", "--users", "60", "--gateways", "6", "--requests", "3", "--backends", "3",
		"--rate", "0", "--concurrency", "4", "--json", report, "--plot", picture)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"60 users behind 6 gateways", "l4 (source IP)", "l7 (cookie)", "app-03",
		"max_over_mean", "broken_sessions", "failed_requests", "0/180", "l4: app-0", "l7: app-0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr is not a terminal, yet bench wrote to it:\n%s", stderr.String())
	}

	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs []struct {
			Mode     string `json:"mode"`
			Backends []struct {
				ID       string `json:"id"`
				Users    *int   `json:"users"`
				Requests *int   `json:"requests"`
			} `json:"backends"`
			MaxOverMean    *float64 `json:"max_over_mean"`
			CoV            *float64 `json:"cov"`
			Jain           *float64 `json:"jain"`
			BrokenSessions *int     `json:"broken_sessions"`
			RepinnedUsers  *int     `json:"repinned_users"`
			FailedRequests *int     `json:"failed_requests"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("--json: %v", err)
	}
	if len(doc.Runs) != 2 || doc.Runs[0].Mode != "l4" || doc.Runs[1].Mode != "l7" {
		t.Fatalf("--json runs: %+v, want l4 then l7", doc.Runs)
	}
	for _, r := range doc.Runs {
		if r.MaxOverMean == nil || r.CoV == nil || r.Jain == nil || r.BrokenSessions == nil ||
			r.RepinnedUsers == nil || r.FailedRequests == nil || len(r.Backends) != 3 {
			t.Errorf("--json run %s lacks a key: %s", r.Mode, data)
		}
		sum := 0
		for _, b := range r.Backends {
			if b.ID == "" || b.Users == nil || b.Requests == nil {
				t.Fatalf("--json backend lacks id, users or requests: %s", data)
			}
			sum += *b.Requests
		}
		if sum+*r.FailedRequests != 180 {
			t.Errorf("%s: %d served + %d failed, want 180 requests", r.Mode, sum, *r.FailedRequests)
		}
	}
	if fi, err := os.Stat(picture); err != nil || fi.Size() < 5000 {
		t.Errorf("--plot: %v, %d bytes", err, fi.Size())
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--skew", "foo"}, `--skew: "foo" is not a skew (want zipf or uniform)`},
		{[]string{"--fail", "nobody@1s"}, `--fail nobody@1s: no backend "nobody" (the lab runs app-01..app-04)`},
		{[]string{"--fail", "app-02"}, `--fail: "app-02" is not ID@DURATION`},
		{[]string{"--fail", "app-02@1m"}, "--fail app-02@1m0s: each run lasts 10s"},
		{[]string{"--recover", "app-02@1s"}, "app-02 has not failed by then"},
		{[]string{"--mode", "l5"}, `--mode: "l5" is not l4, l7 or both`},
		{[]string{"--plot", "report.jpg"}, `--plot: "report.jpg": want a .svg or .png file name`},
		{[]string{"--users", "0", "--backends", "100"}, "--backends: 100 is out of range 1..99\n--users: 0 must be at least 1"},
		{[]string{"--config", "/nonexistent/lbctl.toml"}, "read config"},
		{[]string{"--log-level", "loud"}, "--log-level"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := lbctl(t, append([]string{"bench"}, tc.args...)...).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1", err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
		})
	}
}

// TestBenchEventFlags runs the lab's lifecycle flags as the README writes
// them (--reload@2s, not --reload@=2s) and checks that they reach the
// report: the events line and the causes of broken sessions. The restart
// (of lbctl processes, which may take a while on a loaded machine) comes
// late, so that the address changes before it are not put down to it.
func TestBenchEventFlags(t *testing.T) {
	cmd := lbctl(t, "bench", "--users", "60", "--gateways", "60", "--skew", "uniform", "--requests", "4", "--backends", "3",
		"--duration", "2s", "--concurrency", "4", "--mode", "l4", "--pool-size", "4", "--ip-churn", "1",
		"--add", "app-04@200ms", "--drain", "app-01@300ms", "--drain-for", "200ms", "--reload@400ms", "--restart@1500ms", "--instances", "2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"each gateway a pool of 4 addresses", "events: --add app-04@200ms --drain app-01@300ms --drain-for 200ms --reload@400ms --restart@1.5s",
		"front doors: 2 lbctl instances", "broken_sessions", "  address_changed", "l4: --add app-04 at ", "l4: --drain app-01 at "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchAtFlags(t *testing.T) {
	got := atFlags([]string{"--reload@4s", "--restart@=1s", "--restart@", "2s", "--upgrade@5s", "--", "--reload@3s"})
	want := []string{"--reload@=4s", "--restart@=1s", "--restart@", "2s", "--upgrade@=5s", "--", "--reload@3s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("atFlags = %q, want %q", got, want)
	}
}

// TestBenchTargetSetsModes: without --mode, --target's modes are run, and
// --target-backends sets the number of backends.
func TestBenchTargetSetsModes(t *testing.T) {
	d := defaultBenchFlags()
	d.target = "l7=127.0.0.1:18080"
	d.targetBackends = []string{"127.0.0.1:19001", "127.0.0.1:19002"}
	o, err := d.options()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Modes) != 1 || o.Modes[0] != "l7" || o.Backends != 2 {
		t.Errorf("modes %v, backends %d; want [l7], 2", o.Modes, o.Backends)
	}
}

// TestBenchTargetCommands: --target-restart-cmd reaches the options, and a
// mode named twice in --target is two instances of the target.
func TestBenchTargetCommands(t *testing.T) {
	d := defaultBenchFlags()
	d.target = "l4=127.0.0.41:80,l4=127.0.0.42:80"
	d.targetBackends = []string{"127.0.0.1:19001"}
	d.restartAt = []string{"1s"}
	d.targetRestartCmd = "systemctl restart haproxy"
	o, err := d.options()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Targets["l4"]) != 2 || o.TargetRestartCmd != d.targetRestartCmd || len(o.Restarts) != 1 {
		t.Errorf("targets %v, restart command %q, restarts %v", o.Targets, o.TargetRestartCmd, o.Restarts)
	}
	d.targetRestartCmd = ""
	if _, err := d.options(); err == nil || !strings.Contains(err.Error(), "--target-restart-cmd") {
		t.Errorf("--restart@ with a target and no command: %v", err)
	}
}

// TestBenchScenarios runs two scenario files in one bench: each report is
// headed by the scenario's name, and each gets a JSON file of its own. A
// flag that belongs in the file is refused, and a bad file is reported by
// line and key.
func TestBenchScenarios(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.toml", "name = \"churn\"\n[population]\nusers = 40\ngateways = 4\npool_size = 4\nip_churn = 1\n[run]\nbackends = 2\nrequests = 3\nrate = 0\nconcurrency = 4\n")
	b := write("b.toml", "name = \"plain\"\n[population]\nusers = 30\ngateways = 3\n[run]\nbackends = 2\nrequests = 2\nrate = 0\nmode = \"l7\"\n")
	report := filepath.Join(dir, "r.json")
	cmd := lbctl(t, "bench", "--scenario", a, "--scenario", b, "--json", report)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"== churn (" + a + ")", "== plain (" + b + ")", "each gateway a pool of 4 addresses", "40 users behind 4 gateways", "30 users behind 3 gateways"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{"r-a.json", "r-b.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report %s: %v", f, err)
		}
	}

	bad := write("bad.toml", "[run]\nbackends = 2\nrequest = 3\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--scenario", a, "--users", "5"}, "--users: set it in the scenario file"},
		{[]string{"bench", "--scenario", bad}, bad + ":3: run.request: unknown key"},
	} {
		out, err := lbctl(t, tc.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("lbctl %q: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}

// TestBenchUpgradeAndRestartRunProcesses runs the lab with --upgrade@ and
// --restart@ as the README writes them: lbctl runs as child processes of
// the binary, upgraded by SIGUSR2 and restarted with its state file, and
// no request fails at the upgrade nor any session breaks at either.
func TestBenchUpgradeAndRestartRunProcesses(t *testing.T) {
	cmd := lbctl(t, "bench", "--users", "60", "--gateways", "60", "--skew", "uniform", "--requests", "6", "--backends", "3",
		"--duration", "3s", "--concurrency", "4", "--upgrade@600ms", "--restart@1500ms", "--state-file", "--json", filepath.Join(t.TempDir(), "r.json"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"events: --restart@1.5s --upgrade@600ms (lbctl as child processes)", "broken_sessions                 0            0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchHelpRunsNothing: --help prints the help, with the lifecycle
// flags, and runs no scenario.
func TestBenchHelpRunsNothing(t *testing.T) {
	out, err := lbctl(t, "bench", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("bench --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--upgrade@", "--cluster", "--restart@"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "generator_rps") {
		t.Errorf("bench --help ran a scenario:\n%s", out)
	}
}

//go:build unix

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lbctlBin is the lbctl binary the process tests run, built once per test
// binary into a folder that TestMain removes.
var lbctlBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain builds lbctl before the tests start, so that the build does
// not compete with the paced runs of the tests for the machine.
func TestMain(m *testing.M) {
	buildLbctl()
	code := m.Run()
	if lbctlBin.dir != "" {
		os.RemoveAll(lbctlBin.dir)
	}
	os.Exit(code)
}

// lbctlBinary returns the path of the lbctl binary TestMain built.
func lbctlBinary(t *testing.T) string {
	t.Helper()
	buildLbctl()
	if lbctlBin.err != nil {
		t.Fatal(lbctlBin.err)
	}
	return lbctlBin.path
}

// buildLbctl builds cmd/lbctl, once.
func buildLbctl() {
	lbctlBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "lbctl-bench-bin-")
		if err != nil {
			lbctlBin.err = err
			return
		}
		lbctlBin.dir = dir
		lbctlBin.path = filepath.Join(dir, "lbctl")
		if out, err := exec.Command("go", "build", "-o", lbctlBin.path, "../cmd/lbctl").CombinedOutput(); err != nil {
			lbctlBin.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
}

// TestLbctlProcesses runs the tests of lbctl as child processes while
// the lab's in-process tests wait: a process test starts lbctl processes
// and a build, and the timing of the paced in-process runs would suffer
// if they shared the machine with them. The one that looks for processes
// left over runs first and alone; the others in parallel.
func TestLbctlProcesses(t *testing.T) {
	t.Run("events_leave_nothing_running", testProcessEventsLeaveNothingRunning)
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"restart_keeps_pins_only_with_state_file", testProcessRestartKeepsPinsOnlyWithStateFile},
		{"upgrade_breaks_nothing", testProcessUpgradeBreaksNothing},
		{"cluster_keeps_pins_across_instances", testClusterKeepsPinsAcrossInstances},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.f(t)
		})
	}
}

// restartRun is a paced scenario over 3s with lbctl as a child process:
// 120 users, each behind a gateway of its own (one client key each), 6
// requests each, request k at (k+phase)/6 of the run, so that every user
// sends its first request in the first half second and its last after
// 2.5s: every user has requests on both sides of an event at 600ms, with
// 1.9s for the process to come back even on a loaded machine.
func restartRun(t *testing.T) Options {
	o := paced(3*time.Second, 6)
	o.Binary = lbctlBinary(t)
	return o
}

// testProcessRestartKeepsPinsOnlyWithStateFile sends SIGTERM to the lbctl
// process 600ms into the run and starts it again. Under
// "random2" over 3 backends (round robin would pin the gateways again in
// the order they come back, which is the order they first came in: the
// share that moves then hangs on where the turn stands at the restart),
// without a state file the new process pins each gateway afresh, so a
// user stays where it was with a chance of 1/3: 2/3 of the 120 users,
// 80, break, all for cause restarted (the bounds are 80 +- 25, over four
// binomial standard deviations of 5.2). With the state file the process saves its pins at
// SIGTERM and loads them at start: nobody moves. Cookies hold either way.
// Requests that arrive while no process listens fail; they are counted.
func testProcessRestartKeepsPinsOnlyWithStateFile(t *testing.T) {
	for _, stateFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("state_file=%v", stateFile), func(t *testing.T) {
			t.Parallel()
			o := restartRun(t)
			o.Restarts = []time.Duration{600 * time.Millisecond}
			o.StateFile = stateFile
			withPolicy(&o, "random2")
			rep := run(t, o)
			for i := range rep.Runs {
				checkAccounting(t, o, &rep.Runs[i])
				if w := rep.Runs[i].Warnings; len(w) > 0 {
					t.Errorf("%s: warnings %q", rep.Runs[i].Mode, w)
				}
			}
			l4, l7 := rep.Result(L4), rep.Result(L7)
			t.Logf("state file %v: l4 broken %d %+v, failed %d; l7 broken %d, failed %d",
				stateFile, l4.BrokenSessions, l4.Broken, l4.FailedRequests, l7.BrokenSessions, l7.FailedRequests)
			if l7.BrokenSessions != 0 {
				t.Errorf("l7 broken %d %+v, want 0: the cookie names the backend", l7.BrokenSessions, l7.Broken)
			}
			switch {
			case stateFile && l4.BrokenSessions != 0:
				t.Errorf("state file: l4 broken %d %+v, want 0: the pins were saved at SIGTERM", l4.BrokenSessions, l4.Broken)
			case !stateFile && (l4.BrokenSessions < 55 || l4.BrokenSessions > 105 || l4.Broken != Broken{Restarted: l4.BrokenSessions}):
				t.Errorf("no state file: l4 broken %d %+v, want 80 +- 25, all restarted", l4.BrokenSessions, l4.Broken)
			}
		})
	}
}

// testProcessUpgradeBreaksNothing sends SIGUSR2 to the lbctl process 600ms
// into the run: the binary on disk starts, takes the listener, the pins
// and the admin states over, and the old process drains. No request fails
// and no session moves, in either mode, with a state file or without
// (the pins go over the hand-over, not through the file).
func testProcessUpgradeBreaksNothing(t *testing.T) {
	for _, stateFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("state_file=%v", stateFile), func(t *testing.T) {
			t.Parallel()
			o := restartRun(t)
			o.Upgrades = []time.Duration{600 * time.Millisecond}
			o.StateFile = stateFile
			rep := run(t, o)
			checkClean(t, o, rep)
			for i := range rep.Runs {
				res := &rep.Runs[i]
				t.Logf("%s: broken %d %+v, failed %d", res.Mode, res.BrokenSessions, res.Broken, res.FailedRequests)
				if res.BrokenSessions != 0 {
					t.Errorf("%s: broken %d %+v, want 0", res.Mode, res.BrokenSessions, res.Broken)
				}
			}
		})
	}
}

// TestUpgradeNeedsTheBinary: an in-process instance cannot upgrade, nor
// form a cluster.
func TestUpgradeNeedsTheBinary(t *testing.T) {
	o := small()
	o.Upgrades = []time.Duration{0}
	if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--upgrade@") {
		t.Errorf("--upgrade@ without a binary: %v, want an error naming --upgrade@", err)
	}
	o = small()
	o.Instances, o.Cluster = 2, true
	if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Errorf("--cluster without a binary: %v, want an error naming --cluster", err)
	}
	o.Instances = 1
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Errorf("--cluster with one instance: %v, want an error naming --cluster", err)
	}
}

// testProcessEventsLeaveNothingRunning runs every event a process run
// takes, over two lbctl processes with state files: a restart, an
// upgrade, an add through SIGHUP and a bounded drain through the admin
// API. Each happens, and when Run returns no process is left: the ones
// the upgrades started included. It runs alone, so that the processes
// of other tests are not there to be seen.
func testProcessEventsLeaveNothingRunning(t *testing.T) {
	o := restartRun(t)
	o.Modes = []Mode{L4}
	o.Instances, o.StateFile = 2, true
	cfg := LabConfig()
	cfg.Health.Check = "none"
	o.Config = cfg
	o.Adds = []Event{{Backend: "app-04", At: 200 * time.Millisecond}}
	o.Drains = []Event{{Backend: "app-01", At: 400 * time.Millisecond}}
	o.DrainFor = 300 * time.Millisecond
	o.Restarts = []time.Duration{800 * time.Millisecond}
	o.Upgrades = []time.Duration{1500 * time.Millisecond}
	rep := run(t, o)
	res := rep.Result(L4)
	checkAccounting(t, o, res)
	if len(res.Warnings) > 0 {
		t.Errorf("warnings %q", res.Warnings)
	}
	if len(res.ScaleUps) != 1 || res.ScaleUps[0].NewUsersThere == 0 {
		t.Errorf("scale-ups %+v, want app-04 to take new users", res.ScaleUps)
	}
	if len(res.Drains) != 1 || res.Drains[0].DeadlineMS == nil {
		t.Errorf("drains %+v, want one with a deadline", res.Drains)
	}
	out, err := exec.Command("pgrep", "-f", lbctlBinary(t)+" serve").CombinedOutput()
	if err == nil {
		t.Errorf("lbctl processes left running:\n%s", out)
	}
}

// testClusterKeepsPinsAcrossInstances spreads each user's connections
// over 3 lbctl processes under round robin, as TestInstancesAgreeOnlyWithMaglev
// does without a cluster (where L4 sessions break, instance_changed).
// With --cluster each pin reaches the other instances within tens of
// milliseconds, and a user's next request comes 500ms after its last
// (4 requests over 2s), one user a gateway: every connection finds its
// pin wherever it lands, and no session breaks in either mode.
func testClusterKeepsPinsAcrossInstances(t *testing.T) {
	o := paced(2*time.Second, 4)
	o.Binary = lbctlBinary(t)
	o.Instances, o.Cluster = 3, true
	rep := run(t, o)
	checkClean(t, o, rep)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		t.Logf("%s: broken %d %+v", res.Mode, res.BrokenSessions, res.Broken)
		if res.BrokenSessions != 0 {
			t.Errorf("%s: broken %d %+v, want 0: the cluster shares the pins", res.Mode, res.BrokenSessions, res.Broken)
		}
	}
}

//go:build unix

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTargetRestartCommand restarts a target through --target-restart-cmd:
// the command hands the restart to the test through a FIFO, the test
// stops the other lbctl (random2 over 3 backends, no state file) and
// starts it again on the same address, and the command returns once it
// is back. As with lbctl's own restart, about two thirds of the 120 users
// (one per gateway) change backend, every one of them for cause
// restarted; none rebalanced.
func TestTargetRestartCommand(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	o := paced(3*time.Second, 6)
	o.Modes = []Mode{L4}
	backends := freeAddrs(t, 3)
	c := externalConfig(t, L4, "random2", backends)
	ext := startExternal(t, c, "127.0.0.1:0")
	dir := t.TempDir()
	asked, done := filepath.Join(dir, "asked"), filepath.Join(dir, "done")
	for _, f := range []string{asked, done} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The test's side of the command: stop the other lbctl, start it
	// again on its address, answer. Nothing here may fail the test: it
	// reports on restarted.
	type result struct {
		next *external
		err  error
	}
	restarted := make(chan result, 1)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		// Opening a FIFO waits for the other end: the command's.
		data, err := os.ReadFile(asked)
		if err != nil || strings.TrimSpace(string(data)) != "restart" {
			restarted <- result{err: fmt.Errorf("the command wrote %q (%v)", data, err)}
			return
		}
		var next *external
		if err = ext.stop(); err == nil {
			next, err = newExternal(c, ext.addr)
		}
		werr := os.WriteFile(done, []byte("ok\n"), 0o600)
		restarted <- result{next, errors.Join(err, werr)}
	}()
	t.Cleanup(func() {
		// If the run never ran the command, end the wait for it: a
		// writer that opens and closes the FIFO gives the reader EOF.
		if f, err := os.OpenFile(asked, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		<-handled
	})
	addr := ext.addr
	o.TargetBackends = backends
	o.Targets = map[Mode][]string{L4: {addr}}
	o.TargetSettle = 0
	o.Restarts = []time.Duration{600 * time.Millisecond}
	o.TargetRestartCmd = fmt.Sprintf("echo restart > %s && cat %s", asked, done)
	rep := run(t, o)
	r := <-restarted
	if r.next != nil {
		t.Cleanup(func() {
			if err := r.next.stop(); err != nil {
				t.Errorf("restarted external: %v", err)
			}
		})
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	res := rep.Result(L4)
	checkAccounting(t, o, res)
	t.Logf("broken %d %+v, failed %d", res.BrokenSessions, res.Broken, res.FailedRequests)
	if res.Broken != (Broken{Restarted: res.BrokenSessions}) || res.BrokenSessions < 55 || res.BrokenSessions > 105 {
		t.Errorf("broken %d %+v, want 80 ± 25, all restarted", res.BrokenSessions, res.Broken)
	}
	if !strings.Contains(strings.Join(rep.Scenario.Events, " "), "--restart@600ms") || rep.Scenario.Target != ", target l4="+addr {
		t.Errorf("scenario events %q, target %q", rep.Scenario.Events, rep.Scenario.Target)
	}

	// A command that fails fails the run, naming it.
	o.TargetRestartCmd = "echo no such service >&2; exit 3"
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no such service") {
		t.Errorf("Run with a failing command: %v, want its output", err)
	}
}

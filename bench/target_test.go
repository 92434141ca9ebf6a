package bench

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
	"github.com/lbctl/lbctl/internal/loopback"
)

// freeAddrs returns n loopback addresses with ports free a moment ago
// (see loopback.FreeAddrOn).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		addrs = append(addrs, loopback.FreeAddr(t))
	}
	return addrs
}

// serveExternal runs lbctl in mode over backends as another load balancer
// would run, on a port of its own, until the test ends.
func serveExternal(t *testing.T, mode Mode, policy string, backends []string) string {
	t.Helper()
	c := config.Default()
	c.Mode = string(mode)
	c.Listen = "127.0.0.1:8080" // not used: the listener below is
	c.Balance.Policy = policy
	c.Health.Check = "none"
	for i, a := range backends {
		c.Backends = append(c.Backends, config.Backend{ID: backendID(i), Address: a, Weight: 1})
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	in, err := instance.New(&c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := instance.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- in.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		in.Shutdown(ctx)
		if err := <-served; err != nil && !errors.Is(err, instance.ErrClosed) {
			t.Errorf("external %s: %v", mode, err)
		}
		in.Close()
	})
	return ln.Addr().String()
}

// TestTargetMeasuresWhatItMeasuresDirectly plays one scenario against
// lbctl's own front doors, then against a second lbctl set up as an
// operator would set up any load balancer: configured with the lab's
// backends on fixed addresses (--target-backends) and reached through
// --target. One request at a time under maglev, both runs must give the
// same figures: each backend's users and requests, the balance and the
// broken sessions. A --fail still kills the backend behind the target.
func TestTargetMeasuresWhatItMeasuresDirectly(t *testing.T) {
	o := small()
	o.Concurrency = 1
	o.Backends = 3
	cfg := LabConfig()
	cfg.Balance.Policy = "maglev"
	cfg.Health.Check = "none"
	o.Config = cfg
	direct := run(t, o)

	backends := freeAddrs(t, 3)
	o.TargetBackends = backends
	o.Targets = map[Mode]string{
		L4: serveExternal(t, L4, "maglev", backends),
		L7: serveExternal(t, L7, "maglev", backends),
	}
	o.TargetSettle = 0 // the second lbctl checks no health
	through := run(t, o)
	var text strings.Builder
	if err := through.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if want := "front doors: target l4=" + o.Targets[L4] + ", target l7=" + o.Targets[L7]; !strings.Contains(text.String(), want) {
		t.Errorf("the report does not name the target (%q):\n%s", want, text.String())
	}
	for _, m := range o.Modes {
		a, b := direct.Result(m), through.Result(m)
		checkAccounting(t, o, b)
		for i := range a.Backends {
			if a.Backends[i].Users != b.Backends[i].Users || a.Backends[i].Requests != b.Backends[i].Requests {
				t.Errorf("%s: %s served %d users, %d requests directly; %d, %d through --target",
					m, a.Backends[i].ID, a.Backends[i].Users, a.Backends[i].Requests, b.Backends[i].Users, b.Backends[i].Requests)
			}
		}
		if a.MaxOverMean != b.MaxOverMean || a.BrokenSessions != b.BrokenSessions || a.FailedRequests != b.FailedRequests {
			t.Errorf("%s: max_over_mean %.3f, broken %d, failed %d directly; %.3f, %d, %d through --target",
				m, a.MaxOverMean, a.BrokenSessions, a.FailedRequests, b.MaxOverMean, b.BrokenSessions, b.FailedRequests)
		}
	}

	// A --fail kills the backend behind the target: its users move.
	o.Modes = []Mode{L7}
	delete(o.Targets, L4)
	o.Concurrency = 4
	o.Duration = 600 * time.Millisecond
	o.Failures = []Event{{Backend: "app-02", At: 200 * time.Millisecond}}
	failed := run(t, o).Result(L7)
	checkAccounting(t, o, failed)
	if len(failed.Failovers) != 1 || failed.RepinnedUsers == 0 || failed.Broken.Rebalanced != 0 {
		t.Errorf("--fail through --target: failovers %+v, repinned %d, broken %+v; want app-02's users moved, none rebalanced",
			failed.Failovers, failed.RepinnedUsers, failed.Broken)
	}
}

func TestTargetValidation(t *testing.T) {
	o := small()
	o.Targets = map[Mode]string{L7: "127.0.0.1:1"}
	o.TargetBackends = []string{"127.0.0.1:2"}
	o.Reloads = []time.Duration{time.Second}
	o.TargetSettle = -time.Second
	err := o.Validate()
	for _, want := range []string{"--target-settle: -1s must not be negative", "--target: no address for mode l4", "--target-backends: 1 addresses for 3 --backends",
		"--reload@: acts on lbctl's own instances"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	if _, err := ParseTargets("l4=127.0.0.1:1,l9=x"); err == nil {
		t.Error("ParseTargets accepted l9")
	}
	if got, err := ParseTargets("l4=127.0.0.1:1,l7=127.0.0.1:2"); err != nil || got[L4] != "127.0.0.1:1" || got[L7] != "127.0.0.1:2" {
		t.Errorf("ParseTargets = %v, %v", got, err)
	}
}

package bench

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/selfsigned"
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
	return startExternal(t, externalConfig(t, mode, policy, backends), "127.0.0.1:0").addr
}

// externalConfig is the config of an lbctl that another load balancer
// stands for: mode and policy over backends, no health checks.
func externalConfig(t *testing.T, mode Mode, policy string, backends []string) *config.Config {
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
	return &c
}

// external is an lbctl that stands for another load balancer, serving
// on addr until stopped; the test's cleanup stops it.
type external struct {
	addr   string
	in     *instance.Instance
	served chan error
}

// startExternal serves c on addr until the test ends (or stop).
func startExternal(t *testing.T, c *config.Config, addr string) *external {
	t.Helper()
	e, err := newExternal(c, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("external %s: %v", c.Mode, err)
		}
	})
	return e
}

// newExternal serves c on addr until stop.
func newExternal(c *config.Config, addr string) (*external, error) {
	in, err := instance.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	ln, err := instance.Listen(context.Background(), addr)
	if err != nil {
		in.Close()
		return nil, err
	}
	e := &external{addr: ln.Addr().String(), in: in, served: make(chan error, 1)}
	go func() { e.served <- in.Serve(ln) }()
	return e, nil
}

// stop shuts the instance down, once.
func (e *external) stop() error {
	if e.in == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.in.Shutdown(ctx)
	err := <-e.served
	e.in.Close()
	e.in = nil
	if err != nil && !errors.Is(err, instance.ErrClosed) {
		return err
	}
	return nil
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
	o.Targets = map[Mode][]string{
		L4: {serveExternal(t, L4, "maglev", backends)},
		L7: {serveExternal(t, L7, "maglev", backends)},
	}
	o.TargetSettle = 0 // the second lbctl checks no health
	through := run(t, o)
	var text strings.Builder
	if err := through.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if want := "front doors: target l4=" + o.Targets[L4][0] + ", target l7=" + o.Targets[L7][0]; !strings.Contains(text.String(), want) {
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
	o.Targets = map[Mode][]string{L7: {"127.0.0.1:1"}}
	o.TargetBackends = []string{"127.0.0.1:2"}
	o.Reloads = []time.Duration{time.Second}
	o.TargetSettle = -time.Second
	err := o.Validate()
	for _, want := range []string{"--target-settle: -1s must not be negative", "--target: no address for mode l4", "--target-backends: 1 addresses for 3 --backends",
		"--reload@: with a --target, give --target-reload-cmd"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	if _, err := ParseTargets("l4=127.0.0.1:1,l9=x"); err == nil {
		t.Error("ParseTargets accepted l9")
	}
	if got, err := ParseTargets("l4=127.0.0.1:1,l7=https://127.0.0.1:2,l4=127.0.0.2:1"); err != nil ||
		!slices.Equal(got[L4], []string{"127.0.0.1:1", "127.0.0.2:1"}) || !slices.Equal(got[L7], []string{"https://127.0.0.1:2"}) {
		t.Errorf("ParseTargets = %v, %v", got, err)
	}
}

// tlsConfig returns a [tls] table with a self-signed certificate for
// 127.0.0.1, its files in a folder of the test.
func tlsConfig(t *testing.T) config.TLS {
	t.Helper()
	certPEM, keyPEM, err := selfsigned.PEM("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tc := config.Default().TLS
	tc.Certificates = []config.Certificate{{Cert: cert, Key: key}}
	return tc
}

// TestTLS plays L7 against a TLS-terminating lbctl: the lab's own, from
// a config with [tls] (its L4 door stays plain), and another one reached
// as --target l7=https://ADDR. Every request is served (a plain request
// to a TLS listener fails) and cookies keep every session, with the same
// figures both ways.
func TestTLS(t *testing.T) {
	o := small()
	o.Concurrency = 1
	cfg := LabConfig()
	cfg.Mode = "l7" // as the file would say: [tls] needs it
	cfg.Balance.Policy = "maglev"
	cfg.Health.Check = "none"
	cfg.TLS = tlsConfig(t)
	cfg.Cookie.Secure = true // what a TLS config file defaults to
	o.Config = cfg
	direct := run(t, o)

	backends := freeAddrs(t, 3)
	ext := externalConfig(t, L7, "maglev", backends)
	ext.TLS, ext.Cookie.Secure = cfg.TLS, true
	if err := ext.Validate(); err != nil {
		t.Fatal(err)
	}
	o.Modes = []Mode{L7}
	o.TargetBackends = backends
	o.Targets = map[Mode][]string{L7: {"https://" + startExternal(t, ext, "127.0.0.1:0").addr}}
	o.TargetSettle = 0
	through := run(t, o).Result(L7)
	for _, res := range []*RunResult{direct.Result(L4), direct.Result(L7), through} {
		checkAccounting(t, o, res)
		if res.FailedRequests != 0 || res.BrokenSessions != 0 {
			t.Errorf("%s: %d failed %v, %d broken; want none", res.Mode, res.FailedRequests, res.FailureReasons, res.BrokenSessions)
		}
	}
	a := direct.Result(L7)
	for i := range a.Backends {
		if a.Backends[i].Users != through.Backends[i].Users || a.Backends[i].Requests != through.Backends[i].Requests {
			t.Errorf("%s served %d users, %d requests directly; %d, %d through --target https",
				a.Backends[i].ID, a.Backends[i].Users, a.Backends[i].Requests, through.Backends[i].Users, through.Backends[i].Requests)
		}
	}
}

// TestTargetInstances spreads connections over two instances of another
// load balancer (--target l4=A,l4=B): under round robin each keeps its own
// pins, so sessions break for cause instance_changed; under maglev both
// compute the same backend and nobody moves.
func TestTargetInstances(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	for _, policy := range []string{"roundrobin", "maglev"} {
		o := paced(600*time.Millisecond, 4)
		o.Modes = []Mode{L4}
		backends := freeAddrs(t, 3)
		o.TargetBackends = backends
		o.TargetSettle = 0
		o.Targets = map[Mode][]string{L4: {serveExternal(t, L4, policy, backends), serveExternal(t, L4, policy, backends)}}
		rep := run(t, o)
		res := rep.Result(L4)
		checkAccounting(t, o, res)
		if rep.Scenario.Instances != 2 {
			t.Errorf("%s: scenario instances %d, want 2", policy, rep.Scenario.Instances)
		}
		switch {
		case policy == "maglev" && res.BrokenSessions != 0:
			t.Errorf("maglev: broken %d %+v, want 0", res.BrokenSessions, res.Broken)
		case policy == "roundrobin" && (res.BrokenSessions == 0 || res.Broken != Broken{InstanceChanged: res.BrokenSessions}):
			t.Errorf("roundrobin: broken %d %+v, want some, all instance_changed", res.BrokenSessions, res.Broken)
		}
	}
}

//go:build linux

package l7

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/evloop"
)

// awaitLoops waits, when the suites run on the loop engine and event
// loops can serve ln, until they all do: what a loop sets up once (its
// goroutine, its epoll set) is then there before a test's first request,
// as the goroutine engine's accept loop is.
func awaitLoops(t testing.TB, p *Proxy, ln net.Listener) {
	t.Helper()
	if testHookEngine != EngineLoop || p.TLS != nil || p.ProxyProtocol.On() {
		return
	}
	if _, ok := ln.(*net.TCPListener); !ok {
		return
	}
	for _, b := range p.Pool.Registry().All() {
		if evloop.TargetFor(b.Address()) == nil {
			return
		}
	}
	want := p.Loops
	if want <= 0 {
		want = runtime.GOMAXPROCS(0)
	}
	awaitLoopsOf(t, p, want)
}

// awaitLoopsOf waits until n event loops of p serve.
func awaitLoopsOf(t testing.TB, p *Proxy, n int) {
	t.Helper()
	eventually.True(t, "the event loops to serve", func() bool {
		p.fronts.mu.Lock()
		defer p.fronts.mu.Unlock()
		return len(p.fronts.set) == n
	})
}

// TestLoopEngineSuites runs every test of the package again with the loop
// engine serving (see testHookEngine), in a process of its own: the
// suites, the corpus included, hold on both engines. Tests of what only
// one engine does say so and skip (see skipOnLoop).
func TestLoopEngineSuites(t *testing.T) {
	if testHookEngine != "" {
		t.Skip("this run is the loop engine's")
	}
	if testing.Short() {
		t.Skip("the loop engine's run of the suites takes as long as the suites")
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), engineEnv+"="+EngineLoop)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suites on the loop engine: %v\n%s", err, failures(out))
	}
}

// failures returns the lines of a test run's output that say what failed,
// with a few lines after each, or all of it when none does.
func failures(out []byte) string {
	lines := strings.Split(string(out), "\n")
	var keep []string
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") || strings.HasPrefix(l, "panic:") {
			keep = append(keep, lines[i:min(i+20, len(lines))]...)
		}
	}
	if len(keep) == 0 {
		return string(out)
	}
	return strings.Join(keep, "\n")
}

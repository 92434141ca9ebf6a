package l4

import (
	"fmt"
	"net"
	"testing"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// TestReloadedNameIsSkippedByTheEventLoop reloads a host name into a pool
// the event loop serves. The loop never resolves names, so clients go to
// the other backends, and the named one is not counted as failing: the
// fault is the proxy's, not the backend's.
func TestReloadedNameIsSkippedByTheEventLoop(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1, prober: true})
	if testHookPortable {
		t.Skip("the portable engine resolves names")
	}
	// Served once, the proxy has chosen its engine over the first pool.
	greeting(t, "127.0.8.10", f.addr)
	named := startBackend(t, "app-02")
	_, port, _ := net.SplitHostPort(named.addr)
	specs := testbackend.Specs(f.backends, "", backend.Spec{ID: "app-02", Address: net.JoinHostPort("localhost", port), Weight: 1})
	if _, err := f.pool.Reload(specs); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for i := range 4 { // round robin offers app-02 to every other client
		src := fmt.Sprintf("127.0.8.%d", i+1)
		if got := greeting(t, src, f.addr); got != "app-01" {
			t.Errorf("client %s reached %s, want app-01", src, got)
		}
	}
	if b := f.pool.Registry().Get("app-02"); !b.Up() || b.ConsecutiveFailures() != 0 {
		t.Errorf("app-02: up %v, %d failures; want it up and not blamed", b.Up(), b.ConsecutiveFailures())
	}
}

package admintest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// Serve serves srv on ln until the test ends, then shuts it down and
// checks that Serve returned nil and that no goroutine or descriptor is
// left beyond base, a baseline taken before ln was opened. A nil base
// checks no counts: for a test whose instance outlives the API server, the
// instance's own goroutines would be counted against it.
func Serve(t testing.TB, srv *admin.Server, ln net.Listener, base *leakcheck.Baseline) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
		if base != nil {
			base.Wait(t, 10*time.Second)
		}
	})
}

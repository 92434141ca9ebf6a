package instance

import (
	"log/slog"
	"testing"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// An admin state the operator sets before the instance has joined its
// cluster (the new process of an upgrade, until the old one has left) is
// shared at the join, and wins over the older state the join brings.
func TestAdminStateSetBeforeJoinIsShared(t *testing.T) {
	addr := startEchoBackend(t).ln.Addr().String()
	cfgB := testConfig(t, addr)
	cfgB.Cluster.Bind = "127.0.0.67:0"
	b, _ := startInstance(t, cfgB, &cfgB)
	if _, err := b.SetAdminState("app-01", backend.Maint, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}

	cfgA := testConfig(t, addr)
	cfgA.Cluster.Bind = "127.0.0.68:0"
	cfgA.Cluster.Join = []string{b.Cluster().Address()}
	a, err := build(cfgA, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.SetAdminState("app-01", backend.Drain, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := a.joinCluster(cfgA); err != nil {
		t.Fatal(err)
	}
	state := func(in *Instance) string {
		st, _ := in.parts.Backends.Registry().Get("app-01").Admin()
		return st.String()
	}
	if got := state(a); got != "drain" {
		t.Errorf("app-01 %s after the join, want drain as set before it", got)
	}
	eventually.True(t, "b to have the drain set on a before it joined", func() bool { return state(b) == "drain" })
	if got := state(a); got != "drain" {
		t.Errorf("app-01 %s on a, want drain", got)
	}
}

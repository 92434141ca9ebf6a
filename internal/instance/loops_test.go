package instance

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/admin"
)

// l4.loops reaches the L4 proxy, and a reload that changes it is refused:
// the loops of a listener are started with it, and the running count must
// never differ silently from the file.
func TestL4LoopsAppliesAtStartOnly(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	cfg.L4.Loops = 3
	next := cfg
	in, _ := startInstance(t, cfg, &next)
	if in.l4.Loops != 3 {
		t.Fatalf("proxy Loops = %d, want l4.loops = 3", in.l4.Loops)
	}
	changed := *cfg
	changed.L4.Loops = 1
	next = &changed
	_, err := in.Reload(t.Context())
	var rerr *admin.ReloadError
	if !errors.As(err, &rerr) || len(rerr.Messages) != 1 || !strings.HasPrefix(rerr.Messages[0], "l4.loops: changed; it takes effect only at a restart") {
		t.Fatalf("Reload = %v, want a ReloadError naming l4.loops", err)
	}
}

// The connections each event loop accepted show in /api/stats and in the
// scrape, by loop, adding up to the front door's connections.
func TestLoopConnectionsMetric(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	cfg.L4.Loops = 2
	in, addr := startInstance(t, cfg, &cfg)
	base := serveAdmin(t, in)
	const clients = 8
	for i := range clients {
		c := dialFrom(t, fmt.Sprintf("127.0.66.%d", i+1), addr)
		echoOnce(t, c)
		c.Close()
	}
	m := scrape(t, base)
	checkFamilies(t, m, map[string]familySpec{"lbctl_front_loop_connections_total": {counter, "loop"}}, nil)
	if n := len(m.series(t, "lbctl_front_loop_connections_total")); n != 2 {
		t.Errorf("%d loop series, want 2", n)
	}
	if got, want := m.sum(t, "lbctl_front_loop_connections_total"), m.value(t, "lbctl_front_connections_total"); got != want || got != clients {
		t.Errorf("loop connections add up to %v, front connections %v; want %d", got, want, clients)
	}
	if got := in.Stats().Front.LoopConnections; len(got) != 2 || got[0]+got[1] != clients {
		t.Errorf("Stats loop connections = %v, want two adding up to %d", got, clients)
	}
}

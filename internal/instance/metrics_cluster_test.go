package instance

import (
	"fmt"
	"testing"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
)

var clusterFamilies = map[string]familySpec{
	"lbctl_cluster_members":                    {gauge, ""},
	"lbctl_cluster_pins_sent_total":            {counter, ""},
	"lbctl_cluster_pins_dropped_total":         {counter, ""},
	"lbctl_cluster_pins_received_total":        {counter, ""},
	"lbctl_cluster_pins_applied_total":         {counter, ""},
	"lbctl_cluster_admin_states_applied_total": {counter, ""},
	"lbctl_cluster_bad_messages_total":         {counter, ""},
}

// With [cluster], the scrape and /api/stats count the members and the
// pins each member sent and received: the pins of clients served by one
// member are sent by it and received and applied by the other. Without
// [cluster] there are no cluster metrics.
func TestMetricsCluster(t *testing.T) {
	b1 := startEchoBackend(t)
	alone, _ := startInstance(t, testConfig(t, b1.ln.Addr().String()), new(*config.Config))
	checkFamilies(t, scrape(t, serveAdmin(t, alone)), commonFamilies, familyNames(clusterFamilies))
	if alone.Stats().Cluster != nil {
		t.Error("Stats has a cluster without [cluster]")
	}

	cfgA := testConfig(t, b1.ln.Addr().String())
	cfgA.Cluster.Bind = "127.0.0.61:0"
	a, addrA := startInstance(t, cfgA, &cfgA)
	cfgB := testConfig(t, b1.ln.Addr().String())
	cfgB.Cluster.Bind = "127.0.0.62:0"
	cfgB.Cluster.Join = []string{a.Cluster().Address()}
	b, _ := startInstance(t, cfgB, &cfgB)
	baseA, baseB := serveAdmin(t, a), serveAdmin(t, b)
	eventually.True(t, "both members see two", func() bool {
		return a.Stats().Cluster.Members == 2 && b.Stats().Cluster.Members == 2
	})

	const clients = 5
	for i := range clients {
		c := dialFrom(t, fmt.Sprintf("127.0.63.%d", i+1), addrA)
		echoOnce(t, c)
		c.Close()
	}
	// b may have a's pins by a state exchange before a's own sends of
	// them go out (each 20 ms): wait for both.
	eventually.True(t, "a to send its pins and b to apply them", func() bool {
		return a.Stats().Cluster.PinsSent >= clients && b.Stats().Cluster.PinsApplied >= clients
	})
	ma, mb := scrape(t, baseA), scrape(t, baseB)
	checkFamilies(t, ma, merge(commonFamilies, l4Families, clusterFamilies), nil)
	checkFamilies(t, mb, merge(commonFamilies, l4Families, clusterFamilies), nil)
	for _, m := range []metrics{ma, mb} {
		if got := m.value(t, "lbctl_cluster_members"); got != 2 {
			t.Errorf("cluster members = %v, want 2", got)
		}
		if got := m.value(t, "lbctl_cluster_bad_messages_total"); got != 0 {
			t.Errorf("bad messages = %v, want 0", got)
		}
	}
	if got := ma.value(t, "lbctl_cluster_pins_sent_total"); got != clients {
		t.Errorf("a sent %v pins, want %d", got, clients)
	}
	if got := mb.value(t, "lbctl_cluster_pins_received_total"); got < clients {
		t.Errorf("b received %v pins, want at least %d", got, clients)
	}
	if got := mb.value(t, "lbctl_cluster_pins_applied_total"); got < clients {
		t.Errorf("b applied %v pins, want at least %d", got, clients)
	}
	if got := mb.value(t, "lbctl_cluster_pins_sent_total"); got != 0 {
		t.Errorf("b, which served nobody, sent %v pins", got)
	}
}

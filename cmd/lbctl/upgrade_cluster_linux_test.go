package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/internal/eventually"
)

// TestUpgradeInCluster upgrades one member of a two-member cluster twice
// in a row: each new process takes the cluster's bind address over from
// the old one, and pins keep flowing both ways through it afterwards. Pins made through the
// member before the upgrade are still its own after it.
func TestUpgradeInCluster(t *testing.T) {
	bin := buildLbctl(t)
	addrs := map[string]string{}
	var ids []string
	for _, id := range []string{"app-01", "app-02", "app-03"} {
		addrs[id] = killableEcho(t, id).Addr()
		ids = append(ids, id, addrs[id])
	}
	dir := t.TempDir()
	ms := newCluster(t, 2, 41, dir, ids...)
	a, b := ms[0], ms[1]
	u := startUpgradable(t, bin, "--config", a.config, "--grace", "2s")
	bCmd, bLog := startServe(t, "--config", b.config, "--grace", "2s")
	allAlive(t, "both members alive", ms)
	before := map[string]string{}
	for i := range 6 {
		src := fmt.Sprintf("127.0.90.%d", i+1)
		before[src] = greeting(t, a.listen, src)
	}
	for src, id := range before {
		eventually.True(t, fmt.Sprintf("%s pinned to %s on b", src, id), func() bool { return pinOf(t, b.admin, src) == id })
	}

	// Twice, the second at once: a new process upgraded before it has
	// joined must not join once it has handed over.
	old, _ := u.upgrade()
	old2, _ := u.upgrade()
	u.waitExit(old)
	u.waitExit(old2)
	if strings.Contains(u.log(), "upgrade failed") {
		t.Fatalf("an upgrade failed:\n%s", u.log())
	}
	allAlive(t, "both members alive after the upgrades", ms)

	// The upgraded member keeps the pins made before, shares the pins
	// made through it, and has the pins made through the other.
	for src, id := range before {
		if got := pinOf(t, a.admin, src); got != id {
			t.Errorf("%s pinned to %s before the upgrade, to %q after", src, id, got)
		}
	}
	for i := range 6 {
		src := fmt.Sprintf("127.0.91.%d", i+1)
		id := greeting(t, a.listen, src)
		eventually.True(t, fmt.Sprintf("%s pinned through the upgraded member to %s on b", src, id), func() bool { return pinOf(t, b.admin, src) == id })
	}
	for i := range 6 {
		src := fmt.Sprintf("127.0.92.%d", i+1)
		id := greeting(t, b.listen, src)
		eventually.True(t, fmt.Sprintf("%s pinned through b to %s on the upgraded member", src, id), func() bool { return pinOf(t, a.admin, src) == id })
	}
	stopServe(t, bCmd, bCmd.Process.Pid, bLog)
}

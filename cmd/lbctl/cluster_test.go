package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// clusterMember is one lbctl serve process of a cluster under test.
type clusterMember struct {
	listen, bind, admin, config string
	cmd                         *exec.Cmd
	log                         *syncBuffer
}

// freeAddrOn returns ip with a port that was free a moment ago, for TCP
// and UDP both, as a cluster member binds both.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	return loopback.FreeAddrOn(t, ip, true)
}

// newCluster describes n members, the i-th on 127.0.0.(firstHost+i) with
// its admin API on a socket under dir, each configured to join all the
// others in front of the backends given (as for liveBackends), with health
// checks off so that a backend's failure is seen only by the member that
// dials it. It starts none of them.
func newCluster(t *testing.T, n, firstHost int, dir string, backends ...string) []*clusterMember {
	t.Helper()
	members := make([]*clusterMember, n)
	for i := range members {
		ip := fmt.Sprintf("127.0.0.%d", firstHost+i)
		members[i] = &clusterMember{
			listen: freeAddrOn(t, ip),
			bind:   freeAddrOn(t, ip),
			admin:  "unix:" + filepath.Join(dir, fmt.Sprintf("admin%d.sock", i)),
		}
	}
	for i, m := range members {
		var join []string
		for j, o := range members {
			if j != i {
				join = append(join, fmt.Sprintf("%q", o.bind))
			}
		}
		m.config = writeConfig(t, fmt.Sprintf(`
listen = %q
[health]
check = "none"
[admin]
listen = %q
[cluster]
bind = %q
join = [%s]
gossip_interval = "50ms"
`, m.listen, m.admin, m.bind, strings.Join(join, ", "))+liveBackends(backends...))
	}
	return members
}

// allAlive waits until every member lists all of them alive.
func allAlive(t *testing.T, what string, members []*clusterMember) {
	t.Helper()
	eventually.True(t, what, func() bool {
		for _, m := range members {
			out, _, err := runLbctl(t, "cluster", "members", "--admin", m.admin)
			if err != nil || strings.Count(out, " alive") != len(members) {
				return false
			}
		}
		return true
	})
}

// pinOf returns the backend the instance whose admin API is at adminAddr
// has key pinned to, "" for none.
func pinOf(t *testing.T, adminAddr, key string) string {
	t.Helper()
	out, _, err := runLbctl(t, "pin", "get", key, "--admin", adminAddr)
	if err != nil {
		return ""
	}
	rows := fields(out)
	if len(rows) < 2 || len(rows[1]) < 2 {
		return ""
	}
	return rows[1][1]
}

// TestClusterSharesPinsAndAdminStates runs three lbctl instances as
// separate processes on distinct loopback addresses, joined in a cluster,
// in front of three backends whose health is not checked (so that a
// backend's failure is seen only by the instance that dials it). A client
// pinned through one instance reaches the same backend through the
// others; a re-pin after a failure seen by one alone is honoured by the
// others; an instance restarted with an empty table has every pin back
// from its peers before it serves; a drain set on one shows on the others;
// an instance cut off for a while has the pins made meanwhile once back.
func TestClusterSharesPinsAndAdminStates(t *testing.T) {
	addrs := map[string]string{}
	backends := map[string]*testbackend.Backend{}
	for _, id := range []string{"app-01", "app-02", "app-03"} {
		backends[id] = killableEcho(t, id)
		addrs[id] = backends[id].Addr()
	}
	dir := t.TempDir()
	members := newCluster(t, 3, 21, dir,
		"app-01", addrs["app-01"], "app-02", addrs["app-02"], "app-03", addrs["app-03"])
	a, b, c := members[0], members[1], members[2]
	for _, m := range members {
		m.cmd, m.log = startServe(t, "--config", m.config, "--grace", "2s")
	}
	allAlive(t, "every member sees three alive", members)
	if out := mustRun(t, "cluster", "members", "--admin", a.admin); !strings.Contains(out, a.bind+"  alive (this one)") {
		t.Errorf("cluster members through a:\n%s", out)
	}

	// Clients pinned through a are pinned alike on b and c, and reach the
	// same backend through them.
	pinned := map[string]string{}
	for i := range 12 {
		src := fmt.Sprintf("127.0.80.%d", i+1)
		pinned[src] = greeting(t, a.listen, src)
	}
	for src, id := range pinned {
		for _, m := range []*clusterMember{b, c} {
			eventually.True(t, fmt.Sprintf("%s pinned to %s on %s", src, id, m.listen), func() bool { return pinOf(t, m.admin, src) == id })
			if got := greeting(t, m.listen, src); got != id {
				t.Errorf("client %s: %s through a, %s through %s", src, id, got, m.listen)
			}
		}
	}

	// One backend fails; a alone sees it, at the next connection of its
	// client, and re-pins the client. It comes back before b sees the
	// client, and b follows a's re-pin rather than the old pin.
	var src, failed string
	for s, id := range pinned {
		src, failed = s, id
		break
	}
	backends[failed].Kill()
	moved := greeting(t, a.listen, src)
	if moved == failed {
		t.Fatalf("client %s still reached %s, closed", src, failed)
	}
	revive(t, backends[failed])
	for _, m := range []*clusterMember{b, c} {
		eventually.True(t, fmt.Sprintf("%s re-pinned to %s on %s", src, moved, m.listen), func() bool { return pinOf(t, m.admin, src) == moved })
		if got := greeting(t, m.listen, src); got != moved {
			t.Errorf("client %s re-pinned to %s through a, reaches %s through %s", src, moved, got, m.listen)
		}
	}
	pinned[src] = moved

	// c restarts with an empty table (no state file): it has every pin
	// back from a and b by the time it serves.
	stopServe(t, c.cmd, c.cmd.Process.Pid, c.log)
	eventually.True(t, "a sees c leave", func() bool { return strings.Contains(a.log.String(), "cluster member left") })
	c.cmd, c.log = startServe(t, "--config", c.config, "--grace", "2s")
	for src, id := range pinned {
		if got := greeting(t, c.listen, src); got != id {
			t.Errorf("client %s on %s before c restarted, on %s through c after", src, id, got)
		}
	}

	// A drain set through a's admin API shows on b and c.
	mustRun(t, "backend", "drain", "app-03", "--admin", a.admin)
	for _, m := range []*clusterMember{b, c} {
		eventually.True(t, "app-03 draining on "+m.listen, func() bool {
			out, _, err := runLbctl(t, "backend", "list", "--admin", m.admin)
			for _, row := range fields(out) {
				if err == nil && len(row) > 4 && row[0] == "app-03" && row[4] == "drain" {
					return true
				}
			}
			return false
		})
	}
	for i := range 6 {
		if got := greeting(t, b.listen, fmt.Sprintf("127.0.81.%d", i+1)); got == "app-03" {
			t.Error("a new client through b landed on app-03, drained through a")
		}
	}

	// c is cut off (paused) until a and b take it for dead; clients
	// pinned through a meanwhile reach c too once it is back: a and b
	// exchange whole state with a member that returns.
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cState := func() string {
		out, _, _ := runLbctl(t, "cluster", "members", "--admin", a.admin)
		for _, row := range fields(out) {
			if len(row) > 2 && row[1] == c.bind {
				return row[2]
			}
		}
		return ""
	}
	eventually.True(t, "a to suspect c", func() bool { return cState() != "alive" })
	// Members lists the live and the suspect; the dead drop out.
	eventually.True(t, "a to take c for dead", func() bool { return cState() == "" })
	meanwhile := map[string]string{}
	for i := range 4 {
		src := fmt.Sprintf("127.0.82.%d", i+1)
		meanwhile[src] = greeting(t, a.listen, src)
	}
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for src, id := range meanwhile {
		eventually.True(t, fmt.Sprintf("%s pinned to %s on c, back", src, id), func() bool { return pinOf(t, c.admin, src) == id })
	}

	for _, m := range members {
		stopServe(t, m.cmd, m.cmd.Process.Pid, m.log)
	}
}

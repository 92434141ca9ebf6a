package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// stopServe sends SIGTERM to a serve process and waits for it to exit 0.
func stopServe(t *testing.T, cmd interface {
	Wait() error
}, pid int, log *syncBuffer) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, waitFor(cmd), "after SIGTERM", log)
}

// TestPinsSurviveARestart runs lbctl serve with a state file, pins twenty
// clients over three backends and drains one, restarts it with SIGTERM,
// and finds every client on its backend and the drain in place; then a
// corrupt state file is a warning, and lbctl serves.
func TestPinsSurviveARestart(t *testing.T) {
	listen := freeAddr(t)
	a1, a2, a3 := echoBackend(t, "app-01"), echoBackend(t, "app-02"), echoBackend(t, "app-03")
	dir := t.TempDir()
	adminAddr := "unix:" + filepath.Join(dir, "admin.sock")
	state := filepath.Join(dir, "pins")
	path := writeConfig(t, fmt.Sprintf(liveConfig, listen, "60s", adminAddr)+
		fmt.Sprintf("[affinity]\nstate_file = %q\nsave_interval = \"1h\"\n", state)+
		liveBackends("app-01", a1, "app-02", a2, "app-03", a3))

	cmd, log := startServe(t, "--config", path, "--grace", "2s")
	pinned := map[string]string{}
	used := map[string]int{}
	for i := range 20 {
		src := fmt.Sprintf("127.0.%d.%d", 60+i%3, i+1)
		pinned[src] = greeting(t, listen, src)
		used[pinned[src]]++
	}
	if len(used) != 3 {
		t.Fatalf("twenty clients reached %v, want all three backends", used)
	}
	mustRun(t, "backend", "drain", "app-02", "--for", "1h", "--admin", adminAddr)
	stopServe(t, cmd, cmd.Process.Pid, log)

	cmd, log = startServe(t, "--config", path, "--grace", "2s")
	if !strings.Contains(log.String(), "state restored") || strings.Contains(log.String(), "level=WARN") {
		t.Errorf("restart log:\n%s", log.String())
	}
	for src, id := range pinned {
		if got := greeting(t, listen, src); got != id {
			t.Errorf("client %s was on %s before the restart, on %s after", src, id, got)
		}
	}
	if list := mustRun(t, "backend", "list", "--admin", adminAddr); !strings.Contains(list, "drain") {
		t.Errorf("app-02 no longer draining after the restart:\n%s", list)
	}
	for i := range 6 {
		if got := greeting(t, listen, fmt.Sprintf("127.0.70.%d", i+1)); got == "app-02" {
			t.Error("a new client landed on app-02, draining before the restart")
		}
	}
	stopServe(t, cmd, cmd.Process.Pid, log)

	if err := os.WriteFile(state, []byte("LBADMIN\ngarbage that is no state"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, log = startServe(t, "--config", path, "--grace", "2s")
	if l := log.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "state file ignored") || !strings.Contains(l, state) {
		t.Errorf("a corrupt state file was not a warning naming it:\n%s", l)
	}
	if got := greeting(t, listen, "127.0.71.1"); got == "" {
		t.Error("no greeting after a start with a corrupt state file")
	}
	stopServe(t, cmd, cmd.Process.Pid, log)
}

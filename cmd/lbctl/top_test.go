package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestTopShowsBackendsAndNATView runs `lbctl top --once` against a running
// L7 lbctl that users behind three gateways have visited.
func TestTopShowsBackendsAndNATView(t *testing.T) {
	listen := freeAddr(t)
	a1, a2 := idBackend(t, "app-01"), idBackend(t, "app-02")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	cfg := "mode = \"l7\"\n" + fmt.Sprintf(liveConfig, listen, "60s", adminAddr) + liveBackends("app-01", a1, "app-02", a2)
	startServe(t, "--config", writeConfig(t, cfg), "--grace", "2s")
	browse(t, listen, []int{12, 4, 1}, 2)

	out := mustRun(t, "top", "--once", "--admin", adminAddr)
	t.Logf("lbctl top --once:\n%s", out)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "lbctl l7") {
		t.Errorf("first line %q, want the mode", lines[0])
	}
	for _, want := range []string{"app-01", "app-02", "NAT view", "keyed by source IP"} {
		if !strings.Contains(out, want) {
			t.Errorf("top lacks %q:\n%s", want, out)
		}
	}
	// The biggest gateway comes first among the sources, flagged; the
	// lone user is not.
	var sources [][]string
	for _, row := range fields(out) {
		if len(row) > 0 && strings.HasPrefix(row[0], "127.0.70.") {
			sources = append(sources, row)
		}
	}
	if len(sources) != 3 || sources[0][0] != "127.0.70.1" || sources[0][len(sources[0])-1] != "NAT" {
		t.Fatalf("sources %v, want 127.0.70.1 first, flagged:\n%s", sources, out)
	}
	// Sessions are an estimate: 12 within the error top prints.
	var sessions, bound int
	fmt.Sscan(sources[0][1], &sessions)
	fmt.Sscan(strings.TrimPrefix(sources[0][2], "±"), &bound)
	if sessions < 12-bound || sessions > 12+bound || bound < 1 {
		t.Errorf("127.0.70.1 shows %d ±%d sessions, want 12 within the bound", sessions, bound)
	}
	if last := sources[2]; last[0] != "127.0.70.3" || last[len(last)-1] == "NAT" {
		t.Errorf("lone user %v flagged as a NAT", last)
	}
	if _, _, err := runLbctl(t, "top", "--once", "--interval", "1ms", "--admin", adminAddr); err == nil {
		t.Error("--interval 1ms accepted")
	}
}

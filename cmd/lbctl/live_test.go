package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
)

// liveConfig is an L4 config with the admin API on a unix socket; backends
// are appended as [[backend]] tables.
const liveConfig = `
listen = %q
[health]
check = "tcp"
interval = "100ms"
rise = 1
[timeouts]
idle = %q
[admin]
listen = %q
`

func liveBackends(ids ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(ids); i += 2 {
		fmt.Fprintf(&b, "[[backend]]\nid = %q\naddress = %q\n", ids[i], ids[i+1])
	}
	return b.String()
}

// startServe starts lbctl serve with args in a child process, kills it
// when the test ends if it is still running, and waits until it says it is
// serving. The returned buffer holds its log.
func startServe(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := lbctl(t, append([]string{"serve"}, args...)...)
	log := new(syncBuffer)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitLog(t, log, "lbctl serving")
	return cmd, log
}

// waitFor waits in the background for cmd to exit and delivers what its
// Wait returned.
func waitFor(cmd interface{ Wait() error }) <-chan error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done
}

// waitExit waits for the exit that done (see waitFor) delivers and fails
// the test unless the process exits 0 within 20 s; why says what should
// make it exit ("after SIGTERM"), log is its output.
func waitExit(t *testing.T, done <-chan error, why string, log *syncBuffer) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lbctl exited with %v, want 0\n%s", err, log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("lbctl did not exit %s\n%s", why, log.String())
	}
}

// waitLog waits until the child's log holds want, or fails the test.
func waitLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("the log:\n%s", log.String())
		}
	}()
	eventually.True(t, fmt.Sprintf("the log to say %q", want), func() bool {
		return strings.Contains(log.String(), want)
	})
}

// greeting connects to listen from source and returns the backend id the
// connection reached.
func greeting(t *testing.T, listen, source string) string {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c, err := d.Dial("tcp", listen)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", listen, source, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	id, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", source, err)
	}
	return strings.TrimSpace(id)
}

// TestOperateARunningInstance drives a real lbctl serve process as an
// operator would: SIGHUP and the reload command with good, broken and
// restart-only edits, backend states and pins through the operator
// commands, and a storm of SIGHUPs; it keeps serving throughout and exits 0.
func TestOperateARunningInstance(t *testing.T) {
	listen := freeAddr(t)
	a1, a2, a3 := echoBackend(t, "app-01"), echoBackend(t, "app-02"), echoBackend(t, "app-03")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	head := func(idle string) string { return fmt.Sprintf(liveConfig, listen, idle, adminAddr) }
	path := writeConfig(t, head("60s")+liveBackends("app-01", a1, "app-02", a2))
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	cmd, log := startServe(t, "--config", path, "--grace", "2s")

	// Twelve clients, each its own source address, pinned where they land.
	pinned := map[string]string{}
	for i := range 12 {
		src := fmt.Sprintf("127.0.42.%d", i+1)
		pinned[src] = greeting(t, listen, src)
	}

	// Drain app-02 for an hour: its clients stay, new ones go elsewhere.
	out := mustRun(t, "backend", "drain", "app-02", "--for", "1h", "--admin", adminAddr)
	if !strings.Contains(out, "app-02: drain") {
		t.Errorf("drain printed %q", out)
	}
	for src, id := range pinned {
		if got := greeting(t, listen, src); got != id {
			t.Errorf("client %s moved from %s to %s during a drain", src, id, got)
		}
	}
	for i := range 6 {
		if got := greeting(t, listen, fmt.Sprintf("127.0.43.%d", i+1)); got == "app-02" {
			t.Errorf("a new client landed on the draining app-02")
		}
	}
	list := mustRun(t, "backend", "list", "--admin", adminAddr)
	if !strings.Contains(list, "app-02") || !strings.Contains(list, "drain") {
		t.Errorf("backend list:\n%s", list)
	}
	var src string
	for s := range pinned {
		src = s
		break
	}
	if out := mustRun(t, "pin", "get", src, "--admin", adminAddr); !strings.Contains(out, pinned[src]) {
		t.Errorf("pin get %s printed %q, want %s", src, out, pinned[src])
	}
	if out := mustRun(t, "pin", "list", "--backend", pinned[src], "--admin", adminAddr); !strings.Contains(out, src) {
		t.Errorf("pin list --backend %s lacks %s:\n%s", pinned[src], src, out)
	}
	// Forgotten, the client is placed afresh; put back where it was, so
	// that the checks below hold.
	mustRun(t, "pin", "forget", src, "--admin", adminAddr)
	if _, _, err := runLbctl(t, "pin", "get", src, "--admin", adminAddr); err == nil {
		t.Errorf("pin get %s succeeded after pin forget", src)
	}
	pinned[src] = greeting(t, listen, src)

	// Maint: app-02's pinned clients move at their next connection; ready
	// lets new clients come back.
	mustRun(t, "backend", "maint", "app-02", "--admin", adminAddr)
	for s, id := range pinned {
		if got := greeting(t, listen, s); id == "app-02" && got == "app-02" {
			t.Errorf("client %s still reached app-02 in maint", s)
		} else if id != "app-02" && got != id {
			t.Errorf("client %s of %s moved to %s when app-02 went into maint", s, id, got)
		}
		pinned[s] = greeting(t, listen, s)
	}
	mustRun(t, "backend", "ready", "app-02", "--admin", adminAddr)
	if list := mustRun(t, "backend", "list", "--admin", adminAddr); strings.Contains(list, "maint") {
		t.Errorf("backend list after ready:\n%s", list)
	}
	onApp02 := 0
	for i := range 6 {
		src := fmt.Sprintf("127.0.44.%d", i+1)
		if pinned[src] = greeting(t, listen, src); pinned[src] == "app-02" {
			onApp02++
		}
	}
	if onApp02 == 0 {
		t.Fatalf("no new client reached app-02 once it was ready again: %v", pinned)
	}

	// A broken file: refused with its line, still serving the old config.
	write(head("60s") + "[[backend]\n")
	_, errOut, err := runLbctl(t, "reload", "--admin", adminAddr)
	if err == nil || !strings.Contains(errOut+err.Error(), path+":") {
		t.Errorf("reload of a broken file: err %v, output %q; want a failure naming %s and a line", err, errOut, path)
	}
	// A setting that needs a restart: refused, naming it.
	write("mode = \"l7\"\n" + head("60s") + liveBackends("app-01", a1, "app-02", a2))
	_, errOut, err = runLbctl(t, "reload", "--admin", adminAddr)
	if err == nil || !strings.Contains(errOut+err.Error(), "mode") {
		t.Errorf("reload changing mode: err %v, output %q; want it refused naming mode", err, errOut)
	}
	if got := greeting(t, listen, src); got != pinned[src] {
		t.Errorf("after refused reloads client %s went to %s, want %s", src, got, pinned[src])
	}

	// SIGHUP with app-03 added and app-02 removed: app-01's clients stay,
	// app-02's move once and stay moved.
	write(head("60s") + liveBackends("app-01", a1, "app-03", a3))
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, log, "summary=\"reloaded: +app-03 -app-02\"")
	moved := map[string]string{}
	for src, id := range pinned {
		got := greeting(t, listen, src)
		switch {
		case id == "app-01" && got != id:
			t.Errorf("client %s of app-01 moved to %s on reload", src, got)
		case id == "app-02" && got == "app-02":
			t.Errorf("client %s still reached the removed app-02", src)
		}
		moved[src] = got
	}
	for src, id := range moved {
		if got := greeting(t, listen, src); got != id {
			t.Errorf("client %s moved again, from %s to %s", src, id, got)
		}
	}
	if list := mustRun(t, "backend", "list", "--admin", adminAddr); strings.Contains(list, "app-02") || !strings.Contains(list, "app-03") {
		t.Errorf("backend list after reload:\n%s", list)
	}

	// A storm of SIGHUPs: one consistent config, still serving.
	for range 50 {
		cmd.Process.Signal(syscall.SIGHUP)
	}
	if out := mustRun(t, "reload", "--admin", adminAddr); !strings.Contains(out, "reloaded: no change") {
		t.Errorf("reload after the storm printed %q", out)
	}
	if got := greeting(t, listen, src); got != moved[src] {
		t.Errorf("after the SIGHUP storm client %s went to %s, want %s", src, got, moved[src])
	}

	cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, waitFor(cmd), "after SIGTERM", log)
}

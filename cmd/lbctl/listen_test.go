package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
)

// refuses waits until nothing accepts on addr any more, failing the test
// after 10 s.
func refuses(t *testing.T, addr string) {
	t.Helper()
	eventually.True(t, addr+" to refuse clients", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

// TestReloadMovesListen moves a running lbctl from one listen address to
// another: an address it cannot take refuses the reload and changes
// nothing; a free one accepts at once, the old one refuses new clients, a
// client of the old one keeps relaying, and SIGTERM still drains it and
// exits 0.
func TestReloadMovesListen(t *testing.T) {
	a, b := freeAddr(t), freeAddr(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	backendAddr := echoBackend(t, "app-01")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	body := func(listen string) string {
		return fmt.Sprintf(liveConfig, listen, "60s", adminAddr) + liveBackends("app-01", backendAddr)
	}
	path := writeConfig(t, body(a))
	write := func(listen string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body(listen)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd, log := startServe(t, "--config", path, "--grace", "10s")
	old := openFrom(t, a, "127.0.0.1")
	if err := old.echoes(); err != nil {
		t.Fatalf("client of %s: %v", a, err)
	}

	write(taken.Addr().String())
	_, errOut, err := runLbctl(t, "reload", "--admin", adminAddr)
	if err == nil || !strings.Contains(errOut+err.Error(), "address already in use") {
		t.Errorf("reload to a taken address: err %v, output %q; want it refused naming listen", err, errOut)
	}
	if got := greeting(t, a, "127.0.0.1"); got != "app-01" {
		t.Errorf("after the refused move %s answered %q", a, got)
	}

	write(b)
	if out := mustRun(t, "reload", "--admin", adminAddr); !strings.Contains(out, "~listen("+a+"->"+b+")") {
		t.Errorf("reload output %q, want ~listen(%s->%s)", out, a, b)
	}
	if got := greeting(t, b, "127.0.0.1"); got != "app-01" {
		t.Errorf("new listener %s answered %q", b, got)
	}
	refuses(t, a)
	if err := old.echoes(); err != nil {
		t.Errorf("client of the old listener after the move: %v", err)
	}
	if out := mustRun(t, "reload", "--admin", adminAddr); !strings.Contains(out, "reloaded: no change") {
		t.Errorf("second reload printed %q, want no change", out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, log, "shutting down")
	refuses(t, b)
	if err := old.echoes(); err != nil {
		t.Errorf("client of the old listener while draining: %v", err)
	}
	done := waitFor(cmd)
	select {
	case err := <-done:
		t.Fatalf("lbctl exited (%v) before its open connection ended\n%s", err, log.String())
	case <-time.After(50 * time.Millisecond):
	}
	old.c.Close()
	waitExit(t, done, "once its last connection closed", log)
}

// A listen address given with --listen pins the listener: a reload of a
// file that names another one leaves it where it is.
func TestListenFlagPinsTheListener(t *testing.T) {
	a, b := freeAddr(t), freeAddr(t)
	backendAddr := echoBackend(t, "app-01")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	path := writeConfig(t, fmt.Sprintf(liveConfig, b, "60s", adminAddr)+liveBackends("app-01", backendAddr))
	cmd, _ := startServe(t, "--config", path, "--listen", a)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if out := mustRun(t, "reload", "--admin", adminAddr); !strings.Contains(out, "reloaded: no change") {
		t.Errorf("reload printed %q, want no change", out)
	}
	if got := greeting(t, a, "127.0.0.1"); got != "app-01" {
		t.Errorf("%s answered %q after the reload", a, got)
	}
}

package instance

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/loopback"
)

func TestLogAffinityOnlyWhenSomethingMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		table := affinity.New(affinity.Options{})
		defer table.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { logAffinity(ctx, log, table, time.Minute); close(done) }()

		k := table.Key(netip.MustParseAddr("127.0.0.2"))
		table.PinIf(k, "", "app-01")
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if buf.Len() != 0 {
			t.Errorf("logged with no re-pin, eviction or expiry: %s", buf.String())
		}
		table.PinIf(k, "app-01", "app-02")
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := buf.String(); strings.Count(got, "msg=affinity") != 1 || !strings.Contains(got, "repins=1") {
			t.Errorf("after a re-pin logged %q, want one affinity line with repins=1", got)
		}
		cancel()
		<-done
	})
}

// Run serves a config until its context ends, then stops with nothing
// left running; the instance it builds is the admin API's, and an
// instance that Run did not start refuses to upgrade.
func TestRunStopsClean(t *testing.T) {
	// The signal package's one goroutine lives from the first Notify on.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	signal.Stop(sig)
	base := leakcheck.Take(t)
	cfg := config.Default()
	cfg.Listen = loopback.FreeAddr(t)
	cfg.Health.Check = "none"
	cfg.Admin.Listen = "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	cfg.Backends = []config.Backend{{ID: "app-01", Address: "127.0.0.1:1", Weight: 1}}
	pidFile := filepath.Join(t.TempDir(), "lbctl.pid")
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	serving := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: &cfg, Log: slog.New(slog.NewTextHandler(&logs, nil)), Grace: time.Second, PIDFile: pidFile,
			Serving: func(front net.Addr, _ *config.Config) { serving <- front }})
	}()
	var front net.Addr
	select {
	case front = <-serving:
	case err := <-done:
		cancel()
		t.Fatalf("Run = %v before serving\n%s", err, logs.String())
	}
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("PID file = %q, %v; want %d", b, err, os.Getpid())
	}
	c, err := net.Dial("tcp", front.String())
	if err != nil {
		t.Fatalf("dial the front %s: %v", front, err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after its context ended, want nil", err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file after Run: %v, want none", err)
	}
	base.Wait(t, 10*time.Second)

	var out lockedBuffer
	in := newStateInstance(t, "l4", filepath.Join(t.TempDir(), "state"), "1h", &out, "app-01")
	defer in.Close()
	if _, err := in.Upgrade(context.Background()); !errors.Is(err, errNoUpgrade) {
		t.Errorf("Upgrade of an instance Run did not start = %v, want errNoUpgrade", err)
	}
}

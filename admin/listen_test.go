package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/admin/admintest"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// socketPath returns a socket path short enough for sun_path (108 bytes),
// which a test's TempDir may not be.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lbctl-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

func TestListenUnix(t *testing.T) {
	base := leakcheck.Take(t)
	path := socketPath(t)
	addr := "unix:" + path

	ln, err := admin.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %v, want 0600", perm)
	}
	srv := &admin.Server{Instance: admintest.NewInstance()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	client, err := admin.NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := client.Do(context.Background(), "GET", "/api/backends", nil)
	if err != nil {
		t.Fatalf("GET /api/backends over %s: %v", addr, err)
	}
	var list admin.BackendList
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Backends) != 3 {
		t.Errorf("backends over the socket: %v %s", err, raw)
	}

	// A socket something listens on is not taken over.
	if ln2, err := admin.Listen(addr); err == nil {
		ln2.Close()
		t.Error("a second Listen took over a socket in use")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen: %v, want it to say the socket is in use", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Shutdown: %v", err)
	}
	base.Wait(t, 10*time.Second)
}

// A socket file left by an instance that died is removed; a file that is
// not a socket is not.
func TestListenUnixStaleAndForeign(t *testing.T) {
	path := socketPath(t)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the stale socket file is not there: %v", err)
	}
	ln, err := admin.Listen("unix:" + path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()

	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := admin.Listen("unix:" + path); err == nil {
		ln.Close()
		t.Error("Listen replaced a regular file")
	} else if !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}

	for _, addr := range []string{"", "unix:"} {
		if ln, err := admin.Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
}

package instance

import (
	"bufio"
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// newStateInstance builds an instance in mode over the backends ids (that
// nothing dials) with its state in file, logging to out. Close is the
// test's.
func newStateInstance(t *testing.T, mode, file, interval string, out *lockedBuffer, ids ...string) *Instance {
	t.Helper()
	var b strings.Builder
	b.WriteString("mode = \"" + mode + "\"\nlisten = \"127.0.0.1:1\"\n[health]\ncheck = \"none\"\n[affinity]\n")
	b.WriteString("state_file = \"" + file + "\"\nsave_interval = \"" + interval + "\"\n")
	for i, id := range ids {
		b.WriteString("[[backend]]\nid = \"" + id + "\"\naddress = \"127.0.0.1:" + string(rune('2'+i)) + "\"\n")
	}
	cfg, err := config.Parse([]byte(b.String()), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// A saved state comes back at the next start: pins with the backend they
// had, admin states with their drain deadline; what the config no longer
// has is dropped.
func TestStateSurvivesARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pins")
	var out lockedBuffer
	in := newStateInstance(t, "l4", file, "1h", &out, "app-01", "app-02", "app-03")
	tb := in.Table()
	keys := map[string]string{"192.0.2.1": "app-01", "192.0.2.2": "app-02", "2001:db8::7": "app-03", "198.51.100.9": "app-02"}
	for a, id := range keys {
		tb.PinIf(tb.Key(netip.MustParseAddr(a)), "", id)
	}
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	if _, err := in.SetAdminState("app-02", backend.Drain, admin.StateOptions{For: time.Until(deadline)}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.SetAdminState("app-03", backend.Maint, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	_, until := in.Pool().Registry().Get("app-02").Admin()
	if err := in.SaveState(); err != nil {
		t.Fatal(err)
	}
	in.Close()

	again := newStateInstance(t, "l4", file, "1h", &out, "app-01", "app-02", "app-03")
	defer again.Close()
	for a, want := range keys {
		k := again.Table().Key(netip.MustParseAddr(a))
		if id, _, ok := again.Table().Get(k); !ok || id != want {
			t.Errorf("pin of %s after restart: %q (ok %v), want %q", a, id, ok, want)
		}
	}
	if st, u := again.Pool().Registry().Get("app-02").Admin(); st != backend.Drain || !u.Equal(until) {
		t.Errorf("app-02 after restart: %v until %v, want drain until %v", st, u, until)
	}
	if st, _ := again.Pool().Registry().Get("app-03").Admin(); st != backend.Maint {
		t.Errorf("app-03 after restart: %v, want maint", st)
	}
	if st, _ := again.Pool().Registry().Get("app-01").Admin(); st != backend.Ready {
		t.Errorf("app-01 after restart: %v, want ready", st)
	}

	// app-02 leaves the config: its pins and its state are dropped.
	fewer := newStateInstance(t, "l4", file, "1h", &out, "app-01", "app-03")
	defer fewer.Close()
	counts := fewer.Table().CountByBackend()
	if counts["app-02"] != 0 || counts["app-01"] != 1 || counts["app-03"] != 1 {
		t.Errorf("pins by backend after app-02 left: %v, want app-01:1 app-03:1", counts)
	}
	if strings.Contains(out.String(), "level=WARN") {
		t.Errorf("a clean restart logged a warning:\n%s", out.String())
	}
}

// A missing state file is a first start: one Info line, no warning. A
// damaged one is a warning naming the file, and nothing of it is used.
func TestStateFileMissingOrDamaged(t *testing.T) {
	dir := t.TempDir()
	var out lockedBuffer
	in := newStateInstance(t, "l4", filepath.Join(dir, "none"), "1h", &out, "app-01")
	in.Close()
	if strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "no state file yet") {
		t.Errorf("missing state file logged:\n%s", out.String())
	}

	good := filepath.Join(dir, "good")
	in = newStateInstance(t, "l4", good, "1h", &out, "app-01")
	in.Table().PinIf(in.Table().Key(netip.MustParseAddr("192.0.2.1")), "", "app-01")
	in.SetAdminState("app-01", backend.Maint, admin.StateOptions{}, "test")
	if err := in.SaveState(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)-3] ^= 1 // in the pins' checksum
	cases := map[string]struct {
		data      []byte
		wantState backend.AdminState // admin section intact: restored
		warning   string
	}{
		"foreign":        {[]byte("not a state file at all\n"), backend.Ready, "not an lbctl state file"},
		"empty":          {nil, backend.Ready, "not an lbctl state file"},
		"truncated":      {data[:len(data)-10], backend.Maint, "truncated"},
		"admin only cut": {data[:12], backend.Ready, "truncated"},
		"flipped":        {flipped, backend.Maint, "checksum mismatch"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(file, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var out lockedBuffer
			in := newStateInstance(t, "l4", file, "1h", &out, "app-01")
			defer in.Close()
			if n := in.Table().Stats().Size; n != 0 {
				t.Errorf("%d pins restored from a damaged file", n)
			}
			if st, _ := in.Pool().Registry().Get("app-01").Admin(); st != c.wantState {
				t.Errorf("app-01 is %v, want %v", st, c.wantState)
			}
			log := out.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, file) || !strings.Contains(log, c.warning) {
				t.Errorf("log lacks a warning naming %s and %q:\n%s", file, c.warning, log)
			}
		})
	}
}

// The saver writes the file every save_interval and stops with the
// instance; a save that cannot be written is a warning and the old file
// stays.
func TestStateSavedPeriodically(t *testing.T) {
	base := leakcheck.Take(t)
	file := filepath.Join(t.TempDir(), "pins")
	var out lockedBuffer
	in := newStateInstance(t, "l4", file, "10ms", &out, "app-01")
	in.Table().PinIf(in.Table().Key(netip.MustParseAddr("192.0.2.1")), "", "app-01")
	eventually.True(t, "a periodic save", func() bool {
		_, err := os.Stat(file)
		return err == nil
	})
	in.Close()
	base.Wait(t, 10*time.Second)
	entries, err := os.ReadDir(filepath.Dir(file))
	if err != nil || len(entries) != 1 {
		t.Errorf("folder holds %v (%v), want the state file alone", entries, err)
	}
}

func TestStateSaveFailureIsAWarning(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing-folder", "pins")
	var out lockedBuffer
	in := newStateInstance(t, "l4", file, "1h", &out, "app-01")
	defer in.Close()
	if err := in.SaveState(); err == nil {
		t.Fatal("SaveState into a missing folder succeeded")
	}
	if log := out.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "state file not saved") {
		t.Errorf("log lacks the failed save:\n%s", log)
	}
}

// L7 has no table: the file carries the admin states alone, and they come
// back.
func TestStateInL7(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pins")
	var out lockedBuffer
	in := newStateInstance(t, "l7", file, "1h", &out, "app-01", "app-02")
	in.SetAdminState("app-02", backend.Maint, admin.StateOptions{}, "test")
	if err := in.SaveState(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if _, err := readAdmin(br); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Peek(1); err == nil {
		t.Error("an L7 state file holds more than the admin states")
	}
	again := newStateInstance(t, "l7", file, "1h", &out, "app-01", "app-02")
	defer again.Close()
	if st, _ := again.Pool().Registry().Get("app-02").Admin(); st != backend.Maint {
		t.Errorf("app-02 after restart: %v, want maint", st)
	}
}

package instance

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// accessLine is one line of the access log as the tests read it.
type accessLine struct {
	Time     string  `json:"time"`
	Mode     string  `json:"mode"`
	Client   string  `json:"client"`
	Backend  *string `json:"backend"`
	Method   string  `json:"method"`
	Path     string  `json:"path"`
	Status   int     `json:"status"`
	Bytes    int64   `json:"bytes"`
	HeadMS   float64 `json:"head_ms"`
	Cookie   string  `json:"cookie"`
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	Duration float64 `json:"duration_ms"`
}

// readAccessLog returns the lines of the access log at path, waiting until
// there are n of them.
func readAccessLog(t *testing.T, path string, n int) []accessLine {
	t.Helper()
	var lines []accessLine
	eventually.True(t, "the access log's lines", func() bool {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		lines = lines[:0]
		for s := bufio.NewScanner(f); s.Scan(); {
			var l accessLine
			if err := json.Unmarshal(s.Bytes(), &l); err != nil {
				t.Fatalf("access log line %q: %v", s.Text(), err)
			}
			lines = append(lines, l)
		}
		return len(lines) >= n
	})
	if len(lines) != n {
		t.Fatalf("access log has %d lines, want %d", len(lines), n)
	}
	return lines
}

// L7: every request is in the access log once, in order, with its
// status, backend and cookie outcome: new, valid, tampered, and repinned
// when the cookie's backend is in maintenance.
func TestAccessLogL7(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	// app-03 takes no new client; a cookie naming it is sent once it has
	// stopped answering.
	gone := refusedAddress(t)
	cfg := l7TestConfig(t, startStatusBackend(t, "app-01"), startStatusBackend(t, "app-02"), gone)
	cfg.Log.Access = path
	next := cfg
	in, addr := startInstance(t, cfg, &next)

	if _, err := in.SetAdminState("app-03", backend.Drain, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	h := newHTTPClient(t, "127.0.0.2", addr)
	_, first, cookie := h.get(t, "/first", "")
	pinned := strings.TrimPrefix(cookie, "SERVERID=")
	if pinned != first {
		t.Fatalf("cookie %q from %s", cookie, first)
	}
	h.get(t, "/again?x=1", cookie)
	h.get(t, "/404", cookie)
	_, _, fresh := h.get(t, "/forged", "SERVERID=app-99")
	if _, err := in.SetAdminState(pinned, backend.Maint, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	_, moved, repin := h.get(t, "/moved", cookie)
	_, failedOver, _ := h.get(t, "/failed-over", "SERVERID=app-03")

	want := []struct {
		path, backend, cookie string
		status                int
	}{
		{"/first", pinned, "new", 200},
		{"/again?x=1", pinned, "valid", 200},
		{"/404", pinned, "valid", 404},
		{"/forged", strings.TrimPrefix(fresh, "SERVERID="), "tampered", 200},
		{"/moved", moved, "repinned", 200},
		{"/failed-over", failedOver, "repinned", 200},
	}
	if moved == pinned || repin != "SERVERID="+moved {
		t.Fatalf("after maint: answered by %s with cookie %q, want the other backend and its cookie", moved, repin)
	}
	lines := readAccessLog(t, path, len(want))
	for i, w := range want {
		l := lines[i]
		if l.Mode != "l7" || l.Method != "GET" || l.Path != w.path || l.Status != w.status || l.Cookie != w.cookie ||
			l.Backend == nil || *l.Backend != w.backend || !strings.HasPrefix(l.Client, "127.0.0.2:") || l.Bytes <= 0 ||
			l.HeadMS <= 0 || l.Duration < l.HeadMS || l.Time == "" {
			t.Errorf("line %d = %+v (backend %v), want %s %d from %s, cookie %s", i, l, deref(l.Backend), w.path, w.status, w.backend, w.cookie)
		}
	}
	st := in.Stats()
	if st.AccessLog.Written != uint64(len(want)) || st.AccessLog.Dropped != 0 || !st.AccessLog.Enabled {
		t.Errorf("Stats().AccessLog = %+v, want %d written", st.AccessLog, len(want))
	}
	if st.Repins["maint"] != 1 || st.Repins["failed"] != 1 {
		t.Errorf("repins = %v, want maint 1 and failed 1", st.Repins)
	}
	for _, b := range st.Backends {
		if want := map[string]uint64{"app-03": 1}[b.ID]; b.ConnectFailuresTotal != want {
			t.Errorf("%s connect failures = %d, want %d", b.ID, b.ConnectFailuresTotal, want)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// L4: every connection is in the access log once, with its client, its
// backend and the bytes each way; a reload that changes log.access is
// refused.
func TestAccessLogL4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	b := startEchoBackend(t)
	cfg := testConfig(t, b.ln.Addr().String())
	cfg.Log.Access = path
	next := cfg
	in, addr := startInstance(t, cfg, &next)
	const clients = 4
	for i := range clients {
		c := dialFrom(t, "127.0.0."+string(rune('2'+i)), addr)
		echoOnce(t, c)
		echoOnce(t, c)
		c.Close()
	}
	lines := readAccessLog(t, path, clients)
	seen := map[string]bool{}
	for _, l := range lines {
		host, _, _ := strings.Cut(l.Client, ":")
		seen[host] = true
		if l.Mode != "l4" || deref(l.Backend) != "app-01" || l.BytesIn != 10 || l.BytesOut != 10 || l.Duration < 0 {
			t.Errorf("line %+v (backend %s), want app-01 with 10 bytes each way", l, deref(l.Backend))
		}
	}
	if len(seen) != clients {
		t.Errorf("clients in the log: %v, want %d distinct", seen, clients)
	}

	moved := *cfg
	moved.Log.Access = path + ".2"
	next = &moved
	if _, err := in.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "log.access") {
		t.Errorf("reload moving the access log: %v, want a refusal naming log.access", err)
	}
}

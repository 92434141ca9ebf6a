package instance

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/admin/admintest"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/logtest"
)

// lockedBuffer is a log destination the test reads while timers write.
type lockedBuffer = logtest.Buffer

// newTestInstance builds an L4 instance over two backends that nothing
// dials: the admin calls under test touch only the pool and the table.
func newTestInstance(t *testing.T, out *lockedBuffer) *Instance {
	t.Helper()
	cfg, err := config.Parse([]byte(`
listen = "127.0.0.1:1"
[health]
check = "none"
[[backend]]
id = "app-01"
address = "127.0.0.1:2"
[[backend]]
id = "app-02"
address = "127.0.0.1:3"
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// A bounded drain logs the moment it lets go of its pinned clients, once;
// a state set before the deadline replaces it and nothing is logged.
func TestDrainDeadlineIsLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out lockedBuffer
		in := newTestInstance(t, &out)
		defer in.Close()

		st, err := in.SetAdminState("app-02", backend.Drain, admin.StateOptions{For: 10 * time.Minute}, "api")
		if err != nil || st.State != "drain" || !st.DrainUntil.Equal(time.Now().Add(10*time.Minute)) {
			t.Fatalf("SetAdminState = %+v, %v; want drain until now+10m", st, err)
		}
		if _, err := in.SetAdminState("app-01", backend.Drain, admin.StateOptions{For: 5 * time.Minute}, "api"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if _, err := in.SetAdminState("app-01", backend.Ready, admin.StateOptions{}, "api"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		logs := out.String()
		if n := strings.Count(logs, "drain deadline reached"); n != 1 || !strings.Contains(logs, "backend=app-02") {
			t.Errorf("logged %d deadlines, want 1 for app-02:\n%s", n, logs)
		}
		if b := in.Pool().Registry().Get("app-02"); b.KeepsPinned(time.Now()) {
			t.Error("app-02 still keeps its pinned clients after its deadline")
		}
	})
}

func TestSetAdminStateOfAnUnknownBackend(t *testing.T) {
	var out lockedBuffer
	in := newTestInstance(t, &out)
	defer in.Close()
	if _, err := in.SetAdminState("app-09", backend.Maint, admin.StateOptions{}, "api"); !errors.Is(err, admin.ErrUnknownBackend) {
		t.Errorf("SetAdminState(app-09) = %v, want ErrUnknownBackend", err)
	}
}

// A reload that changes admin.token takes effect at the API's next
// request: the old token is refused and the new one answered, over the
// API's own listener.
func TestReloadChangesAdminToken(t *testing.T) {
	var out lockedBuffer
	in := newTestInstance(t, &out)
	defer in.Close()
	in.cfg.Admin = config.Admin{Listen: "127.0.0.1:0", Token: "old-token"}
	next := *in.cfg
	next.Admin.Token = "new-token"
	in.Load = func() (*config.Config, error) { return &next, nil }

	api := &admin.Server{Instance: in, Token: in.cfg.Admin.Token, Logger: slog.New(slog.DiscardHandler)}
	in.API = api
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admintest.Serve(t, api, ln, nil)
	status := func(token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/api/backends", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /api/backends: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("old-token"); got != http.StatusOK {
		t.Fatalf("before the reload the token got %d, want 200", got)
	}
	res, err := in.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload changing admin.token: %v", err)
	}
	if !slices.Contains(res.Changes, "~admin(token changed)") || strings.Contains(res.Summary, "new-token") {
		t.Errorf("reload summary %q, want the token change without the token", res.Summary)
	}
	if got := status("old-token"); got != http.StatusUnauthorized {
		t.Errorf("after the reload the old token got %d, want 401", got)
	}
	if got := status("new-token"); got != http.StatusOK {
		t.Errorf("after the reload the new token got %d, want 200", got)
	}
}

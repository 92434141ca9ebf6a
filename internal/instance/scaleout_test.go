package instance

import (
	"errors"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/admin"
)

// listen_proxy and [cluster] are read at start: a reload that changes them
// is refused, naming them; send_proxy changes in place.
func TestReloadOfScaleOutSettings(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	next := cfg
	in, _ := startInstance(t, cfg, &next)

	changed := *cfg
	changed.ListenProxy = []string{"10.0.0.0/8"}
	changed.Cluster.Bind = "127.0.0.2:7946"
	next = &changed
	_, err := in.Reload(t.Context())
	var rerr *admin.ReloadError
	if !errors.As(err, &rerr) || len(rerr.Messages) != 2 ||
		!strings.HasPrefix(rerr.Messages[0], "listen_proxy: changed") || !strings.HasPrefix(rerr.Messages[1], "cluster: changed") {
		t.Fatalf("Reload = %v, want a ReloadError naming listen_proxy and cluster", err)
	}

	sending := *cfg
	sending.Backends = append(sending.Backends[:0:0], cfg.Backends...)
	sending.Backends[0].SendProxy = "v2"
	next = &sending
	res, err := in.Reload(t.Context())
	if err != nil || !strings.Contains(res.Summary, "send_proxy none->v2") {
		t.Fatalf("Reload = %+v, %v; want send_proxy none->v2 in the summary", res, err)
	}
	if got := in.Pool().Registry().Get(cfg.Backends[0].ID).SendProxy(); got != 2 {
		t.Errorf("SendProxy after the reload = %d, want 2", got)
	}
}

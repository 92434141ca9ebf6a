package instance

import (
	"errors"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/admin"
)

// l4.loops reaches the L4 proxy, and a reload that changes it is refused:
// the loops of a listener are started with it, and the running count must
// never differ silently from the file.
func TestL4LoopsAppliesAtStartOnly(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	cfg.L4.Loops = 3
	next := cfg
	in, _ := startInstance(t, cfg, &next)
	if in.l4.Loops != 3 {
		t.Fatalf("proxy Loops = %d, want l4.loops = 3", in.l4.Loops)
	}
	changed := *cfg
	changed.L4.Loops = 1
	next = &changed
	_, err := in.Reload(t.Context())
	var rerr *admin.ReloadError
	if !errors.As(err, &rerr) || len(rerr.Messages) != 1 || !strings.HasPrefix(rerr.Messages[0], "l4.loops: changed; it takes effect only at a restart") {
		t.Fatalf("Reload = %v, want a ReloadError naming l4.loops", err)
	}
}

package admin_test

import (
	"fmt"
	"testing"

	"github.com/lbctl/lbctl/admin"
)

func TestNAT(t *testing.T) {
	f := startAPI(t, "")
	view := admin.NATView{Mode: "l7", WindowSeconds: 75, TotalSessions: 3000, IPAffinitySkew: 1.8, Capacity: 256,
		ErrorBound: "bound", IPAffinityShares: []admin.NATShare{{Backend: "app-01", Share: 0.6}, {Backend: "app-02", Share: 0.4}}}
	for i := range 30 {
		view.Sources = append(view.Sources, admin.NATSource{Key: fmt.Sprintf("198.51.100.%d", i), Sessions: 412 - i, SessionsError: 12, NAT: true})
	}
	view.Followed = len(view.Sources)
	f.inst.SetNAT(view)

	got := decode[admin.NATView](t, f.call(t, "GET", "/api/nat", ""))
	if len(got.Sources) != 20 || got.Sources[0] != view.Sources[0] || got.IPAffinitySkew != 1.8 || got.TotalSessions != 3000 || len(got.IPAffinityShares) != 2 {
		t.Errorf("GET /api/nat: got %+v, want the first 20 of %+v", got, view)
	}
	if got.ByConnections == nil {
		t.Error("by_connections is null, want []")
	}
	got = decode[admin.NATView](t, f.call(t, "GET", "/api/nat?limit=3", ""))
	if len(got.Sources) != 3 || got.Sources[2].Key != "198.51.100.2" {
		t.Errorf("limit=3: got %+v", got.Sources)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?limit=257", "?top=3"} {
		if a := f.call(t, "GET", "/api/nat"+q, ""); a.status != 400 {
			t.Errorf("GET /api/nat%s: status %d, want 400: %s", q, a.status, a.body)
		}
	}
	if a := f.call(t, "POST", "/api/nat", ""); a.status != 405 {
		t.Errorf("POST /api/nat: status %d, want 405", a.status)
	}
}

package admin_test

import (
	"net/http"
	"strings"
	"testing"
)

// An instance in no cluster answers 404, saying why; the members of a real
// cluster are tested end to end in cmd/lbctl.
func TestClusterWithoutOne(t *testing.T) {
	f := startAPI(t, "")
	a := f.call(t, http.MethodGet, "/api/cluster", "")
	if a.status != http.StatusNotFound || !strings.Contains(a.errorText(t), "[cluster] bind is not set") {
		t.Errorf("GET /api/cluster = %d %s, want 404 naming [cluster] bind", a.status, a.body)
	}
	if a := f.call(t, http.MethodPost, "/api/cluster", ""); a.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/cluster = %d, want 405", a.status)
	}
}

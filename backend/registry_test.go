package backend

import (
	"strings"
	"testing"
)

func TestNewRegistryRejects(t *testing.T) {
	tests := []struct {
		name     string
		backends []*Backend
		wantErr  string
	}{
		{"nil backend", []*Backend{New("a", "127.0.0.1:1", 1), nil}, "backend 1 is nil"},
		{"empty id", []*Backend{New("", "127.0.0.1:1", 1)}, "empty id"},
		{"duplicate id", []*Backend{New("a", "127.0.0.1:1", 1), New("b", "127.0.0.1:2", 1), New("a", "127.0.0.1:3", 1)}, `duplicate id "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRegistry(tt.backends)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewRegistry error = %v, want one containing %q", err, tt.wantErr)
			}
			if r != nil {
				t.Errorf("NewRegistry returned %v with an error, want nil", r)
			}
		})
	}
}

func TestRegistryLookup(t *testing.T) {
	in := []*Backend{New("app-03", "127.0.0.1:3", 1), New("app-01", "127.0.0.1:1", 1), New("app-02", "127.0.0.1:2", 2)}
	r, err := NewRegistry(in)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	in[0] = nil // the registry keeps its own slice

	if got, want := r.Len(), 3; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	var ids []string
	for _, b := range r.All() {
		ids = append(ids, b.ID)
	}
	if got, want := strings.Join(ids, ","), "app-03,app-01,app-02"; got != want {
		t.Errorf("All() ids = %s, want config order %s", got, want)
	}
	for _, id := range []string{"app-01", "app-02", "app-03"} {
		if b := r.Get(id); b == nil || b.ID != id {
			t.Errorf("Get(%q) = %v, want the backend %q", id, b, id)
		}
	}
	if b := r.Get("app-04"); b != nil {
		t.Errorf("Get(unknown) = %v, want nil", b)
	}
	if allocs := testing.AllocsPerRun(100, func() { r.Get("app-02") }); allocs != 0 {
		t.Errorf("Get allocates %v times, want 0", allocs)
	}

	var empty *Registry
	if empty.Get("app-01") != nil || empty.All() != nil || empty.Len() != 0 {
		t.Errorf("nil *Registry is not an empty pool")
	}
}

package evloop

import "testing"

// reg is a registry of backend names, for Targets.
type reg struct{ names map[string]bool }

func (r *reg) Holds(b *string) bool { return r.names[*b] }

// A target is built once per address, built again when the address
// changes, nil for a host name, and forgotten once a new registry no
// longer holds its backend.
func TestTargets(t *testing.T) {
	var ts Targets[*string, *reg]
	a, b := new("app-01"), new("app-02")
	r1 := &reg{map[string]bool{"app-01": true, "app-02": true}}
	ta := ts.Get(a, "127.0.0.1:9001", r1)
	if ta == nil || ta.Address != "127.0.0.1:9001" {
		t.Fatalf("target of an IP literal: %+v", ta)
	}
	if again := ts.Get(a, "127.0.0.1:9001", r1); again != ta {
		t.Error("a second Get built the target again")
	}
	if moved := ts.Get(a, "127.0.0.1:9002", r1); moved == ta || moved.Address != "127.0.0.1:9002" {
		t.Errorf("after an address change: %+v", moved)
	}
	if got := ts.Get(b, "localhost:9003", r1); got != nil {
		t.Errorf("a host name has target %+v, want none", got)
	}
	ts.Get(b, "127.0.0.1:9003", r1)
	r2 := &reg{map[string]bool{"app-01": true}}
	ts.Get(a, "127.0.0.1:9004", r2) // a miss under a new registry prunes
	if _, ok := ts.m[b]; ok {
		t.Error("the target of a backend the new registry dropped is kept")
	}
	if _, ok := ts.m[a]; !ok {
		t.Error("the target of a kept backend was dropped")
	}
}

package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func specs(ss ...string) []Spec {
	var out []Spec
	for _, s := range ss {
		var sp Spec
		if _, err := fmt.Sscanf(s, "%s %s %d", &sp.ID, &sp.Address, &sp.Weight); err != nil {
			panic(err)
		}
		out = append(out, sp)
	}
	return out
}

func ids(r *Registry) []string {
	var out []string
	for _, b := range r.All() {
		out = append(out, b.ID)
	}
	return out
}

func TestPoolReload(t *testing.T) {
	a1, a2, a3 := New("app-01", "127.0.0.1:1", 1), New("app-02", "127.0.0.1:2", 1), New("app-03", "127.0.0.1:3", 1)
	pool := NewPool(mustRegistry(t, a1, a2, a3))
	// Live state that must carry over.
	a1.Acquire()
	a1.SetAdmin(Drain, time.Time{})
	a2.Observe(false, 1, 1)

	_, changed := pool.Watch()
	ch, err := pool.Reload(specs("app-01 127.0.0.1:1 1", "app-04 127.0.0.1:4 1", "app-02 127.0.0.1:2 3"))
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := ch.String(), "+app-04 -app-03 ~app-02(weight 1->3)"; got != want {
		t.Errorf("Changes = %q, want %q", got, want)
	}
	select {
	case <-changed:
	default:
		t.Error("Watch channel still open after a reload that changed the pool")
	}
	r := pool.Registry()
	if got, want := ids(r), []string{"app-01", "app-04", "app-02"}; !slices.Equal(got, want) {
		t.Errorf("pool = %v, want %v", got, want)
	}
	if r.Get("app-01") != a1 || r.Get("app-02") != a2 {
		t.Fatal("kept backends were replaced, want the same *Backend")
	}
	if st, _ := a1.Admin(); a1.Active() != 1 || st != Drain {
		t.Errorf("app-01: active %d, state %v; want 1, drain (carried over)", a1.Active(), st)
	}
	if a2.Up() || a2.Weight() != 3 || a2.weight() != 3 {
		t.Errorf("app-02: up %v weight %d, want down (carried over) with weight 3", a2.Up(), a2.Weight())
	}
	if !a3.Removed() || a3.Available() {
		t.Errorf("app-03: removed %v available %v, want removed and unavailable", a3.Removed(), a3.Available())
	}
	if a4 := r.Get("app-04"); a4 == nil || !a4.Available() {
		t.Errorf("app-04 = %v, want a new available backend (no checks: up at once)", a4)
	}

	ch, err = pool.Reload(specs("app-01 127.0.0.9:1 1", "app-04 127.0.0.1:4 2", "app-02 127.0.0.1:2 3"))
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := ch.String(), "~app-01(address 127.0.0.1:1->127.0.0.9:1) ~app-04(weight 1->2)"; got != want {
		t.Errorf("Changes = %q, want %q", got, want)
	}
	if a1.Address() != "127.0.0.9:1" {
		t.Errorf("app-01 address = %s, want 127.0.0.9:1", a1.Address())
	}
	if got, want := fmt.Sprint(ch.Items()), "[~app-01(address 127.0.0.1:1->127.0.0.9:1) ~app-04(weight 1->2)]"; got != want {
		t.Errorf("Items = %s, want %s", got, want)
	}
}

func TestPoolReloadNoChange(t *testing.T) {
	pool := NewPool(mustRegistry(t, New("a", "127.0.0.1:1", 1), New("b", "127.0.0.1:2", 2)))
	before, changed := pool.Watch()
	ch, err := pool.Reload(specs("a 127.0.0.1:1 1", "b 127.0.0.1:2 2"))
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !ch.Empty() || ch.String() != "no change" {
		t.Errorf("Changes = %q, want no change", ch)
	}
	if pool.Registry() != before {
		t.Error("a reload that changed nothing replaced the registry")
	}
	select {
	case <-changed:
		t.Error("a reload that changed nothing closed the Watch channel")
	default:
	}
	// A new order is a change of the pool, though no backend changed.
	if _, err := pool.Reload(specs("b 127.0.0.1:2 2", "a 127.0.0.1:1 1")); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got, want := ids(pool.Registry()), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("pool = %v, want %v", got, want)
	}
}

func TestPoolReloadRejects(t *testing.T) {
	tests := []struct {
		name    string
		specs   []Spec
		wantErr string
	}{
		{"empty id", specs("x 127.0.0.1:1 1", "_ 127.0.0.1:2 1"), "backend 1 (127.0.0.1:2) has an empty id"},
		{"empty address", []Spec{{ID: "a", Weight: 1}}, "backend 0 (a) has an empty address"},
		{"duplicate id", specs("a 127.0.0.1:1 1", "b 127.0.0.1:2 1", "a 127.0.0.1:3 1"), `backend 2: duplicate id "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.specs {
				if tt.specs[i].ID == "_" {
					tt.specs[i].ID = ""
				}
			}
			a := New("a", "127.0.0.1:1", 1)
			pool := NewPool(mustRegistry(t, a))
			before := pool.Registry()
			_, err := pool.Reload(tt.specs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Reload error = %v, want one containing %q", err, tt.wantErr)
			}
			if pool.Registry() != before || a.Removed() || a.Address() != "127.0.0.1:1" {
				t.Error("a rejected reload changed the pool")
			}
		})
	}
}

func TestPoolJoinDown(t *testing.T) {
	pool := NewPool(nil)
	pool.SetJoinDown(true)
	if _, err := pool.Reload(specs("a 127.0.0.1:1 1")); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	a := pool.Registry().Get("a")
	if a.Up() {
		t.Fatal("a backend joining a checked pool is up, want down until it passes rise checks")
	}
	a.Observe(true, 2, 3)
	if a.Up() {
		t.Fatal("up after one pass, want rise (2) passes")
	}
	a.Observe(true, 2, 3)
	if !a.Available() {
		t.Fatal("down after rise passes, want up")
	}
}

// TestRunFollowsPool checks that Run probes a backend that joins at once,
// brings it up after rise passes, and stops probing one that leaves.
func TestRunFollowsPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := NewPool(mustRegistry(t, New("a", "127.0.0.1:1", 1), New("b", "127.0.0.1:2", 1)))
		pool.SetJoinDown(true)
		var mu sync.Mutex
		probes := make(map[string]int) // guarded by mu
		count := func(id string) int {
			mu.Lock()
			defer mu.Unlock()
			return probes[id]
		}
		p := &Prober{
			Pool: pool,
			Checker: CheckFunc(func(ctx context.Context, b *Backend) error {
				mu.Lock()
				defer mu.Unlock()
				probes[b.ID]++
				return nil
			}),
			Interval: 4 * time.Second,
			Rise:     2,
			Logger:   discardLogger,
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(5 * time.Second)
		synctest.Wait()

		if _, err := pool.Reload(specs("a 127.0.0.1:1 1", "c 127.0.0.1:3 1")); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		synctest.Wait()
		c := pool.Registry().Get("c")
		if got := count("c"); got != 1 {
			t.Errorf("c probed %d times right after joining, want 1 (at once)", got)
		}
		if c.Available() {
			t.Error("c available after one pass, want down until rise (2) passes")
		}
		if got := loopGoroutines(); got != 2 {
			t.Errorf("%d probe loops running, want 2 (a and c; b's stopped)", got)
		}
		bProbes := count("b")
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if !c.Available() {
			t.Error("c not available after rise passes")
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := count("b"); got != bProbes {
			t.Errorf("removed backend b probed %d more times, want none", got-bProbes)
		}

		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if got := loopGoroutines(); got != 0 {
			t.Errorf("%d probe loops still running after Run returned, want 0", got)
		}
	})
}

func TestRoundFollowsPool(t *testing.T) {
	pool := NewPool(mustRegistry(t, New("a", "127.0.0.1:1", 1)))
	var mu sync.Mutex
	var seen []string
	p := &Prober{Pool: pool, Logger: discardLogger, Checker: CheckFunc(func(_ context.Context, b *Backend) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, b.ID)
		return nil
	})}
	if _, err := pool.Reload(specs("b 127.0.0.1:2 1")); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	p.Round(t.Context())
	if want := []string{"b"}; !slices.Equal(seen, want) {
		t.Errorf("Round probed %v, want %v", seen, want)
	}
}

// BenchmarkReload times a reload of a pool of 1,000 backends that keeps 900,
// removes 100, adds 100 and reweights 100, alternating between two configs.
func BenchmarkReload(b *testing.B) {
	const n = 1000
	var cfg [2][]Spec
	for v := range cfg {
		for i := range n {
			id := fmt.Sprintf("app-%04d", i)
			if i >= n-100 && v == 1 {
				id = fmt.Sprintf("new-%04d", i) // removed and added
			}
			w := 1
			if i < 100 && v == 1 {
				w = 2
			}
			cfg[v] = append(cfg[v], Spec{ID: id, Address: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Weight: w})
		}
	}
	pool := NewPool(nil)
	if _, err := pool.Reload(cfg[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ch, err := pool.Reload(cfg[i%2])
		if err != nil || len(ch.Added) != 100 || len(ch.Removed) != 100 || len(ch.Updated) != 100 {
			b.Fatalf("Reload = %v, %v", ch, err)
		}
	}
}

package backend

import (
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// fresh reports whether s keeps for reg a structure that is up to date:
// what the next selection in reg uses.
func fresh(s Selector, reg *Registry) bool {
	switch s := s.(type) {
	case *RoundRobin:
		return s.cycle.current(reg)
	case *LeastConn:
		return s.order.current(reg)
	case *Random2:
		return s.list.current(reg)
	case *Maglev:
		c := s.table.cur.Load()
		return c != nil && c.reg == reg
	}
	return false
}

// settle makes s notice a change of the pool, as any selection in reg
// does, and waits for the rebuild that it starts in the background to land.
func settle(t *testing.T, s Selector, reg *Registry) {
	t.Helper()
	s.Select(reg, 0, nil)
	eventually.True(t, "the rebuild after a change of the pool", func() bool { return fresh(s, reg) })
}

// TestSelectionAfterChangeDoesNotBuild: a selection that finds the
// prepared structure out of date returns at once with the one at hand,
// while a single rebuild runs elsewhere; the next selections use the
// rebuilt one once it lands.
func TestSelectionAfterChangeDoesNotBuild(t *testing.T) {
	reg := registryOf(t, newPool(1, 1, 1))
	var p prepared[int]
	old, rebuilt := 1, 2
	p.prepare(reg, func(*Registry, int) *int { return &old }, 0)

	started := make(chan struct{}, 10)
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	build := func(*Registry, int) *int {
		started <- struct{}{}
		<-release
		return &rebuilt
	}
	markDown(reg.All()[0])
	done := make(chan *int, 1)
	go func() { done <- p.get(reg, build, 0) }()
	var got *int
	eventually.True(t, "the selection after the change to return while the rebuild is held", func() bool {
		select {
		case got = <-done:
			return true
		default:
			return false
		}
	})
	if got != &old {
		t.Fatalf("the selection after the change got %d, want the structure at hand (%d)", *got, old)
	}
	eventually.True(t, "the rebuild to start in the background", func() bool { return len(started) == 1 })
	for range 100 { // while it runs: no wait, no second rebuild
		if v := p.get(reg, build, 0); v != &old {
			t.Fatalf("a selection during the rebuild got %d, want %d", *v, old)
		}
	}
	close(release)
	eventually.True(t, "the rebuilt structure to be in use", func() bool { return p.get(reg, build, 0) == &rebuilt })
	if n := len(started); n != 1 {
		t.Errorf("%d rebuilds for one change, want 1", n)
	}
}

// TestMaglevTableOutlivesHealthChanges: the Maglev table depends on the
// backends' ids and weights alone, so a change of health or admin state
// leaves it as it is (the next eligible entry takes a failed backend's
// clients), and no selection pays for building it again.
func TestMaglevTableOutlivesHealthChanges(t *testing.T) {
	pool := newPool(1, 2, 3, 1)
	reg := registryOf(t, pool)
	m := mustSelector(t, "maglev").(*Maglev)
	m.Prepare(reg)
	table := m.table.cur.Load()
	markDown(pool[1])
	pool[2].SetAdmin(Maint, time.Time{})
	for i := range 1000 {
		if b := m.Select(reg, mix64(uint64(i)), nil); b == nil || !b.Available() {
			t.Fatalf("selection %d chose %v, want an available backend", i, b)
		}
	}
	if m.table.cur.Load() != table {
		t.Error("a change of health rebuilt the Maglev table")
	}
}

// TestReloadPreparesSelectors: Pool.Reload hands out a registry whose
// structures its selectors have already built, so that its first
// selections wait for nothing; with no change, it prepares them for the
// registry in use (a new policy's selector).
func TestReloadPreparesSelectors(t *testing.T) {
	specs := []Spec{{ID: "a", Address: "127.0.0.1:1", Weight: 1}, {ID: "b", Address: "127.0.0.1:2", Weight: 3}}
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := NewPool(nil)
			s := mustSelector(t, policy)
			if _, err := pool.Reload(specs, s); err != nil {
				t.Fatal(err)
			}
			if !fresh(s, pool.Registry()) {
				t.Error("the selector is not ready for the registry the reload published")
			}
			next := mustSelector(t, policy)
			if _, err := pool.Reload(specs, next); err != nil {
				t.Fatal(err)
			}
			if !fresh(next, pool.Registry()) {
				t.Error("a reload without change left the new selector unprepared")
			}
		})
	}
}

// TestBackgroundRebuildsEnd: the goroutine that rebuilds a structure out
// of date ends once it is current.
func TestBackgroundRebuildsEnd(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := weighted(300)
			reg := registryOf(t, pool)
			s := mustSelector(t, policy)
			s.Prepare(reg)
			base := leakcheck.Take(t)
			for i := range 50 {
				markDown(pool[i])
				s.Select(reg, mix64(uint64(i)), nil)
				markUp(pool[i])
				s.Select(reg, mix64(uint64(i)), nil)
			}
			settle(t, s, reg)
			base.Wait(t, eventually.Within)
		})
	}
}

// TestBackendBackFromAllDown: with every backend down, the structure holds
// none; the first selection after one comes back finds it, without waiting
// for the rebuild.
func TestBackendBackFromAllDown(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := newPool(1, 2)
			reg := registryOf(t, pool)
			markDown(pool[0])
			markDown(pool[1])
			s := mustSelector(t, policy)
			if b := s.Select(reg, 1, nil); b != nil {
				t.Fatalf("Select = %s with every backend down, want none", b.ID)
			}
			markUp(pool[1])
			if b := s.Select(reg, 1, nil); b != pool[1] {
				t.Fatalf("Select = %v right after b1 came back, want b1", b)
			}
			settle(t, s, reg)
		})
	}
}

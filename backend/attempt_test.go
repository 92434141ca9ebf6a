package backend

import (
	"strings"
	"testing"
	"time"
)

// steps runs an attempt to its end, failing every backend it offers, and
// returns what it offered: the ids, a pinned one marked with "*".
func steps(a *Attempt) string {
	var got []string
	for b := a.Next(); b != nil; b = a.Next() {
		id := b.ID
		if a.Pinned() {
			id = "*" + id
		}
		got = append(got, id)
		a.Fail(b)
	}
	return strings.Join(got, " ")
}

func TestAttemptOffersThePinFirst(t *testing.T) {
	tests := []struct {
		name  string
		state func(pin *Backend)
		want  string
	}{
		{"ready", func(*Backend) {}, "*b1 b0 b2"},
		{"draining without deadline", func(b *Backend) { b.SetAdmin(Drain, time.Time{}) }, "*b1 b0 b2"},
		{"draining before its deadline", func(b *Backend) { b.SetAdmin(Drain, time.Now().Add(time.Hour)) }, "*b1 b0 b2"},
		{"draining past its deadline", func(b *Backend) { b.SetAdmin(Drain, time.Now().Add(-time.Second)) }, "b0 b2"},
		{"in maintenance", func(b *Backend) { b.SetAdmin(Maint, time.Time{}) }, "b0 b2"},
		{"down", markDown, "b0 b2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(1, 1, 1)
			tt.state(pool[1])
			a := NewAttempt(registryOf(t, pool), new(RoundRobin), 0, pool[1])
			if got := steps(&a); got != tt.want {
				t.Errorf("offered %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAttemptWithoutPin(t *testing.T) {
	pool := newPool(1, 1, 1)
	a := NewAttempt(registryOf(t, pool), new(RoundRobin), 0, nil)
	if got, want := steps(&a), "b0 b1 b2"; got != want {
		t.Errorf("offered %q, want %q", got, want)
	}
}

// TestAttemptStopsAtMaxTries: in a pool where every dial fails, a client
// is refused after MaxTries backends, not after the whole pool.
func TestAttemptStopsAtMaxTries(t *testing.T) {
	pool := weighted(100)
	a := NewAttempt(registryOf(t, pool), new(LeastConn), 0, pool[50])
	got := strings.Fields(steps(&a))
	if len(got) != MaxTries || got[0] != "*b50" {
		t.Errorf("offered %v, want %d backends, the pinned b50 first", got, MaxTries)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[strings.TrimPrefix(id, "*")] {
			t.Errorf("offered %s twice in %v", id, got)
		}
		seen[strings.TrimPrefix(id, "*")] = true
	}
	if a.Tries() != MaxTries {
		t.Errorf("Tries() = %d, want %d", a.Tries(), MaxTries)
	}
}

// TestAttemptFollowsAMovedPin: when another connection moved the client's
// pin, the attempt offers the new pin next, unless it already failed.
func TestAttemptFollowsAMovedPin(t *testing.T) {
	pool := newPool(1, 1, 1, 1)
	a := NewAttempt(registryOf(t, pool), new(RoundRobin), 0, pool[0])
	if b := a.Next(); b != pool[0] || !a.Pinned() {
		t.Fatalf("Next = %v, want the pinned b0", b)
	}
	a.Fail(pool[0])
	a.Follow(pool[3])
	if b := a.Next(); b != pool[3] || !a.Pinned() {
		t.Errorf("after Follow(b3): Next = %v (pinned %v), want b3, pinned", b, a.Pinned())
	}
	a.Follow(pool[0]) // moved back to the one that failed
	if b := a.Next(); b == pool[0] || a.Pinned() {
		t.Errorf("after Follow(b0), which failed: Next = %v (pinned %v), want another, chosen", b, a.Pinned())
	}
}

// TestAttemptKeysMaglev: the attempt passes the client's key to the
// selector, so Maglev places it alike whatever the attempt.
func TestAttemptKeysMaglev(t *testing.T) {
	reg := registryOf(t, weighted(20))
	m, err := NewMaglev(0)
	if err != nil {
		t.Fatal(err)
	}
	for k := range uint64(50) {
		key := mix64(k)
		a := NewAttempt(reg, m, key, nil)
		if got, want := a.Next(), m.Select(reg, key, nil); got != want {
			t.Errorf("key %d: attempt offers %v, Maglev places it on %v", k, got, want)
		}
	}
}

// TestAttemptDoesNotAllocate runs attempts in an Attempt reused as a
// session reuses its own.
func TestAttemptDoesNotAllocate(t *testing.T) {
	pool := weighted(30)
	reg := registryOf(t, pool)
	a := new(Attempt)
	for _, policy := range policies {
		s := mustSelector(t, policy)
		s.Select(reg, 0, nil)
		allocs := testing.AllocsPerRun(200, func() {
			*a = NewAttempt(reg, s, 7, pool[3])
			for b := a.Next(); b != nil; b = a.Next() {
				a.Fail(b)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: an attempt through %d backends allocates %v times, want 0", policy, MaxTries, allocs)
		}
	}
}

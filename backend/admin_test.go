package backend

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestAdminStateNames(t *testing.T) {
	for _, s := range []AdminState{Ready, Drain, Maint} {
		got, err := ParseAdminState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseAdminState(%q) = %v, %v; want %v, nil", s.String(), got, err, s)
		}
	}
	want := map[AdminState]string{Ready: "ready", Drain: "drain", Maint: "maint", 7: "AdminState(7)"}
	for s, name := range want {
		if got := s.String(); got != name {
			t.Errorf("AdminState(%d).String() = %q, want %q", uint8(s), got, name)
		}
	}
	var zero AdminState
	if zero != Ready {
		t.Errorf("zero AdminState = %v, want ready", zero)
	}
	for _, bad := range []string{"", "Ready", "DRAIN", "drained", "maintenance", " ready", "down", "AdminState(7)"} {
		if s, err := ParseAdminState(bad); err == nil {
			t.Errorf("ParseAdminState(%q) = %v, nil; want an error", bad, s)
		} else if want := fmt.Sprintf("%q", bad); !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAdminState(%q) error %q does not name the input", bad, err)
		}
	}
}

// TestAdminStatesDecideWhoIsSent is the table of DESIGN.md: new clients go
// only to up and ready backends; pinned clients stay on up backends that are
// ready or draining before their deadline.
func TestAdminStatesDecideWhoIsSent(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		down          bool
		state         AdminState
		until         time.Time
		available     bool
		keepsPinned   bool
		wantState     AdminState
		wantUntilZero bool
	}{
		{"ready", false, Ready, time.Time{}, true, true, Ready, true},
		{"ready ignores a deadline", false, Ready, now.Add(-time.Hour), true, true, Ready, true},
		{"drain", false, Drain, time.Time{}, false, true, Drain, true},
		{"drain before its deadline", false, Drain, now.Add(time.Minute), false, true, Drain, false},
		{"drain a moment before its deadline", false, Drain, now.Add(4 * time.Nanosecond), false, true, Drain, false},
		{"drain at its deadline", false, Drain, now, false, false, Drain, false},
		{"drain past its deadline", false, Drain, now.Add(-time.Minute), false, false, Drain, false},
		{"drain with a deadline before 1970", false, Drain, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), false, false, Drain, false},
		{"drain with a deadline after 2262", false, Drain, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), false, true, Drain, false},
		{"maint", false, Maint, time.Time{}, false, false, Maint, true},
		{"maint ignores a deadline", false, Maint, now.Add(time.Hour), false, false, Maint, true},
		{"state beyond maint", false, AdminState(3), time.Time{}, false, false, Maint, true},
		{"down ready", true, Ready, time.Time{}, false, false, Ready, true},
		{"down drain", true, Drain, time.Time{}, false, false, Drain, true},
		{"down drain before its deadline", true, Drain, now.Add(time.Minute), false, false, Drain, false},
		{"down maint", true, Maint, time.Time{}, false, false, Maint, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("app-01", "127.0.0.1:1", 1)
			if tt.down {
				markDown(b)
			}
			b.SetAdmin(tt.state, tt.until)
			if got := b.Available(); got != tt.available {
				t.Errorf("Available() = %v, want %v", got, tt.available)
			}
			if got := b.KeepsPinned(now); got != tt.keepsPinned {
				t.Errorf("KeepsPinned(now) = %v, want %v", got, tt.keepsPinned)
			}
			s, until := b.Admin()
			if s != tt.wantState || until.IsZero() != tt.wantUntilZero {
				t.Errorf("Admin() = %v, %v; want %v with zero deadline %v", s, until, tt.wantState, tt.wantUntilZero)
			}
		})
	}
}

func TestAdminReturnsTheDeadline(t *testing.T) {
	b := New("app-01", "127.0.0.1:1", 1)
	if s, until := b.Admin(); s != Ready || !until.IsZero() {
		t.Errorf("new backend Admin() = %v, %v; want ready with no deadline", s, until)
	}
	until := time.Date(2026, 11, 30, 12, 10, 0, 0, time.UTC)
	b.SetAdmin(Drain, until)
	if s, got := b.Admin(); s != Drain || !got.Equal(until) {
		t.Errorf("Admin() = %v, %v; want drain, %v", s, got, until)
	}
	// A deadline off the 4 ns grid is rounded up, never down: the drain
	// does not end before the time the operator gave.
	odd := until.Add(time.Nanosecond)
	b.SetAdmin(Drain, odd)
	if _, got := b.Admin(); got.Before(odd) || got.Sub(odd) >= 4*time.Nanosecond {
		t.Errorf("Admin() deadline %v, want within 4ns at or after %v", got, odd)
	}
	b.SetAdmin(Ready, time.Time{})
	if s, got := b.Admin(); s != Ready || !got.IsZero() {
		t.Errorf("after ready, Admin() = %v, %v; want ready with no deadline", s, got)
	}
}

// TestDrainDeadlinePasses lets the clock run past a drain's deadline: the
// backend keeps its pinned clients up to it and not after, and takes no new
// client throughout.
func TestDrainDeadlinePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New("app-02", "127.0.0.1:1", 1)
		b.SetAdmin(Drain, time.Now().Add(10*time.Minute))
		if !b.KeepsPinned(time.Now()) || b.Available() {
			t.Fatalf("at the start of the drain: KeepsPinned %v, Available %v; want true, false", b.KeepsPinned(time.Now()), b.Available())
		}
		time.Sleep(10*time.Minute - time.Nanosecond)
		if !b.KeepsPinned(time.Now()) || b.Available() {
			t.Fatalf("just before the deadline: KeepsPinned %v, Available %v; want true, false", b.KeepsPinned(time.Now()), b.Available())
		}
		time.Sleep(time.Nanosecond)
		if b.KeepsPinned(time.Now()) || b.Available() {
			t.Fatalf("at the deadline: KeepsPinned %v, Available %v; want false, false", b.KeepsPinned(time.Now()), b.Available())
		}
		time.Sleep(time.Hour)
		if b.KeepsPinned(time.Now()) {
			t.Fatal("an hour past the deadline the backend still keeps pinned clients")
		}
		if s, _ := b.Admin(); s != Drain {
			t.Errorf("past the deadline Admin() state = %v, want drain (only an operator changes it)", s)
		}
	})
}

// TestSetAdminConcurrent changes the admin state while readers decide, for
// the race detector, and checks that a reader never sees the state of one
// change with the deadline of another.
func TestSetAdminConcurrent(t *testing.T) {
	type admin struct {
		s     AdminState
		until time.Time
	}
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	changes := []admin{
		{Ready, time.Time{}},
		{Drain, base.Add(time.Hour)},  // kept at base
		{Drain, base.Add(-time.Hour)}, // not kept at base
		{Maint, time.Time{}},
		{Drain, time.Time{}},
	}
	b := New("app-01", "127.0.0.1:1", 1)
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				c := changes[i%len(changes)]
				b.SetAdmin(c.s, c.until)
			}
		}
	})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for range 20000 {
				s, until := b.Admin()
				known := false
				for _, c := range changes {
					known = known || c.s == s && c.until.Equal(until)
				}
				if !known {
					t.Errorf("Admin() = %v, %v: no change set that pair", s, until)
					return
				}
				b.Available()
				b.KeepsPinned(base)
				b.CountServed()
			}
		})
	}
	readers.Wait()
	close(stop)
	writer.Wait()
	if got := b.Served(); got != 4*20000 {
		t.Errorf("Served() = %d, want %d", got, 4*20000)
	}
}

func TestAdminReadsDoNotAllocate(t *testing.T) {
	b := New("app-01", "127.0.0.1:1", 1)
	b.SetAdmin(Drain, time.Now().Add(time.Hour))
	if allocs := testing.AllocsPerRun(1000, func() {
		if !b.Available() {
			b.KeepsPinned(time.Now())
		}
		b.CountServed()
	}); allocs != 0 {
		t.Errorf("Available, KeepsPinned and CountServed allocate %v times, want 0", allocs)
	}
}

package evloop

import "testing"

type owner struct {
	name  string
	timer Timer[owner]
}

// Timers come due in the order they were armed, a touch moves a timer to
// the back with its new time, a queue without timeout never comes due,
// and Next gives the soonest deadline over every queue.
func TestTimersComeDueInOrder(t *testing.T) {
	var qs Queues[owner]
	a, b, c := &owner{name: "a"}, &owner{name: "b"}, &owner{name: "c"}
	for _, o := range []*owner{a, b, c} {
		o.timer.Owner = o
	}
	q := qs.Of(100)
	q.Arm(&a.timer, 0)
	q.Arm(&b.timer, 10)
	qs.Of(0).Arm(&c.timer, 0)
	if got := qs.Next(); got != 100 {
		t.Errorf("Next = %d, want 100 (a's deadline; c's queue has no timeout)", got)
	}
	q.Touch(&a.timer, 50)
	if got := qs.Next(); got != 110 {
		t.Errorf("Next after touching a = %d, want 110 (b's deadline)", got)
	}
	if o := q.Due(109); o != nil {
		t.Errorf("Due(109) = %s, want none", o.name)
	}
	if o := q.Due(110); o != b {
		t.Errorf("Due(110) = %v, want b", o)
	}
	b.timer.Stop()
	if o := q.Due(1000); o != a {
		t.Errorf("Due(1000) after b stopped = %v, want a", o)
	}
	if o := qs.Of(0).Due(1 << 62); o != nil {
		t.Errorf("a queue without timeout has %s due", o.name)
	}
	a.timer.Stop()
	qs.Prune(100)
	if len(qs) != 2 {
		t.Errorf("%d queues after Prune, want 2 (the kept one and c's)", len(qs))
	}
	c.timer.Stop()
	qs.Prune(100)
	if len(qs) != 1 || qs[0].D != 100 {
		t.Errorf("queues after the last Prune: %d, want the kept one alone", len(qs))
	}
}

// Each visits every owner once, even when the visit stops the timer.
func TestEachMayStopTimers(t *testing.T) {
	var qs Queues[owner]
	var all []*owner
	for i := range 5 {
		o := &owner{name: string(rune('a' + i))}
		o.timer.Owner = o
		qs.Of(int64(1+i%2)).Arm(&o.timer, 0)
		all = append(all, o)
	}
	seen := 0
	qs.Each(func(o *owner) { seen++; o.timer.Stop() })
	if seen != len(all) {
		t.Errorf("Each visited %d owners, want %d", seen, len(all))
	}
	for _, o := range all {
		if o.timer.Armed() {
			t.Errorf("%s still armed", o.name)
		}
	}
}

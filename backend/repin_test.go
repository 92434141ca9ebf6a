package backend

import (
	"testing"
	"time"
)

func TestWhyRepin(t *testing.T) {
	now := time.Now()
	mk := func(edit func(b *Backend)) *Backend {
		b := New("app-01", "127.0.0.1:1", 1)
		edit(b)
		return b
	}
	failed := mk(func(*Backend) {})
	tests := []struct {
		name  string
		from  *Backend
		avoid []*Backend
		want  RepinReason
	}{
		{"no backend of the pool", nil, nil, RepinRemoved},
		{"removed", mk(func(b *Backend) { b.removed.Store(true) }), nil, RepinRemoved},
		{"failed this client", failed, []*Backend{failed}, RepinFailed},
		{"down", mk(func(b *Backend) { b.Observe(false, 1, 1) }), nil, RepinDown},
		{"maint", mk(func(b *Backend) { b.SetAdmin(Maint, time.Time{}) }), nil, RepinMaint},
		{"drain past its deadline", mk(func(b *Backend) { b.SetAdmin(Drain, now.Add(-time.Second)) }), nil, RepinDrainDeadline},
		{"keeps its clients, so it failed", mk(func(b *Backend) { b.SetAdmin(Drain, time.Time{}) }), nil, RepinFailed},
		{"ready and up, so it failed", mk(func(*Backend) {}), nil, RepinFailed},
	}
	for _, tt := range tests {
		if got := WhyRepin(tt.from, tt.avoid); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	var c Repins
	c.Count(RepinMaint)
	c.Count(RepinMaint)
	c.Count(RepinReason(200))
	if c.Load(RepinMaint) != 2 || c.Load(RepinDown) != 0 || c.Load(RepinReason(200)) != 0 {
		t.Errorf("counts: maint %d, down %d", c.Load(RepinMaint), c.Load(RepinDown))
	}
}

func TestCounters(t *testing.T) {
	b := New("app-01", "127.0.0.1:1", 1)
	for _, st := range []int{101, 200, 204, 302, 404, 503, 0, 99, 600} {
		b.CountResponse(st)
	}
	if got := b.Responses(); got != [5]uint64{1, 2, 1, 1, 1} {
		t.Errorf("responses by class = %v", got)
	}
	for _, d := range []time.Duration{0, 500 * time.Microsecond, 501 * time.Microsecond, time.Second, time.Minute} {
		b.ObserveResponseHead(d)
	}
	h := b.ResponseHead()
	if h.Buckets[0] != 2 || h.Buckets[1] != 1 || h.Buckets[10] != 1 || h.Buckets[len(HeadBuckets)] != 1 || h.Count() != 5 {
		t.Errorf("histogram buckets %v", h.Buckets)
	}
	if want := 500*time.Microsecond + 501*time.Microsecond + time.Second + time.Minute; h.Sum != want {
		t.Errorf("sum %v, want %v", h.Sum, want)
	}
}

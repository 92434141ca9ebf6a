package affinity

import (
	"sync"
	"testing"
	"time"
)

// publishing returns a table with default options, closed when the test
// ends, that publishes to a new outbox of the given size.
func publishing(t *testing.T, size int) (*Table, *Outbox) {
	tb := New(Options{})
	t.Cleanup(tb.Close)
	o := NewOutbox(size)
	tb.Publish(o)
	return tb, o
}

func TestPublishReportsPinsAndRepinsOnly(t *testing.T) {
	tb, o := publishing(t, 16)
	k := key(t, "10.0.0.1")
	tb.Pin(k, "a")        // new pin: published
	tb.Lookup(k)          // a hit: not published
	tb.Pin(k, "a")        // same backend: a renewal, not published
	tb.PinIf(k, "x", "b") // lost race: nothing changes
	tb.PinIf(k, "a", "b") // a re-pin: published
	got := o.Take(make([]Change, 0, 16))
	if len(got) != 2 {
		t.Fatalf("took %d changes (%+v), want 2", len(got), got)
	}
	if got[0].Key != k || got[0].ID != "a" || got[1].ID != "b" {
		t.Errorf("changes = %+v, want a then b for %s", got, k)
	}
	if got[1].Stamp <= got[0].Stamp {
		t.Errorf("re-pin stamp %d not above the pin's %d", got[1].Stamp, got[0].Stamp)
	}
	tb.Publish(nil)
	tb.Pin(key(t, "10.0.0.2"), "a")
	if more := o.Take(make([]Change, 0, 16)); len(more) != 0 {
		t.Errorf("after Publish(nil), took %+v", more)
	}
}

func TestOutboxDropsAndCountsWhenFull(t *testing.T) {
	o := NewOutbox(4)
	for i := range 6 {
		o.put(Change{ID: string(rune('a' + i))})
	}
	if got := o.Dropped(); got != 2 {
		t.Errorf("Dropped = %d, want 2", got)
	}
	got := o.Take(make([]Change, 0, 8))
	if len(got) != 4 || got[0].ID != "a" || got[3].ID != "d" {
		t.Errorf("took %+v, want a..d", got)
	}
	o.put(Change{ID: "e"})
	if got := o.Take(make([]Change, 0, 8)); len(got) != 1 || got[0].ID != "e" {
		t.Errorf("after draining, took %+v, want e", got)
	}
}

// Many producers and one consumer: every change put is taken exactly once
// or counted as dropped.
func TestOutboxConcurrent(t *testing.T) {
	o := NewOutbox(64)
	const producers, each = 4, 5000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				o.put(Change{Stamp: int64(p*each + i)})
			}
		})
	}
	done := make(chan struct{})
	seen := map[int64]bool{}
	go func() {
		wg.Wait()
		close(done)
	}()
	buf := make([]Change, 0, 32)
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		buf = o.Take(buf[:0])
		for _, c := range buf {
			if seen[c.Stamp] {
				t.Fatalf("change %d taken twice", c.Stamp)
			}
			seen[c.Stamp] = true
		}
		if finished && len(buf) == 0 {
			break
		}
	}
	if total := uint64(len(seen)) + o.Dropped(); total != producers*each {
		t.Errorf("taken %d + dropped %d = %d, want %d", len(seen), o.Dropped(), total, producers*each)
	}
}

func TestMergeRules(t *testing.T) {
	now := time.Now().UnixNano()
	tests := []struct {
		name            string
		localID         string // "" for no local pin
		merge           string
		stamp           int64 // relative to the local pin's stamp
		want            MergeResult
		wantID          string
		wantStampOffset int64
	}{
		{"no local pin", "", "b", 0, MergeApplied, "b", 0},
		{"later stamp wins", "a", "b", 1, MergeApplied, "b", 1},
		{"earlier stamp loses", "b", "a", -1, MergeIgnored, "b", 0},
		{"equal stamp, greater id wins", "a", "b", 0, MergeApplied, "b", 0},
		{"equal stamp, smaller id loses", "b", "a", 0, MergeIgnored, "b", 0},
		{"same pin renews", "a", "a", 0, MergeRenewed, "a", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(Options{})
			defer tb.Close()
			k := key(t, "10.0.0.1")
			var base int64 = now
			if tt.localID != "" {
				tb.Pin(k, tt.localID)
				_, base = stampOf(tb, k)
			}
			got := tb.Merge(k, tt.merge, base+tt.stamp, time.Now().UnixNano())
			if got != tt.want {
				t.Errorf("Merge = %d, want %d", got, tt.want)
			}
			id, stamp := stampOf(tb, k)
			if id != tt.wantID || stamp != base+tt.wantStampOffset {
				t.Errorf("pin = %s stamped %+d, want %s stamped %+d", id, stamp-base, tt.wantID, tt.wantStampOffset)
			}
		})
	}
}

// The rule converges: whichever order two instances learn two pins of one
// key in, they end with the same one.
func TestMergeConverges(t *testing.T) {
	a, b := New(Options{}), New(Options{})
	defer a.Close()
	defer b.Close()
	k := key(t, "10.0.0.9")
	now := time.Now().UnixNano()
	a.Merge(k, "x", now, now)
	a.Merge(k, "y", now-5, now)
	b.Merge(k, "y", now-5, now)
	b.Merge(k, "x", now, now)
	ida, _ := stampOf(a, k)
	idb, _ := stampOf(b, k)
	if ida != "x" || idb != "x" {
		t.Errorf("a has %s, b has %s; want x on both", ida, idb)
	}
}

// A local re-pin after a merged pin from a clock far ahead still wins: its
// stamp goes above the one it replaces.
func TestLocalRepinBeatsFutureStamp(t *testing.T) {
	tb, o := publishing(t, 4)
	k := key(t, "10.0.0.3")
	future := time.Now().Add(time.Hour).UnixNano()
	tb.Merge(k, "a", future, time.Now().UnixNano())
	if got := o.Take(make([]Change, 0, 4)); len(got) != 0 {
		t.Fatalf("Merge published %+v", got)
	}
	tb.PinIf(k, "a", "b")
	got := o.Take(make([]Change, 0, 4))
	if len(got) != 1 || got[0].Stamp <= future {
		t.Fatalf("re-pin published %+v, want one stamped above %d", got, future)
	}
	other := New(Options{})
	defer other.Close()
	other.Merge(k, "a", future, time.Now().UnixNano())
	if r := other.Merge(k, got[0].ID, got[0].Stamp, got[0].Used); r != MergeApplied {
		t.Errorf("the re-pin merged elsewhere: %d, want applied", r)
	}
}

func TestMergeIgnoresExpiredAndRenewsLastUse(t *testing.T) {
	tb := New(Options{TTL: time.Minute})
	defer tb.Close()
	k := key(t, "10.0.0.4")
	old := time.Now().Add(-2 * time.Minute).UnixNano()
	if r := tb.Merge(k, "a", old, old); r != MergeIgnored {
		t.Errorf("an expired pin merged: %d", r)
	}
	if _, _, ok := tb.Get(k); ok {
		t.Fatal("an expired pin is in the table")
	}
	used := time.Now().Add(-50 * time.Second).UnixNano()
	tb.Merge(k, "a", used, used)
	_, exp1, _ := tb.Get(k)
	tb.Merge(k, "a", used, time.Now().UnixNano())
	_, exp2, _ := tb.Get(k)
	if !exp2.After(exp1.Add(40 * time.Second)) {
		t.Errorf("expiry %v after renewal, was %v: want about 50s later", exp2, exp1)
	}
	// Recency order holds: a later local pin is the shard's newest.
	k2 := key(t, "10.0.0.5")
	tb.Pin(k2, "b")
	s := tb.shard(k)
	s.mu.Lock()
	for e := s.recency.next; e.next != &s.recency; e = e.next {
		if e.used < e.next.used {
			t.Errorf("recency list out of order at %s", e.key)
		}
	}
	s.mu.Unlock()
}

func TestRangeStampedCarriesStamps(t *testing.T) {
	tb := New(Options{})
	defer tb.Close()
	k := key(t, "10.0.0.6")
	tb.Pin(k, "a")
	_, stamp := stampOf(tb, k)
	var got []Stamped
	tb.RangeStamped(func(p Stamped) bool { got = append(got, p); return true })
	if len(got) != 1 || got[0].Key != k || got[0].ID != "a" || got[0].Stamp != stamp || got[0].Used == 0 {
		t.Errorf("RangeStamped = %+v, want %s -> a stamped %d", got, k, stamp)
	}
	hi, lo := k.Halves()
	if KeyFrom(hi, lo) != k {
		t.Error("KeyFrom(Halves) is not the key")
	}
}

// stampOf returns k's id and stamp, as RangeStamped reports them.
func stampOf(tb *Table, k Key) (id string, stamp int64) {
	tb.RangeStamped(func(p Stamped) bool {
		if p.Key == k {
			id, stamp = p.ID, p.Stamp
			return false
		}
		return true
	})
	return id, stamp
}

// BenchmarkPinNewKey pins a new key each time, with and without an outbox
// taking the changes: publishing adds no allocation and no lock.
func BenchmarkPinNewKey(b *testing.B) {
	for _, publish := range []bool{false, true} {
		b.Run(map[bool]string{false: "unpublished", true: "published"}[publish], func(b *testing.B) {
			tb := New(Options{Capacity: 1 << 20})
			defer tb.Close()
			o := NewOutbox(8192)
			if publish {
				tb.Publish(o)
			}
			buf := make([]Change, 0, 8192)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				tb.Pin(KeyFrom(0, uint64(i)), "app-01")
				if i%4096 == 0 {
					buf = o.Take(buf[:0])
				}
			}
		})
	}
}

func TestForgetPublishedAndMerged(t *testing.T) {
	a, b := New(Options{}), New(Options{})
	defer a.Close()
	defer b.Close()
	o := NewOutbox(8)
	a.Publish(o)
	k := key(t, "10.0.0.7")
	a.Pin(k, "x")
	a.Forget(k)
	got := o.Take(make([]Change, 0, 8))
	if len(got) != 2 || got[1].ID != "" || got[1].Stamp <= got[0].Stamp {
		t.Fatalf("changes %+v: want the pin, then a forget stamped above it", got)
	}
	b.Merge(k, got[0].ID, got[0].Stamp, got[0].Used)
	// A later pin elsewhere survives an earlier forget.
	later := New(Options{})
	defer later.Close()
	later.Merge(k, "y", got[1].Stamp+1, time.Now().UnixNano())
	if r := later.Merge(k, "", got[1].Stamp, 0); r != MergeIgnored {
		t.Errorf("an earlier forget removed a later pin: %d", r)
	}
	if r := b.Merge(k, "", got[1].Stamp, 0); r != MergeApplied {
		t.Errorf("the forget merged: %d, want applied", r)
	}
	if _, _, ok := b.Get(k); ok {
		t.Error("the forgotten pin is still on b")
	}
}

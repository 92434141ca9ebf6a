package affinity

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/internal/underload"
)

func TestSetTTLShorterAppliesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Hour})
		defer tb.Close()
		start := time.Now()
		a, b := key(t, "127.0.0.1"), key(t, "127.0.0.2")
		tb.Pin(a, "app-01")
		time.Sleep(20 * time.Minute)
		tb.Pin(b, "app-02")
		time.Sleep(15 * time.Minute)

		tb.SetTTL(30 * time.Minute)
		if got := tb.TTL(); got != 30*time.Minute {
			t.Errorf("TTL() = %v, want 30m", got)
		}
		// a has been idle 35 minutes, past the new TTL: it is gone now,
		// not at its next renewal.
		if id, _, ok := tb.Get(a); ok {
			t.Errorf("Get(a) = %s after a shorter TTL, want expired", id)
		}
		_, exp, ok := tb.Get(b)
		if want := start.Add(50 * time.Minute); !ok || !exp.Equal(want) {
			t.Errorf("Get(b) = %v, %v; want live until %v (last use + 30m)", exp, ok, want)
		}
		// The sweeper clears a without any lookup.
		time.Sleep(maxSweepEvery + time.Millisecond)
		synctest.Wait()
		if st := tb.Stats(); st.Size != 1 || st.Expirations != 1 {
			t.Errorf("after one sweep: Stats = %+v, want size 1 and 1 expiration", st)
		}
		time.Sleep(time.Until(start.Add(50 * time.Minute)))
		if _, ok := tb.Lookup(b); ok {
			t.Error("b still pinned 30m after its last use")
		}
	})
}

func TestSetTTLLongerKeepsExpiredPinsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: 10 * time.Minute})
		tb.Close() // no sweeper: expired pins wait in the table
		start := time.Now()
		a, b := key(t, "127.0.0.1"), key(t, "127.0.0.2")
		tb.Pin(a, "app-01")
		time.Sleep(15 * time.Minute)
		tb.Pin(b, "app-02")

		tb.SetTTL(time.Hour)
		if _, ok := tb.Lookup(a); ok {
			t.Error("a, expired under the old TTL, came back to life under the longer one")
		}
		_, exp, ok := tb.Get(b)
		if want := start.Add(15*time.Minute + time.Hour); !ok || !exp.Equal(want) {
			t.Errorf("Get(b) = %v, %v; want live until %v", exp, ok, want)
		}
		time.Sleep(30 * time.Minute) // past the old TTL, within the new one
		if _, ok := tb.Lookup(b); !ok {
			t.Error("b expired at the old TTL, want the new one")
		}
		// Shortening again, then lengthening, still keeps the dead dead.
		tb.SetTTL(time.Minute)
		tb.SetTTL(2 * time.Hour)
		if _, ok := tb.Lookup(b); !ok {
			t.Error("b expired; its lookup just renewed it")
		}
		if _, ok := tb.Lookup(a); ok {
			t.Error("a came back to life")
		}
	})
}

func TestSweeperPeriodFollowsTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Hour}) // sweeps every maxSweepEvery
		defer tb.Close()
		const ttl = 64 * minSweepEvery // sweeps every minSweepEvery
		tb.SetTTL(ttl)
		tb.Pin(key(t, "127.0.0.1"), "app-01")
		// The pin expires at ttl; the next sweep at the new period is one
		// minSweepEvery later, well before the old period's next round.
		time.Sleep(ttl + minSweepEvery + time.Millisecond)
		synctest.Wait()
		if st := tb.Stats(); st.Size != 0 || st.Expirations != 1 {
			t.Errorf("Stats = %+v, want the expired pin swept at the new period", st)
		}
	})
}

func TestSetCapacityEvictsLeastRecentlyUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{Capacity: 1000}) // one shard: exact LRU
		defer tb.Close()
		for i := range 1000 {
			tb.Pin(v4key(i), "app-01")
			time.Sleep(time.Second)
		}
		tb.SetCapacity(600)
		if got := tb.Capacity(); got != 600 {
			t.Errorf("Capacity() = %d, want 600", got)
		}
		if st := tb.Stats(); st.Size != 600 || st.Evictions != 400 || st.Expirations != 0 {
			t.Errorf("Stats = %+v, want size 600 and 400 evictions", st)
		}
		for i := range 1000 {
			if _, _, ok := tb.Get(v4key(i)); ok != (i >= 400) {
				t.Fatalf("pin %d present = %v; want only the 600 most recent kept", i, ok)
			}
		}
		// The new bound holds for later pins too.
		tb.Pin(v4key(5000), "app-01")
		if st := tb.Stats(); st.Size != 600 || st.Evictions != 401 {
			t.Errorf("after one more pin: Stats = %+v, want size 600 and 401 evictions", st)
		}
	})
}

func TestSetCapacityShardedKeepsTheNewest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const capacity, smaller = 1 << 16, 1 << 12
		tb := New(Options{Capacity: capacity})
		defer tb.Close()
		if len(tb.shards) < 2 {
			t.Fatalf("capacity %d: %d shard(s), want several", capacity, len(tb.shards))
		}
		old := capacity - smaller
		for i := range old {
			tb.Pin(v4key(i), "app-01")
		}
		time.Sleep(time.Minute)
		for i := old; i < capacity; i++ {
			tb.Pin(v4key(i), "app-02")
		}
		tb.SetCapacity(smaller)
		st := tb.Stats()
		if st.Size != smaller || st.Evictions != capacity-smaller {
			t.Errorf("Stats = %+v, want size %d and %d evictions", st, smaller, capacity-smaller)
		}
		newest := tb.CountByBackend()["app-02"]
		if newest < smaller*8/10 {
			t.Errorf("%d of the %d pins kept are of the %d most recent; want most", newest, st.Size, smaller)
		}
	})
}

func TestSetCapacityCountsExpiredAsExpirations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute, Capacity: 10})
		tb.Close() // no sweeper: expired pins wait in the table
		for i := range 4 {
			tb.Pin(v4key(i), "app-01")
		}
		time.Sleep(2 * time.Minute)
		for i := 4; i < 10; i++ {
			tb.Pin(v4key(i), "app-01")
		}
		tb.SetCapacity(5)
		if st := tb.Stats(); st.Size != 5 || st.Expirations != 4 || st.Evictions != 1 {
			t.Errorf("Stats = %+v, want size 5, 4 expirations and 1 eviction", st)
		}
	})
}

func TestResizeUnderConcurrentUse(t *testing.T) {
	tb := New(Options{Capacity: 1 << 14})
	defer tb.Close()
	// Four clients look up and pin without pause while the capacity and
	// the TTL change 50 times, then the capacity shrinks.
	underload.Run(t, "resizes", 4, 51, func(g, i int) error {
		k := v4key(g<<18 | i%(1<<16))
		if _, ok := tb.Lookup(k); !ok {
			tb.Pin(k, "app-01")
		}
		return nil
	}, func(i int) error {
		if i == 50 {
			tb.SetCapacity(1 << 10)
			return nil
		}
		tb.SetCapacity(1<<10 + i*64)
		tb.SetTTL(time.Duration(i+1) * time.Minute)
		return nil
	})
	// Pins made while the last SetCapacity ran evict on their own: the
	// bound holds once everything is quiet.
	if st := tb.Stats(); st.Size > 1<<10 {
		t.Errorf("size %d after shrinking to %d", st.Size, 1<<10)
	}
}

package affinity

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func key(t testing.TB, s string) Key {
	t.Helper()
	return KeyOf(netip.MustParseAddr(s), 32, 128)
}

// Pin points k at backend id with a fresh TTL, whatever k pointed at, and
// reports whether this moved a live entry from another backend (a re-pin).
// The proxies only ever pin conditionally (PinIf); the tests set up pins
// with this.
func (t *Table) Pin(k Key, id string) (repinned bool) {
	cur := t.PinIf(k, "", id) // k's live pin, or id if it had none
	t.PinIf(k, cur, id)
	return cur != id
}

func TestKeyOfMasksPrefix(t *testing.T) {
	tests := []struct {
		addr   string
		v4, v6 int
		want   string
	}{
		{"10.1.2.3", 32, 128, "10.1.2.3"},
		{"10.1.2.3", 24, 128, "10.1.2.0"},
		{"10.1.2.3", 16, 128, "10.1.0.0"},
		{"10.1.2.3", 1, 128, "0.0.0.0"},
		{"::ffff:10.1.2.3", 24, 128, "10.1.2.0"},
		{"2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 32, 56, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 32, 96, "2001:db8:1:2:3:4::"},
		{"2001:db8:1:2:3:4:5:6", 32, 112, "2001:db8:1:2:3:4:5:0"},
		{"fe80::1%eth0", 32, 128, "fe80::1"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/%d", tt.addr, tt.v4, tt.v6), func(t *testing.T) {
			got := KeyOf(netip.MustParseAddr(tt.addr), tt.v4, tt.v6).String()
			if got != tt.want {
				t.Errorf("KeyOf = %s, want %s", got, tt.want)
			}
		})
	}
	if a, b := key(t, "10.0.0.1"), key(t, "::a00:1"); a == b {
		t.Errorf("IPv4 10.0.0.1 and IPv6 ::a00:1 share key %v", a)
	}
}

func TestTableKeyUsesOptionsPrefixes(t *testing.T) {
	tb := New(Options{IPv4Prefix: 24, IPv6Prefix: 64})
	defer tb.Close()
	a := tb.Key(netip.MustParseAddr("192.0.2.10"))
	b := tb.Key(netip.MustParseAddr("192.0.2.200"))
	if a != b {
		t.Errorf("keys of one /24 differ: %v vs %v", a, b)
	}
	c := tb.Key(netip.MustParseAddr("2001:db8::1"))
	d := tb.Key(netip.MustParseAddr("2001:db8::ffff:2"))
	if c != d {
		t.Errorf("keys of one /64 differ: %v vs %v", c, d)
	}
}

func TestPinLookupRepin(t *testing.T) {
	tb := New(Options{})
	defer tb.Close()
	k := key(t, "127.0.0.2")
	if id, ok := tb.Lookup(k); ok {
		t.Fatalf("empty table: Lookup = %q, true", id)
	}
	if tb.Pin(k, "app-01") {
		t.Error("first Pin reported a re-pin")
	}
	if id, ok := tb.Lookup(k); !ok || id != "app-01" {
		t.Errorf("Lookup = %q, %v; want app-01, true", id, ok)
	}
	if tb.Pin(k, "app-01") {
		t.Error("Pin to the same backend reported a re-pin")
	}
	if !tb.Pin(k, "app-02") {
		t.Error("Pin to another backend did not report a re-pin")
	}
	if id, _ := tb.Lookup(k); id != "app-02" {
		t.Errorf("after re-pin Lookup = %q, want app-02", id)
	}
	got := tb.Stats()
	want := Stats{Hits: 2, Misses: 1, Repins: 1, Size: 1}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestSlidingTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute})
		defer tb.Close()
		k := key(t, "127.0.0.2")
		tb.Pin(k, "app-01")
		// Each hit renews the TTL, so the entry outlives its first minute.
		for i := range 5 {
			time.Sleep(50 * time.Second)
			if _, ok := tb.Lookup(k); !ok {
				t.Fatalf("lookup %d after %v: miss, want hit (TTL slides)", i, 50*time.Second*time.Duration(i+1))
			}
		}
		time.Sleep(time.Minute + time.Second)
		if id, ok := tb.Lookup(k); ok {
			t.Fatalf("lookup after a minute idle = %q, want miss", id)
		}
		st := tb.Stats()
		if st.Expirations != 1 || st.Size != 0 {
			t.Errorf("Stats = %+v, want 1 expiration and size 0", st)
		}
	})
}

func TestExpiryWithoutLookupsIsSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		tb := New(Options{TTL: ttl, Capacity: 1 << 20})
		defer tb.Close()
		const n = 5000
		for i := range n {
			tb.Pin(KeyOf(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32, 128), "app-01")
		}
		time.Sleep(ttl - time.Second)
		synctest.Wait()
		if st := tb.Stats(); st.Size != n || st.Expirations != 0 {
			t.Fatalf("before TTL: Stats = %+v, want size %d and no expirations", st, n)
		}
		// The burst expires at once; each sweep round (every ttl/64,
		// at most 100ms) removes at most sweepBudget of it, so the
		// sweeper never holds shards for long.
		time.Sleep(time.Second + 100*time.Millisecond)
		synctest.Wait()
		st := tb.Stats()
		if cleared := n - st.Size; cleared == 0 || cleared > 2*sweepBudget {
			t.Errorf("one round after the TTL, %d of %d entries cleared; want some, at most %d", cleared, n, 2*sweepBudget)
		}
		time.Sleep(time.Duration(n/sweepBudget+1) * 100 * time.Millisecond)
		synctest.Wait()
		if st := tb.Stats(); st.Size != 0 || st.Expirations != n {
			t.Errorf("after enough rounds: Stats = %+v, want size 0 and %d expirations", st, n)
		}
	})
}

func TestEvictingAnExpiredEntryCountsAsExpiration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute, Capacity: 2})
		tb.Close() // no sweeper: expired entries wait in the table
		tb.Pin(key(t, "127.0.0.1"), "app-01")
		tb.Pin(key(t, "127.0.0.2"), "app-01")
		time.Sleep(2 * time.Minute)
		tb.Pin(key(t, "127.0.0.3"), "app-01") // over capacity: the oldest goes
		if st := tb.Stats(); st.Evictions != 0 || st.Expirations != 1 || st.Size != 2 {
			t.Errorf("Stats = %+v, want the expired oldest entry counted as an expiration", st)
		}
	})
}

func TestCapacityEvictsLeastRecentlyUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{Capacity: 3}) // one shard: exact LRU
		defer tb.Close()
		a, b, c, d := key(t, "127.0.0.1"), key(t, "127.0.0.2"), key(t, "127.0.0.3"), key(t, "127.0.0.4")
		tb.Pin(a, "app-01")
		tb.Pin(b, "app-02")
		tb.Pin(c, "app-03")
		// Recency is tracked to ttl/128 (28s for the default hour): a hit
		// after that makes a more recent than b.
		time.Sleep(DefaultTTL/128 + time.Second)
		tb.Lookup(a)
		tb.Pin(d, "app-01")
		if _, ok := tb.Lookup(b); ok {
			t.Error("b survived; it was the least recently used and should be evicted")
		}
		for _, k := range []Key{a, c, d} {
			if _, ok := tb.Lookup(k); !ok {
				t.Errorf("%v evicted, want kept", k)
			}
		}
		if st := tb.Stats(); st.Evictions != 1 || st.Size != 3 {
			t.Errorf("Stats = %+v, want 1 eviction and size 3", st)
		}
	})
}

func TestShardedCapacityIsBounded(t *testing.T) {
	const capacity = 1 << 16
	tb := New(Options{Capacity: capacity})
	defer tb.Close()
	if len(tb.shards) < 2 {
		t.Fatalf("capacity %d: %d shard(s), want several", capacity, len(tb.shards))
	}
	for i := range 2 * capacity {
		tb.Pin(KeyOf(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32, 128), "app-01")
	}
	st := tb.Stats()
	if st.Size > capacity || st.Size < capacity*9/10 {
		t.Errorf("size %d after %d pins, want at most %d and close to it", st.Size, 2*capacity, capacity)
	}
	if int(st.Evictions)+st.Size != 2*capacity {
		t.Errorf("evictions %d + size %d != %d pins", st.Evictions, st.Size, 2*capacity)
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Second})
		tb.Close()
		tb.Close() // idempotent
		// synctest.Test fails if the sweeper goroutine were still alive.
	})
}

func TestConcurrentUse(t *testing.T) {
	tb := New(Options{Capacity: 4096})
	defer tb.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				k := KeyOf(netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)}), 32, 128)
				if _, ok := tb.Lookup(k); !ok {
					tb.Pin(k, "app-01")
				}
			}
		})
	}
	wg.Wait()
	st := tb.Stats()
	if st.Hits+st.Misses != 20000 {
		t.Errorf("hits %d + misses %d != 20000 lookups", st.Hits, st.Misses)
	}
}

func TestPinIfFollowsTheWinner(t *testing.T) {
	tb := New(Options{})
	defer tb.Close()
	k := key(t, "127.0.0.30")
	// Two connections of one new client race: the first pins, the second
	// is told where the first went.
	if got := tb.PinIf(k, "", "app-01"); got != "app-01" {
		t.Fatalf("first PinIf = %q, want app-01", got)
	}
	if got := tb.PinIf(k, "", "app-02"); got != "app-01" {
		t.Fatalf("second PinIf = %q, want the winner app-01", got)
	}
	// Failover: both saw app-01; the first moves the pin, the second
	// follows it instead of moving it again.
	if got := tb.PinIf(k, "app-01", "app-03"); got != "app-03" {
		t.Fatalf("failover PinIf = %q, want app-03", got)
	}
	if got := tb.PinIf(k, "app-01", "app-02"); got != "app-03" {
		t.Fatalf("racing failover PinIf = %q, want app-03", got)
	}
	if st := tb.Stats(); st.Repins != 1 || st.Size != 1 {
		t.Errorf("Stats = %+v, want 1 re-pin and size 1", st)
	}
}

func TestPinIfAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute})
		defer tb.Close()
		k := key(t, "127.0.0.31")
		tb.Pin(k, "app-01")
		time.Sleep(2 * time.Minute)
		// The old pin is gone: a new client's pin is not a re-pin.
		if got := tb.PinIf(k, "", "app-02"); got != "app-02" {
			t.Errorf("PinIf over an expired entry = %q, want app-02", got)
		}
		if st := tb.Stats(); st.Repins != 0 {
			t.Errorf("repins = %d, want 0", st.Repins)
		}
	})
}

package affinity

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		in     string
		v4, v6 int
		want   string
	}{
		{"203.0.113.7", 0, 0, "203.0.113.7"},
		{"203.0.113.7", 24, 0, "203.0.113.0"},
		{"203.0.113.0", 24, 0, "203.0.113.0"},
		{"::ffff:203.0.113.7", 24, 0, "203.0.113.0"},
		{"2001:db8::1", 0, 0, "2001:db8::1"},
		{"2001:db8::1", 24, 64, "2001:db8::"},
		{"2001:db8:0:0:ffff::1", 32, 48, "2001:db8::"},
		{"2001:DB8::1", 0, 0, "2001:db8::1"},
		{"fe80::1%eth0", 0, 0, "fe80::1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tb := New(Options{IPv4Prefix: tt.v4, IPv6Prefix: tt.v6})
			defer tb.Close()
			k, err := tb.ParseKey(tt.in)
			if err != nil {
				t.Fatalf("ParseKey(%q) = %v", tt.in, err)
			}
			if k.String() != tt.want {
				t.Errorf("ParseKey(%q) = %s, want %s", tt.in, k, tt.want)
			}
			// The key a client connects with is the key the operator names.
			if want := tb.Key(netip.MustParseAddr(tt.in)); k != want {
				t.Errorf("ParseKey(%q) = %v, Key of the address = %v", tt.in, k, want)
			}
			// What the table prints parses back to the same key.
			if back, err := tb.ParseKey(k.String()); err != nil || back != k {
				t.Errorf("ParseKey(%q) = %v, %v; want %v", k.String(), back, err, k)
			}
		})
	}
}

func TestParseKeyRejectsBadInput(t *testing.T) {
	tb := New(Options{IPv4Prefix: 24})
	defer tb.Close()
	for _, in := range []string{
		"", "app-01", "203.0.113", "203.0.113.256", "010.0.0.1", "203.0.113.0/24",
		" 203.0.113.7", "203.0.113.7:80", "2001:db8:::1", "[2001:db8::1]",
	} {
		t.Run(in, func(t *testing.T) {
			k, err := tb.ParseKey(in)
			if err == nil {
				t.Fatalf("ParseKey(%q) = %v, nil; want an error", in, k)
			}
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("ParseKey(%q) error %v does not wrap ErrBadKey", in, err)
			}
			if quoted := `"` + in + `"`; !strings.Contains(err.Error(), quoted) {
				t.Errorf("ParseKey(%q) error %q does not name the value as %s", in, err, quoted)
			}
		})
	}
}

// TestGetFollowsTheTablesExpiry checks that Get reports the instant at which
// Lookup would stop finding the pin, through renewals (which happen only
// past the ttl/128 granularity) and up to the expiry itself.
func TestGetFollowsTheTablesExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 128 * time.Second // renewal granularity: one second
		tb := New(Options{TTL: ttl})
		defer tb.Close()
		k := key(t, "127.0.0.2")
		start := time.Now()
		tb.Pin(k, "app-01")
		steps := []struct {
			name   string
			sleep  time.Duration
			lookup bool          // Lookup after the sleep, before Get
			want   time.Duration // expiry after start; 0: no live pin
		}{
			{"just pinned", 0, false, ttl},
			{"lookup within the granularity does not renew", 500 * time.Millisecond, true, ttl},
			{"get alone never renews", 10 * time.Second, false, ttl},
			{"lookup past the granularity renews", 0, true, 10*time.Second + 500*time.Millisecond + ttl},
			{"one instant before expiry", ttl - time.Nanosecond, false, 10*time.Second + 500*time.Millisecond + ttl},
			{"at the expiry instant", time.Nanosecond, false, 0},
		}
		for _, st := range steps {
			time.Sleep(st.sleep)
			if st.lookup {
				tb.Lookup(k)
			}
			id, exp, ok := tb.Get(k)
			if st.want == 0 {
				if ok {
					t.Errorf("%s: Get = %q, %v, true; want no pin", st.name, id, exp)
				}
				if id, hit := tb.Lookup(k); hit {
					t.Errorf("%s: Lookup = %q, true, while Get saw no pin", st.name, id)
				}
				continue
			}
			if !ok || id != "app-01" || !exp.Equal(start.Add(st.want)) {
				t.Errorf("%s: Get = %q, %v, %v; want app-01, %v, true", st.name, id, exp, ok, start.Add(st.want))
			}
		}
		if st := tb.Stats(); st.Hits != 2 || st.Misses != 1 || st.Expirations != 1 {
			t.Errorf("Stats = %+v, want only the lookups counted (2 hits, 1 miss, 1 expiration)", st)
		}
	})
}

func TestForget(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(tb *Table, k Key)
		want    bool
		wantHit bool // Lookup of the key after Forget
		stats   Stats
	}{
		{
			name:  "absent key",
			setup: func(*Table, Key) {},
			stats: Stats{Misses: 1},
		},
		{
			name:  "live pin",
			setup: func(tb *Table, k Key) { tb.Pin(k, "app-01") },
			want:  true,
			stats: Stats{Misses: 1},
		},
		{
			name: "forgotten twice",
			setup: func(tb *Table, k Key) {
				tb.Pin(k, "app-01")
				tb.Forget(k)
			},
			stats: Stats{Misses: 1},
		},
		{
			name: "expired pin awaiting the sweeper",
			setup: func(tb *Table, k Key) {
				tb.Pin(k, "app-01")
				time.Sleep(2 * time.Minute)
			},
			// Left to be counted as the expiration it is, by the Lookup.
			stats: Stats{Misses: 1, Expirations: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tb := New(Options{TTL: time.Minute})
				tb.Close() // no sweeper: expired pins wait in the table
				k, keep := key(t, "127.0.0.2"), key(t, "127.0.0.3")
				tt.setup(tb, k)
				tb.Pin(keep, "app-02")
				if got := tb.Forget(k); got != tt.want {
					t.Errorf("Forget = %v, want %v", got, tt.want)
				}
				if id, ok := tb.Lookup(k); ok != tt.wantHit {
					t.Errorf("Lookup after Forget = %q, %v; want hit %v", id, ok, tt.wantHit)
				}
				if id, _, ok := tb.Get(keep); !ok || id != "app-02" {
					t.Errorf("other key: Get = %q, %v; want app-02, true", id, ok)
				}
				want := tt.stats
				want.Size = 1 // keep
				if got := tb.Stats(); got != want {
					t.Errorf("Stats = %+v, want %+v", got, want)
				}
			})
		})
	}
}

// collect returns every pin Range reports, failing on a key reported twice.
func collect(t *testing.T, tb *Table) map[Key]string {
	t.Helper()
	got := make(map[Key]string)
	tb.Range(func(k Key, id string, _ time.Time) bool {
		if prev, dup := got[k]; dup {
			t.Errorf("Range reported %v twice (%s, %s)", k, prev, id)
		}
		got[k] = id
		return true
	})
	return got
}

func TestRangeReportsLivePinsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute, Capacity: 1 << 16})
		tb.Close() // no sweeper: expired pins wait in the table
		if len(tb.shards) < 2 {
			t.Fatalf("%d shard(s), want several", len(tb.shards))
		}
		// Several batches per shard, half of them expired.
		const n = 10_000
		for i := range n {
			tb.Pin(v4key(i), "old")
		}
		time.Sleep(30 * time.Second)
		want := make(map[Key]string)
		for i := range n / 2 {
			id := []string{"app-01", "app-02", "app-03"}[i%3]
			tb.Pin(v4key(i), id)
			want[v4key(i)] = id
		}
		time.Sleep(40 * time.Second) // "old" pins are past their minute
		start := time.Now()
		got := collect(t, tb)
		if !maps.Equal(got, want) {
			t.Errorf("Range reported %d pins, want the %d live ones", len(got), len(want))
		}
		tb.Range(func(k Key, id string, expires time.Time) bool {
			if _, gotExp, _ := tb.Get(k); !expires.Equal(gotExp) || !expires.After(start) {
				t.Errorf("Range: %v expires %v; Get says %v, now is %v", k, expires, gotExp, start)
				return false
			}
			return true
		})
		if st := tb.Stats(); st.Size != n {
			t.Errorf("Range changed the table: size %d, want %d", st.Size, n)
		}
	})
}

func TestRangeStopsWhenFnSaysSo(t *testing.T) {
	tb := New(Options{Capacity: 1 << 16})
	defer tb.Close()
	for i := range 1000 {
		tb.Pin(v4key(i), "app-01")
	}
	for _, stop := range []int{1, rangeBatch - 1, rangeBatch, rangeBatch + 1, 999, 1000} {
		calls := 0
		tb.Range(func(Key, string, time.Time) bool {
			calls++
			return calls < stop
		})
		if calls != stop {
			t.Errorf("fn returning false at call %d: Range made %d calls", stop, calls)
		}
	}
}

// TestRangeCallsFnWithoutLock lets fn take the lock of the shard being
// visited and change the table: Range must hold no lock while fn runs.
func TestRangeCallsFnWithoutLock(t *testing.T) {
	tb := New(Options{Capacity: 1000}) // one shard: several batches of it
	defer tb.Close()
	for i := range 1000 {
		tb.Pin(v4key(i), "app-01")
	}
	visited := 0
	tb.Range(func(k Key, _ string, _ time.Time) bool {
		s := tb.shard(k)
		if !s.mu.TryLock() {
			t.Errorf("fn called with the lock of %v's shard held", k)
			return false
		}
		s.mu.Unlock()
		if !tb.Forget(k) {
			t.Errorf("Forget(%v) in fn = false", k)
		}
		visited++
		return true
	})
	if st := tb.Stats(); visited != 1000 || st.Size != 0 {
		t.Errorf("visited %d, size %d after forgetting every pin in fn; want 1000, 0", visited, st.Size)
	}
}

func TestRangeAllocatesNothing(t *testing.T) {
	tb := New(Options{Capacity: 1 << 16})
	defer tb.Close()
	for i := range 10_000 {
		tb.Pin(v4key(i), "app-01")
	}
	n := 0
	fn := func(Key, string, time.Time) bool { n++; return true }
	if allocs := testing.AllocsPerRun(5, func() { tb.Range(fn) }); allocs != 0 {
		t.Errorf("Range over 10000 pins: %v allocations, want 0", allocs)
	}
	if n != 6*10_000 { // AllocsPerRun runs once more to warm up
		t.Errorf("fn called %d times, want %d", n, 6*10_000)
	}
}

// TestRangeUnderConcurrentUse ranges over a table whose shards are being
// pinned into (growing their maps), looked up, re-pinned and forgotten by
// other goroutines: every pin present throughout is reported exactly once,
// with its backend.
func TestRangeUnderConcurrentUse(t *testing.T) {
	tb := New(Options{Capacity: 1 << 14})
	defer tb.Close()
	const stable = 2000
	for i := range stable {
		tb.Pin(v4key(i), "stable")
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	for g := range 3 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				churn := v4key(1<<16 + g<<12 + i%4096)
				switch i % 4 {
				case 0, 1:
					tb.Pin(churn, "churn")
				case 2:
					tb.Forget(churn)
				}
				if _, ok := tb.Lookup(v4key(i % stable)); !ok {
					t.Errorf("stable pin %d lost", i%stable)
					return
				}
			}
		})
	}
	for range 30 {
		got := collect(t, tb)
		for i := range stable {
			if id := got[v4key(i)]; id != "stable" {
				t.Fatalf("Range under concurrent use: stable pin %d reported as %q", i, id)
			}
		}
		for k, id := range got {
			if id != "stable" && id != "churn" {
				t.Fatalf("Range reported %v -> %q, never pinned", k, id)
			}
		}
	}
}

func TestCountByBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Minute, Capacity: 4})
		defer tb.Close()
		a, b, c, d, e := key(t, "127.0.0.1"), key(t, "127.0.0.2"), key(t, "127.0.0.3"), key(t, "127.0.0.4"), key(t, "127.0.0.5")
		steps := []struct {
			name string
			do   func()
			want map[string]int
		}{
			{"empty", func() {}, map[string]int{}},
			{"pins", func() {
				tb.Pin(a, "app-01")
				tb.Pin(b, "app-01")
				tb.Pin(c, "app-02")
			}, map[string]int{"app-01": 2, "app-02": 1}},
			{"same backend again", func() { tb.Pin(a, "app-01") }, map[string]int{"app-01": 2, "app-02": 1}},
			{"re-pin", func() { tb.Pin(b, "app-03") }, map[string]int{"app-01": 1, "app-02": 1, "app-03": 1}},
			{"forget", func() { tb.Forget(c) }, map[string]int{"app-01": 1, "app-03": 1}},
			{"eviction", func() {
				time.Sleep(DefaultTTL / 1000) // a and b older than what follows
				tb.Pin(c, "app-02")
				tb.Pin(d, "app-02")
				tb.Pin(e, "app-02") // past capacity 4: a, the oldest, goes
			}, map[string]int{"app-02": 3, "app-03": 1}},
			{"the first pins expire", func() {
				time.Sleep(time.Minute - DefaultTTL/1000)
			}, map[string]int{"app-02": 3}},
			{"expiry", func() {
				time.Sleep(time.Minute)
				synctest.Wait()
			}, map[string]int{}},
		}
		for _, st := range steps {
			st.do()
			if got := tb.CountByBackend(); !maps.Equal(got, st.want) {
				t.Errorf("after %s: CountByBackend = %v, want %v", st.name, got, st.want)
			}
		}
		if st := tb.Stats(); st.Evictions != 1 || st.Size != 0 {
			t.Errorf("Stats = %+v, want 1 eviction and an empty table", st)
		}
	})
}

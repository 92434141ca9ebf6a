package affinity

import (
	"bufio"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func v4key(i int) Key {
	return KeyOf(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32, 128)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkLookupParallel1M measures hits on a table of one million entries
// from every core at once, and the heap the entries take.
func BenchmarkLookupParallel1M(b *testing.B) {
	const n = 1 << 20
	before := heapInUse()
	tb := New(Options{Capacity: n})
	defer tb.Close()
	ids := []string{"app-01", "app-02", "app-03"}
	for i := range n {
		tb.Pin(v4key(i), ids[i%3])
	}
	perEntry := float64(heapInUse()-before) / n
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		for pb.Next() {
			if _, ok := tb.Lookup(v4key(r.IntN(n))); !ok {
				b.Error("miss on a full table")
				return
			}
		}
	})
	b.ReportMetric(perEntry, "B/entry")
}

// BenchmarkPinParallel measures new pins, with capacity evictions, from every
// core at once.
func BenchmarkPinParallel(b *testing.B) {
	tb := New(Options{Capacity: 1 << 16})
	defer tb.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		for pb.Next() {
			tb.Pin(v4key(r.IntN(1<<22)), "app-01")
		}
	})
}

// BenchmarkWorstLookup pins 100k entries at one instant, then looks up
// other keys from the moment all of them expire together until the sweeper
// has removed them all, and reports the slowest single lookup seen. The
// "quiet" case runs the same loop as long with nothing expiring, so that
// scheduler noise can be told apart from the table.
func BenchmarkWorstLookup(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"MassExpiry", 200 * time.Millisecond}, {"Quiet", time.Hour}} {
		b.Run(bc.name, func(b *testing.B) {
			const burst = 100_000
			var worst time.Duration
			for range b.N {
				tb := New(Options{TTL: bc.ttl, Capacity: 1 << 20})
				live := make([]Key, 1024)
				for i := range live {
					live[i] = KeyOf(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), 32, 128)
				}
				for i := range burst {
					tb.Pin(v4key(i), "app-01")
				}
				// 100k entries at 256 per 10ms round take about 4s.
				start := time.Now()
				swept := func() bool { return tb.Stats().Size <= len(live) }
				for i := 0; time.Since(start) < 5*time.Second; i++ {
					if i%4096 == 0 && bc.ttl < time.Second && swept() {
						break
					}
					k := live[i%len(live)]
					t0 := time.Now()
					if _, ok := tb.Lookup(k); !ok {
						tb.Pin(k, "app-02")
					}
					worst = max(worst, time.Since(t0))
				}
				if st := tb.Stats(); bc.ttl < time.Second && st.Expirations < burst {
					b.Errorf("expirations = %d, want at least %d", st.Expirations, burst)
				}
				tb.Close()
			}
			b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
		})
	}
}

// BenchmarkSweepBatch measures one lock hold of the sweeper: removing a full
// batch of expired entries from a shard. This bounds how long a lookup can
// wait behind a mass expiry, however many entries expire together.
func BenchmarkSweepBatch(b *testing.B) {
	tb := New(Options{TTL: time.Hour, Capacity: 1 << 20})
	defer tb.Close()
	s := &tb.shards[0]
	past := time.Now().Add(-2 * time.Hour).UnixNano()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s.mu.Lock()
		for j := range sweepBatch {
			s.insert(v4key(i*sweepBatch+j), pin{id: "app-01", used: past})
		}
		s.mu.Unlock()
		tb.size.Add(sweepBatch)
		b.StartTimer()
		s.expire(tb.horizon(time.Now().UnixNano()), &tb.size, sweepBatch)
	}
}

// BenchmarkCountByBackend1M measures one count of the pinned clients of
// every backend over a table of one million pins, as a backend listing or
// a metrics scrape asks for it.
func BenchmarkCountByBackend1M(b *testing.B) {
	const n = 1 << 20
	tb := New(Options{Capacity: n})
	defer tb.Close()
	ids := []string{"app-01", "app-02", "app-03"}
	for i := range n {
		tb.Pin(v4key(i), ids[i%3])
	}
	b.ReportAllocs()
	for b.Loop() {
		if c := tb.CountByBackend(); c["app-01"]+c["app-02"]+c["app-03"] != n {
			b.Fatalf("counts %v, want %d pins", c, n)
		}
	}
}

// BenchmarkLookupDuringRange measures lookups from every core while another
// goroutine ranges without pause over the same table ("SameTable") or over
// another table of the same size ("OtherTable"), and reports the slowest
// single lookup seen. Both cases load the machine alike; only the first
// shares shard locks with the lookups, so the difference between them is
// what Range's lock holds cost a lookup (on a busy machine the worst case
// of both is mostly the scheduler's).
func BenchmarkLookupDuringRange(b *testing.B) {
	const n = 1 << 20
	build := func() *Table {
		tb := New(Options{Capacity: n})
		for i := range n {
			tb.Pin(v4key(i), "app-01")
		}
		return tb
	}
	tb, other := build(), build()
	defer tb.Close()
	defer other.Close()
	for _, bc := range []struct {
		name   string
		ranged *Table
	}{{"SameTable", tb}, {"OtherTable", other}} {
		b.Run(bc.name, func(b *testing.B) {
			stop := make(chan struct{})
			ranging := make(chan struct{})
			go func() {
				defer close(ranging)
				for {
					select {
					case <-stop:
						return
					default:
						bc.ranged.Range(func(Key, string, time.Time) bool { return true })
					}
				}
			}()
			var mu sync.Mutex
			var worst time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
				var w time.Duration
				for pb.Next() {
					t0 := time.Now()
					if _, ok := tb.Lookup(v4key(r.IntN(n))); !ok {
						b.Error("miss on a full table")
						return
					}
					w = max(w, time.Since(t0))
				}
				mu.Lock()
				worst = max(worst, w)
				mu.Unlock()
			})
			b.StopTimer()
			close(stop)
			<-ranging
			b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
		})
	}
}

// BenchmarkLookupDuringSave1M saves a table of a million pins to a file,
// as the state file is written, while goroutines look up pins of the same
// table, and reports how long the slowest lookups took during the saves
// ("Saving"): the slowest one, and how many in a million took over 1ms.
// "Quiet" runs the same lookups as long with no save, so that the
// scheduler's share can be told apart from the save's: on a busy machine a
// thread can lose its CPU for tens of milliseconds at any point, and a
// lookup then waits as long whether or not it held a lock. The lookups
// leave one core to the save, as the event loops of a busy instance leave
// one to its saver at best.
func BenchmarkLookupDuringSave1M(b *testing.B) {
	const n = 1 << 20
	tb := New(Options{Capacity: n})
	defer tb.Close()
	for i := range n {
		tb.Pin(v4key(i), "app-0"+strconv.Itoa(i%8))
	}
	path := filepath.Join(b.TempDir(), "pins")
	lookers := max(runtime.GOMAXPROCS(0)-1, 1)
	// lookups is what one looking goroutine saw.
	type lookups struct {
		count, slow int // all of them, and those over 1ms
		worst       time.Duration
	}
	var perSave time.Duration
	for _, bc := range []struct {
		name string
		save bool
	}{{"Saving", true}, {"Quiet", false}} {
		b.Run(bc.name, func(b *testing.B) {
			stop := make(chan struct{})
			seen := make(chan lookups)
			for range lookers {
				go func() {
					r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
					var l lookups
					for {
						select {
						case <-stop:
							seen <- l
							return
						default:
						}
						t0 := time.Now()
						tb.Lookup(v4key(r.IntN(n)))
						d := time.Since(t0)
						l.count++
						if d > time.Millisecond {
							l.slow++
						}
						l.worst = max(l.worst, d)
					}
				}()
			}
			start, saves := time.Now(), 0
			for b.Loop() {
				if !bc.save {
					time.Sleep(perSave)
					continue
				}
				saves++
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				bw := bufio.NewWriterSize(f, 64<<10)
				if _, err := tb.Save(bw); err != nil {
					b.Fatal(err)
				}
				if err := bw.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
			if bc.save {
				perSave = time.Since(start) / time.Duration(saves)
			}
			close(stop)
			var all lookups
			for range lookers {
				l := <-seen
				all.count += l.count
				all.slow += l.slow
				all.worst = max(all.worst, l.worst)
			}
			b.ReportMetric(float64(all.worst.Microseconds()), "worst-µs")
			b.ReportMetric(float64(all.slow)*1e6/float64(max(all.count, 1)), "over-1ms/M")
		})
	}
}

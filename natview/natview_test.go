package natview

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
)

func TestHLLWithinErrorBound(t *testing.T) {
	for _, n := range []int{0, 1, 10, 500, 3000, 20000, 200000} {
		var s HLL
		for i := range n {
			s.Add(mix(uint64(i) + 0x1234))
			s.Add(mix(uint64(i) + 0x1234)) // twice: distinct items count once
		}
		got := s.Estimate()
		bound := math.Ceil(3 * HLLStdError * float64(n))
		if math.Abs(float64(got-n)) > bound {
			t.Errorf("n=%d: estimate %d, want within %.0f", n, got, bound)
		}
	}
}

func TestHLLMerge(t *testing.T) {
	var a, b HLL
	for i := range 1000 {
		a.Add(mix(uint64(i)))
		b.Add(mix(uint64(i + 500)))
	}
	a.Merge(&b)
	if got := a.Estimate(); math.Abs(float64(got-1500)) > 3*HLLStdError*1500 {
		t.Errorf("merged estimate %d, want about 1500", got)
	}
}

// clock is an injected clock that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func gw(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }

func key(a netip.Addr) affinity.Key { return affinity.KeyOf(a, 32, 128) }

// TestSpaceSavingBound sends a Zipf stream of sessions over many more
// sources than the tracker follows: every source with more events than
// the bound is followed, no count is under the truth, and none is over it
// by more than its error.
func TestSpaceSavingBound(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000*60, 0)}
	tr := &Tracker{Now: c.now}
	rng := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(rng, 1.2, 1, 5000)
	truth := map[netip.Addr]uint64{}
	port := uint16(0)
	for range 60_000 {
		a := gw(int(z.Uint64()))
		port++
		tr.Session(netip.AddrPortFrom(a, port))
		truth[a]++
	}
	snap := tr.Snapshot()
	if snap.TotalEvents != 60_000 {
		t.Fatalf("total events %d, want 60000", snap.TotalEvents)
	}
	followed := map[netip.Addr]Source{}
	for _, s := range snap.Sources {
		followed[s.Key.Addr()] = s
		want := truth[s.Key.Addr()]
		if s.Events < want || s.Events-s.EventsError > want {
			t.Errorf("%s: %d events (error %d), truth %d", s.Key, s.Events, s.EventsError, want)
		}
		if s.EventsError > snap.MaxError {
			t.Errorf("%s: error %d over the bound %d", s.Key, s.EventsError, snap.MaxError)
		}
	}
	for a, n := range truth {
		if _, ok := followed[a]; !ok && n > snap.MaxError {
			t.Errorf("%s sent %d events, over the bound %d, and is not followed", a, n, snap.MaxError)
		}
	}
	top := snap.Sources[0]
	if top.Key.Addr() != gw(0) {
		t.Fatalf("top source %s, want %s", top.Key, gw(0))
	}
	// Every event of the top source came on its own port: its sessions
	// are its events.
	if d := math.Abs(float64(top.Sessions) - float64(truth[gw(0)])); d > float64(top.SessionsError) {
		t.Errorf("top source: %d sessions ± %d, truth %d", top.Sessions, top.SessionsError, truth[gw(0)])
	}
	if d := math.Abs(float64(snap.TotalSessions) - 60_000); d > 3*HLLStdError*60_000 {
		t.Errorf("total sessions %d, want about 60000", snap.TotalSessions)
	}
	if len(snap.Sources) > Capacity {
		t.Errorf("%d sources followed, capacity %d", len(snap.Sources), Capacity)
	}
}

// TestSessionsDistinct counts a connection's repeated cookieless requests
// once, and masks addresses with the prefix.
func TestSessionsDistinct(t *testing.T) {
	tr := &Tracker{V4Prefix: 24}
	for i := range 40 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 4)}), uint16(1000+i%10))
		tr.Session(src)
		tr.Session(src)
	}
	snap := tr.Snapshot()
	if len(snap.Sources) != 1 {
		t.Fatalf("%d sources, want 1: %+v", len(snap.Sources), snap.Sources)
	}
	s := snap.Sources[0]
	// 4 addresses by 10 ports, repeating every 20 requests: 20 sessions.
	if s.Key.String() != "198.51.100.0" || s.Events != 80 || math.Abs(float64(s.Sessions-20)) > float64(s.SessionsError) {
		t.Errorf("got %s with %d events and %d sessions, want 198.51.100.0, 80, 20", s.Key, s.Events, s.Sessions)
	}
}

// TestWindow drops what is more than two epochs old.
func TestWindow(t *testing.T) {
	c := &clock{t: time.Unix(600*60, 0)}
	tr := &Tracker{Now: c.now}
	a := netip.MustParseAddr("203.0.113.7")
	for i := range 100 {
		tr.Session(netip.AddrPortFrom(a, uint16(i)))
	}
	c.t = c.t.Add(Epoch)
	for i := range 50 {
		tr.Session(netip.AddrPortFrom(a, uint16(1000+i)))
	}
	near := func(got, want int) bool { return math.Abs(float64(got-want)) <= math.Ceil(3*HLLStdError*float64(want)) }
	if s := tr.Snapshot(); s.Sources[0].Events != 150 || !near(s.Sources[0].Sessions, 150) || s.Window != Epoch {
		t.Errorf("one epoch on: %d events, %d sessions over %v; want 150, 150, %v", s.Sources[0].Events, s.Sources[0].Sessions, s.Window, Epoch)
	}
	c.t = c.t.Add(Epoch)
	if s := tr.Snapshot(); s.Sources[0].Events != 50 || !near(s.Sources[0].Sessions, 50) || !near(s.TotalSessions, 50) {
		t.Errorf("two epochs on: %+v; want 50 events and sessions", s)
	}
	c.t = c.t.Add(Epoch)
	if s := tr.Snapshot(); len(s.Sources) != 0 || s.TotalEvents != 0 {
		t.Errorf("three epochs on: %+v; want nothing", s)
	}
}

// TestActive follows open connections of a key, and keeps a key with open
// connections through the window's end.
func TestActive(t *testing.T) {
	c := &clock{t: time.Unix(600*60, 0)}
	tr := &Tracker{Now: c.now}
	k := key(netip.MustParseAddr("192.0.2.1"))
	for i := range 10 {
		tr.Opened(k, uint16(40000+i))
	}
	for range 4 {
		tr.Closed(k)
	}
	tr.Closed(key(netip.MustParseAddr("192.0.2.2"))) // never opened: ignored
	c.t = c.t.Add(3 * Epoch)
	s := tr.Snapshot()
	if len(s.Sources) != 1 || s.Sources[0].Active != 6 || s.Sources[0].Events != 0 {
		t.Fatalf("got %+v, want 192.0.2.1 with 6 open and no event in the window", s.Sources)
	}
	for range 10 {
		tr.Closed(k)
	}
	if s := tr.Snapshot(); s.Sources[0].Active != 0 {
		t.Errorf("after closing all: %d active, want 0", s.Sources[0].Active)
	}
}

func TestNilTrackerCountsNothing(t *testing.T) {
	var tr *Tracker
	tr.Session(netip.MustParseAddrPort("192.0.2.1:80"))
	tr.Opened(affinity.Key{}, 1)
	tr.Closed(affinity.Key{})
	if s := tr.Snapshot(); len(s.Sources) != 0 {
		t.Errorf("nil tracker: %+v", s)
	}
}

func TestEventsDoNotAllocate(t *testing.T) {
	tr := new(Tracker)
	i := 0
	src := func() netip.AddrPort {
		i++
		return netip.AddrPortFrom(gw(i%1000), uint16(i))
	}
	tr.Session(src())
	if n := testing.AllocsPerRun(1000, func() { tr.Session(src()) }); n != 0 {
		t.Errorf("Session: %v allocs, want 0", n)
	}
	k := key(gw(1))
	if n := testing.AllocsPerRun(1000, func() { tr.Opened(k, 1); tr.Closed(k) }); n != 0 {
		t.Errorf("Opened/Closed: %v allocs, want 0", n)
	}
}

func TestIPAffinitySkew(t *testing.T) {
	src := func(first uint64, w int) Source { return Source{First: first, Sessions: w} }
	weight := func(s Source) float64 { return float64(s.Sessions) }
	four := []Target{{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}}
	tests := []struct {
		name    string
		sources []Source
		tail    float64
		targets []Target
		policy  string
		byKey   func(affinity.Key) string
		want    float64
	}{
		{"even", []Source{src(1, 10), src(2, 10), src(3, 10), src(4, 10)}, 0, four, "roundrobin", nil, 1},
		// First seen order, not size, decides round robin: the two big
		// sources land on a and c... 40+0, 10, 40, 10 of 100: 1.6x.
		{"roundrobin order", []Source{src(1, 40), src(2, 10), src(3, 40), src(4, 10)}, 0, four, "roundrobin", nil, 1.6},
		// Round robin wraps: the fifth goes to a again.
		{"wrap", []Source{src(1, 10), src(2, 10), src(3, 10), src(4, 10), src(5, 10)}, 0, four, "roundrobin", nil, 20 / 12.5},
		{"one NAT", []Source{src(1, 70)}, 30, four, "leastconn", nil, (70 + 7.5) / 25},
		{"least load", []Source{src(1, 40), src(2, 30), src(3, 20), src(4, 10), src(5, 10)}, 0, four, "leastconn", nil, 40 / 27.5},
		// Weights: b has 3 positions, a 1: cycle a b b b.
		{"weighted", []Source{src(1, 10), src(2, 10), src(3, 10), src(4, 10)}, 0, []Target{{"a", 1}, {"b", 3}}, "roundrobin", nil, 1},
		{"empty", nil, 0, four, "roundrobin", nil, 1},
		// Maglev places by the key's hash, here every key on b.
		{"maglev", []Source{src(1, 10), src(2, 10), src(3, 10), src(4, 10)}, 0, four, "maglev", func(affinity.Key) string { return "b" }, 4},
		{"maglev names no target", []Source{src(1, 10), src(2, 10)}, 0, four, "maglev", func(affinity.Key) string { return "gone" }, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := IPAffinitySkew(tc.sources, weight, tc.tail, tc.targets, tc.policy, tc.byKey)
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("skew %v, want %v", got, tc.want)
			}
		})
	}
}

func BenchmarkSession(b *testing.B) {
	tr := new(Tracker)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.Uint32()
		for pb.Next() {
			i++
			tr.Session(netip.AddrPortFrom(gw(int(i%64)), uint16(i)))
		}
	})
}

// BenchmarkSnapshot is the cost of one view of a full tracker: what the
// stats page pays every second.
func BenchmarkSnapshot(b *testing.B) {
	tr := new(Tracker)
	for i := range 100_000 {
		tr.Session(netip.AddrPortFrom(gw(i%5000), uint16(i)))
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Snapshot()
	}
}

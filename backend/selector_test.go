package backend

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// newPool returns backends named b0, b1, ... with the given weights. Nothing
// dials them.
func newPool(weights ...int) []*Backend {
	pool := make([]*Backend, len(weights))
	for i, w := range weights {
		pool[i] = New(fmt.Sprintf("b%d", i), fmt.Sprintf("127.0.0.1:%d", 10000+i), w)
	}
	return pool
}

// markDown takes b down as one failing check with fall 1 would.
func markDown(b *Backend) { b.Observe(false, 1, 1) }

// registryOf returns a registry of pool, failing t on duplicate ids.
func registryOf(t testing.TB, pool []*Backend) *Registry {
	t.Helper()
	reg, err := NewRegistry(pool)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// pick runs n selections over a registry of pool, each with a fresh key,
// and counts the choices by backend id; "" counts nil.
func pick(t testing.TB, s Selector, pool, avoid []*Backend, n int) map[string]int {
	t.Helper()
	return pickIn(s, registryOf(t, pool), avoid, n)
}

// pickIn is pick over a registry.
func pickIn(s Selector, reg *Registry, avoid []*Backend, n int) map[string]int {
	got := make(map[string]int)
	for i := range n {
		if b := s.Select(reg, mix64(uint64(i)), avoid); b != nil {
			got[b.ID]++
		} else {
			got[""]++
		}
	}
	return got
}

var policies = []string{"roundrobin", "leastconn", "random2", "maglev"}

func mustSelector(t testing.TB, policy string) Selector {
	t.Helper()
	s, err := NewSelector(policy)
	if err != nil {
		t.Fatalf("NewSelector(%q): %v", policy, err)
	}
	return s
}

func TestNewSelector(t *testing.T) {
	tests := []struct {
		policy string
		want   string
	}{
		{"roundrobin", "*backend.RoundRobin"},
		{"leastconn", "*backend.LeastConn"},
		{"random2", "*backend.Random2"},
		{"maglev", "*backend.Maglev"},
	}
	for _, tt := range tests {
		if got := fmt.Sprintf("%T", mustSelector(t, tt.policy)); got != tt.want {
			t.Errorf("NewSelector(%q) = %s, want %s", tt.policy, got, tt.want)
		}
	}
	for _, bad := range []string{"", "RoundRobin", "source"} {
		s, err := NewSelector(bad)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("NewSelector(%q) error = %v, want one naming the policy", bad, err)
		}
		if s != nil {
			t.Errorf("NewSelector(%q) = %v, want nil", bad, s)
		}
	}
}

func TestSelectorsPickOnlyAvailable(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := newPool(1, 1, 1, 1)
			markDown(pool[1])
			pool[3].SetAdmin(Drain, time.Time{})
			got := pick(t, mustSelector(t, policy), pool, nil, 200)
			for _, id := range []string{"b1", "b3", ""} {
				if got[id] != 0 {
					t.Errorf("picked %q %d times, want 0 (counts %v)", id, got[id], got)
				}
			}
			for _, id := range []string{"b0", "b2"} {
				if got[id] == 0 {
					t.Errorf("never picked available %s (counts %v)", id, got)
				}
			}
		})
	}
}

func TestSelectorsNoneQualifies(t *testing.T) {
	allDown := newPool(1, 2)
	markDown(allDown[0])
	allDown[1].SetAdmin(Maint, time.Time{})
	avoided := newPool(1, 1)
	for i, b := range avoided {
		avoided[i] = New(fmt.Sprintf("a%d", i), b.Address(), 1)
	}
	tests := []struct {
		name  string
		pool  []*Backend
		avoid []*Backend
	}{
		{"nil pool", nil, nil},
		{"empty pool", []*Backend{}, nil},
		{"all unavailable", allDown, nil},
		{"all avoided", avoided, avoided},
		{"available ones avoided", append(allDown[:2:2], avoided...), avoided},
	}
	for _, policy := range policies {
		for _, tt := range tests {
			t.Run(policy+"/"+tt.name, func(t *testing.T) {
				if b := mustSelector(t, policy).Select(registryOf(t, tt.pool), 1, tt.avoid); b != nil {
					t.Errorf("Select = %s, want nil", b.ID)
				}
			})
		}
	}
}

func TestSelectorsHonourAvoid(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := newPool(1, 3, 1, 2)
			// A look-alike of b0 that is not b0: avoid compares pointers.
			twin := New("b0", pool[0].Address(), 1)
			avoid := []*Backend{pool[1], pool[3], twin}
			got := pick(t, mustSelector(t, policy), pool, avoid, 200)
			if got["b1"] != 0 || got["b3"] != 0 || got[""] != 0 {
				t.Errorf("counts %v, want only b0 and b2", got)
			}
			if got["b0"] == 0 || got["b2"] == 0 {
				t.Errorf("counts %v, want both b0 and b2 picked", got)
			}
		})
	}
}

func TestRoundRobinShares(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    []int
		picks   int
		want    map[string]int
	}{
		{"equal", []int{1, 1, 1}, nil, 30, map[string]int{"b0": 10, "b1": 10, "b2": 10}},
		{"equal weights above one", []int{4, 4, 4}, nil, 36, map[string]int{"b0": 12, "b1": 12, "b2": 12}},
		{"weights 3:1", []int{3, 1}, nil, 400, map[string]int{"b0": 300, "b1": 100}},
		{"weights 3:3:1", []int{3, 3, 1}, nil, 70, map[string]int{"b0": 30, "b1": 30, "b2": 10}},
		{"weight below one counts as one", []int{0, -5, 2}, nil, 40, map[string]int{"b0": 10, "b1": 10, "b2": 20}},
		{"down share spread evenly", []int{1, 1, 1}, []int{1}, 30, map[string]int{"b0": 15, "b2": 15}},
		{"down share spread by weight", []int{2, 5, 1}, []int{1}, 30, map[string]int{"b0": 20, "b2": 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(tt.weights...)
			for _, i := range tt.down {
				markDown(pool[i])
			}
			got := pick(t, new(RoundRobin), pool, nil, tt.picks)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("counts %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoundRobinInterleaves(t *testing.T) {
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{1, 1, 1}, "b0 b1 b2 b0 b1 b2"},
		{[]int{3, 1}, "b0 b1 b0 b0 b0 b1 b0 b0"},
		{[]int{3, 3, 1}, "b0 b1 b2 b0 b1 b0 b1 b0 b1 b2"},
		{[]int{1, 2, 3}, "b0 b1 b2 b1 b2 b2 b0"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			reg := registryOf(t, newPool(tt.weights...))
			rr := new(RoundRobin)
			var seq []string
			for range strings.Count(tt.want, " ") + 1 {
				seq = append(seq, rr.Select(reg, 0, nil).ID)
			}
			if got := strings.Join(seq, " "); got != tt.want {
				t.Errorf("sequence %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLeastConn(t *testing.T) {
	tests := []struct {
		name   string
		active []int
		down   []int
		picks  int
		want   map[string]int
	}{
		{"fewest wins", []int{5, 2, 7}, nil, 9, map[string]int{"b1": 9}},
		{"ties rotate", []int{0, 0, 0}, nil, 30, map[string]int{"b0": 10, "b1": 10, "b2": 10}},
		{"ties among the fewest rotate", []int{1, 0, 0}, nil, 30, map[string]int{"b1": 15, "b2": 15}},
		{"down backend is not the fewest", []int{3, 0, 4}, []int{1}, 6, map[string]int{"b0": 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := newPool(1, 1, 1)
			for i, n := range tt.active {
				for range n {
					pool[i].Acquire()
				}
			}
			for _, i := range tt.down {
				markDown(pool[i])
			}
			got := pick(t, new(LeastConn), pool, nil, tt.picks)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("counts %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("acquire spreads", func(t *testing.T) { acquireSpreads(t, 1, 1, 1, 1) })
}

// acquireSpreads acquires ten selections of least-connections per unit of
// weight over a pool of the weights given, with no release, and checks
// that each backend then holds ten per unit of its weight.
func acquireSpreads(t *testing.T, weights ...int) {
	t.Helper()
	pool := newPool(weights...)
	reg := registryOf(t, pool)
	lc := new(LeastConn)
	total := 0
	for _, w := range weights {
		total += w
	}
	for range 10 * total {
		lc.Select(reg, 0, nil).Acquire()
	}
	for _, b := range pool {
		if got, want := b.Active(), int64(10*b.Weight()); got != want {
			t.Errorf("%s (weight %d) Active() = %d, want %d", b.ID, b.Weight(), got, want)
		}
	}
}

func TestRandom2(t *testing.T) {
	t.Run("two candidates: always the idle one", func(t *testing.T) {
		pool := newPool(1, 1)
		pool[0].Acquire()
		got := pick(t, new(Random2), pool, nil, 500)
		if fmt.Sprint(got) != fmt.Sprint(map[string]int{"b1": 500}) {
			t.Errorf("counts %v, want all 500 on the idle b1", got)
		}
	})
	t.Run("favours the idle one", func(t *testing.T) {
		// The idle b2 wins whenever it is one of the two draws: 2/3 of the
		// time, against 1/3 for a random pick. Over 3000 picks the expected
		// count is 2000 with a standard deviation of about 26; the bounds
		// are more than 7 deviations away.
		pool := newPool(1, 1, 1, 1)
		for range 10 {
			pool[0].Acquire()
			pool[1].Acquire()
		}
		markDown(pool[3])
		got := pick(t, new(Random2), pool, nil, 3000)
		if got["b3"] != 0 || got[""] != 0 {
			t.Errorf("counts %v, want no picks of the down b3 and no nil", got)
		}
		if idle := got["b2"]; idle < 1800 || idle > 2200 {
			t.Errorf("idle b2 picked %d of 3000 times, want about 2000 (counts %v)", idle, got)
		}
	})
	t.Run("single candidate", func(t *testing.T) {
		pool := newPool(1, 1, 1)
		markDown(pool[0])
		got := pick(t, new(Random2), pool, []*Backend{pool[2]}, 50)
		if fmt.Sprint(got) != fmt.Sprint(map[string]int{"b1": 50}) {
			t.Errorf("counts %v, want all 50 on b1", got)
		}
	})
}

// TestSelectorsConcurrent runs selections from many goroutines while another
// cycles a backend's admin state, for the race detector, and checks that a
// backend draining throughout is never chosen.
func TestSelectorsConcurrent(t *testing.T) {
	const workers, picks = 8, 300
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := newPool(1, 2, 1, 1)
			pool[3].SetAdmin(Drain, time.Time{})
			reg := registryOf(t, pool)
			s := mustSelector(t, policy)
			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
						pool[1].SetAdmin(AdminState(i%3), time.Time{})
					}
				}
			})
			counts := make([]map[string]int, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					counts[w] = make(map[string]int)
					for i := range picks {
						if b := s.Select(reg, mix64(uint64(i)), nil); b != nil {
							counts[w][b.ID]++
							b.Acquire()
							b.Release()
						} else {
							counts[w][""]++
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			flipper.Wait()
			for w, got := range counts {
				if got["b3"] != 0 || got[""] != 0 {
					t.Errorf("worker %d counts %v, want no picks of draining b3 and no nil", w, got)
				}
			}
		})
	}

	t.Run("roundrobin stays exact", func(t *testing.T) {
		reg := registryOf(t, newPool(1, 1, 1))
		rr := new(RoundRobin)
		counts := make([]map[string]int, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { counts[w] = pickIn(rr, reg, nil, picks) })
		}
		wg.Wait()
		total := make(map[string]int)
		for _, c := range counts {
			for id, n := range c {
				total[id] += n
			}
		}
		want := map[string]int{"b0": 800, "b1": 800, "b2": 800}
		if fmt.Sprint(total) != fmt.Sprint(want) {
			t.Errorf("total counts %v, want %v", total, want)
		}
	})
}

func TestSelectorsDoNotAllocate(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := newPool(3, 1, 2, 1, 1, 4, 1, 1)
			markDown(pool[2])
			pool[4].SetAdmin(Drain, time.Time{})
			avoid := []*Backend{pool[0], pool[6]}
			reg := registryOf(t, pool)
			s := mustSelector(t, policy)
			s.Select(reg, 0, avoid) // the first selection prepares
			key := uint64(0)
			if allocs := testing.AllocsPerRun(1000, func() { key++; s.Select(reg, mix64(key), avoid) }); allocs != 0 {
				t.Errorf("Select allocates %v times per call, want 0", allocs)
			}
		})
	}
}

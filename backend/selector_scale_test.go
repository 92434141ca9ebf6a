package backend

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// scaleSizes are the pool sizes the selection benchmarks compare.
var scaleSizes = []int{3, 30, 300, 3000}

// weighted returns n backends with weights 1 to 4 in turn.
func weighted(n int) []*Backend {
	weights := make([]int, n)
	for i := range weights {
		weights[i] = 1 + i%4
	}
	return newPool(weights...)
}

// markUp brings b back up as one passing check with rise 1 would.
func markUp(b *Backend) { b.Observe(true, 1, 1) }

// benchSelect runs the sub-benchmark name: selections by s in reg, each
// with another client key, avoiding avoid, after one selection that builds
// what the policy keeps for reg.
func benchSelect(b *testing.B, name string, s Selector, reg *Registry, avoid []*Backend) {
	s.Select(reg, 0, avoid)
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		key := uint64(0)
		for b.Loop() {
			key++
			s.Select(reg, mix64(key), avoid)
		}
	})
}

// BenchmarkSelect measures one selection among n available backends of
// weights 1-4, each with another client key.
func BenchmarkSelect(b *testing.B) {
	for _, policy := range policies {
		for _, n := range scaleSizes {
			benchSelect(b, fmt.Sprintf("%s/%d", policy, n), mustSelector(b, policy), registryOf(b, weighted(n)), nil)
		}
	}
}

// BenchmarkSelectAvoid is BenchmarkSelect for a failover over 3,000
// backends with two of them avoided.
func BenchmarkSelectAvoid(b *testing.B) {
	for _, policy := range policies {
		pool := weighted(3000)
		benchSelect(b, policy+"/3000", mustSelector(b, policy), registryOf(b, pool), []*Backend{pool[7], pool[1500]})
	}
}

// BenchmarkSelectParallel is BenchmarkSelect/<policy>/3000 from every
// core at once, for the contention of the shared counters.
func BenchmarkSelectParallel(b *testing.B) {
	for _, policy := range policies {
		reg := registryOf(b, weighted(3000))
		s := mustSelector(b, policy)
		s.Select(reg, 0, nil)
		b.Run(policy+"/3000", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := rand.Uint64()
				for pb.Next() {
					key++
					if c := s.Select(reg, mix64(key), nil); c != nil && policy == "leastconn" {
						c.Acquire()
						c.Release()
					}
				}
			})
		})
	}
}

// BenchmarkPrepare measures a rebuild of each policy's structure over 3,000
// backends, what a reload pays before it publishes the new registry and a
// background rebuild after a change of health or admin state.
func BenchmarkPrepare(b *testing.B) {
	reg := registryOf(b, weighted(3000))
	for _, policy := range policies {
		s := mustSelector(b, policy)
		b.Run(policy+"/3000", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				availabilityChanged()
				if policy == "maglev" {
					s.(*Maglev).table.cur.Store(nil)
				}
				s.Prepare(reg)
			}
		})
	}
}

// wantShares checks that counts give each backend of pool that is not in
// out exactly rounds times its weight, and nothing else.
func wantShares(t *testing.T, got map[string]int, pool []*Backend, out map[*Backend]bool, rounds int) {
	t.Helper()
	bad := 0
	for _, b := range pool {
		want := rounds * b.weight()
		if out[b] {
			want = 0
		}
		if got[b.ID] != want && bad < 5 {
			t.Errorf("%s (weight %d) picked %d times, want %d", b.ID, b.weight(), got[b.ID], want)
			bad++
		}
	}
	if got[""] != 0 {
		t.Errorf("%d selections found no backend", got[""])
	}
}

// cycleLength is the sum of the weights of pool's backends not in out.
func cycleLength(pool []*Backend, out map[*Backend]bool) int {
	n := 0
	for _, b := range pool {
		if !out[b] {
			n += b.weight()
		}
	}
	return n
}

func TestRoundRobinExactSharesOf3000(t *testing.T) {
	pool := weighted(3000)
	reg := registryOf(t, pool)
	got := pickIn(new(RoundRobin), reg, nil, 3*cycleLength(pool, nil))
	wantShares(t, got, pool, nil, 3)
}

// TestRoundRobinExactSharesWhileMembersFlap takes backends down, into
// maintenance and back during the run: over the whole cycles of each
// phase, once the rebuild that the change starts has landed, every backend
// that is available gets exactly its weight's share.
func TestRoundRobinExactSharesWhileMembersFlap(t *testing.T) {
	pool := weighted(3000)
	reg := registryOf(t, pool)
	rr := new(RoundRobin)
	out := map[*Backend]bool{}                              // down or in maintenance
	down, maint := map[*Backend]bool{}, map[*Backend]bool{} // what put them there
	phase := func(name string) {
		t.Helper()
		settle(t, rr, reg)
		got := pickIn(rr, reg, nil, 2*cycleLength(pool, out))
		t.Run(name, func(t *testing.T) { wantShares(t, got, pool, out, 2) })
	}
	phase("all up")
	for i := 0; i < len(pool); i += 7 {
		markDown(pool[i])
		out[pool[i]], down[pool[i]] = true, true
	}
	phase("every 7th down")
	for i := 3; i < len(pool); i += 11 {
		pool[i].SetAdmin(Maint, time.Time{})
		out[pool[i]], maint[pool[i]] = true, true
	}
	phase("and every 11th in maintenance")
	for i := 0; i < len(pool); i += 14 {
		markUp(pool[i])
		delete(down, pool[i])
		out[pool[i]] = maint[pool[i]]
	}
	phase("half of the down ones back")
	for i := 3; i < len(pool); i += 11 {
		pool[i].SetAdmin(Ready, time.Time{})
		delete(maint, pool[i])
		out[pool[i]] = down[pool[i]]
	}
	phase("maintenance over")
}

// TestSelectorsNeverUnusableOrAvoided selects among 3,000 backends of
// which many are down, draining or in maintenance, with some avoided.
func TestSelectorsNeverUnusableOrAvoided(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			pool := weighted(3000)
			reg := registryOf(t, pool)
			s := mustSelector(t, policy)
			r := rand.New(rand.NewPCG(1, 2))
			for _, b := range pool {
				switch r.IntN(5) {
				case 0:
					markDown(b)
				case 1:
					b.SetAdmin(Drain, time.Time{})
				case 2:
					b.SetAdmin(Maint, time.Time{})
				}
			}
			var avoid []*Backend
			for _, b := range pool {
				if b.Available() && len(avoid) < MaxTries {
					avoid = append(avoid, b)
				}
			}
			avoided := map[*Backend]bool{}
			for _, b := range avoid {
				avoided[b] = true
			}
			for i := range 20000 {
				b := s.Select(reg, mix64(uint64(i)), avoid)
				switch {
				case b == nil:
					t.Fatalf("selection %d found none", i)
				case !b.Available():
					t.Fatalf("selection %d chose %s, which is not available", i, b.ID)
				case avoided[b]:
					t.Fatalf("selection %d chose the avoided %s", i, b.ID)
				}
			}
		})
	}
}

// TestSelectorsConcurrentWithRebuilds selects from several goroutines
// while others flip backends' health and admin states and reload the pool,
// so that the prepared structures are rebuilt under the selections (for
// the race detector); a backend kept down throughout is never chosen, nor
// an avoided one, nor one outside the registry selected from.
func TestSelectorsConcurrentWithRebuilds(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy, func(t *testing.T) {
			specs := make([]Spec, 120)
			for i := range specs {
				specs[i] = Spec{ID: fmt.Sprintf("b%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 10000+i), Weight: 1 + i%4}
			}
			pool := NewPool(nil)
			if _, err := pool.Reload(specs); err != nil {
				t.Fatal(err)
			}
			all := pool.Registry().All()
			dead := all[5]
			markDown(dead)
			avoid := []*Backend{all[9], all[60]}
			s := mustSelector(t, policy)
			// The changes are counted, not timed: the selections run
			// until both changers are done.
			var flippers sync.WaitGroup
			flippers.Go(func() {
				for i := range 400 {
					b := all[10+i%40]
					if i%2 == 0 {
						markDown(b)
					} else {
						markUp(b)
					}
					all[70+i%20].SetAdmin(AdminState(i%3), time.Time{})
				}
			})
			flippers.Go(func() {
				for i := range 100 {
					next := specs
					if i%2 == 0 {
						next = specs[:len(specs)-10]
					}
					if _, err := pool.Reload(next, s); err != nil {
						panic(err)
					}
				}
			})
			changed := make(chan struct{})
			go func() {
				flippers.Wait()
				close(changed)
			}()
			const workers = 4
			errs := make(chan error, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := 0; ; i++ {
						if i >= 100 {
							select {
							case <-changed:
								return
							default:
							}
						}
						reg := pool.Registry()
						b := s.Select(reg, mix64(uint64(w<<20|i)), avoid)
						switch {
						case b == nil:
							errs <- fmt.Errorf("selection %d found none", i)
							return
						case b == dead || b == avoid[0] || b == avoid[1]:
							errs <- fmt.Errorf("selection %d chose %s", i, b.ID)
							return
						case reg.Get(b.ID) != b:
							errs <- fmt.Errorf("selection %d chose %s, not in the registry", i, b.ID)
							return
						}
						b.Acquire()
						b.Release()
					}
				})
			}
			wg.Wait()
			<-changed
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestLeastConnRelativeToWeight(t *testing.T) {
	t.Run("fewest per weight", func(t *testing.T) {
		pool := newPool(1, 3)
		pool[0].Acquire()
		for range 2 {
			pool[1].Acquire()
		}
		// 1/1 against 2/3: b1.
		if got := pick(t, new(LeastConn), pool, nil, 5); got["b1"] != 5 {
			t.Errorf("counts %v, want all on b1", got)
		}
	})
	t.Run("acquire spreads by weight", func(t *testing.T) { acquireSpreads(t, 1, 3, 2, 2) })
	t.Run("follows releases among 3000", func(t *testing.T) {
		pool := weighted(3000)
		reg := registryOf(t, pool)
		lc := new(LeastConn)
		lc.Select(reg, 0, nil)
		for _, b := range pool {
			for range 2 * b.Weight() {
				b.Acquire()
			}
		}
		// All equal at 2 per weight; one release makes b1234 the least.
		pool[1234].Release()
		for i := range 3 {
			if b := lc.Select(reg, 0, nil); b != pool[1234] {
				t.Fatalf("selection %d chose %s, want b1234, the only one below 2 per weight", i, b.ID)
			}
		}
		// Avoided, the least is a tie of all others: they take turns.
		got := pickIn(lc, reg, []*Backend{pool[1234]}, 2999)
		if len(got) != 2999 {
			t.Errorf("2999 selections among 2999 tied backends chose %d distinct ones, want each once", len(got))
		}
	})
}

// TestLeastConnSecondSelectorTakesOver checks that two LeastConn over one
// pool both keep choosing the least loaded, the order moving between them.
func TestLeastConnSecondSelectorTakesOver(t *testing.T) {
	pool := newPool(1, 1, 1)
	reg := registryOf(t, pool)
	a, b := new(LeastConn), new(LeastConn)
	a.Select(reg, 0, nil)
	b.Select(reg, 0, nil) // takes the backends' order over
	pool[0].Acquire()
	pool[1].Acquire()
	for _, lc := range []*LeastConn{a, b, a} {
		if got := lc.Select(reg, 0, nil); got != pool[2] {
			t.Errorf("Select = %s, want the idle b2", got.ID)
		}
	}
}

// BenchmarkAcquireRelease measures what a connection's Acquire and Release
// cost without a leastconn order and with one over 3,000 backends, which
// they keep current.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, policy := range []string{"roundrobin", "leastconn"} {
		pool := weighted(3000)
		reg := registryOf(b, pool)
		mustSelector(b, policy).Select(reg, 0, nil)
		b.Run(policy+"/3000", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c := pool[i%len(pool)]
				c.Acquire()
				c.Release()
				i += 7
			}
		})
	}
}

// TestChangeOfPolicyDropsLeastConnOrder: once another policy serves the
// pool, connections stop keeping the leastconn order current; a LeastConn
// used again takes it back and still chooses the least loaded.
func TestChangeOfPolicyDropsLeastConnOrder(t *testing.T) {
	pool := newPool(1, 1, 1)
	reg := registryOf(t, pool)
	lc := new(LeastConn)
	lc.Select(reg, 0, nil)
	if pool[0].order.Load() == nil {
		t.Fatal("leastconn placed no backend in its order")
	}
	new(RoundRobin).Select(reg, 0, nil)
	for _, b := range pool {
		if b.order.Load() != nil {
			t.Errorf("%s still keeps a leastconn order under roundrobin", b.ID)
		}
	}
	pool[0].Acquire()
	pool[2].Acquire()
	if got := lc.Select(reg, 0, nil); got != pool[1] {
		t.Errorf("leastconn again: Select = %s, want the idle b1", got.ID)
	}
}

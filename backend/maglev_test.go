package backend

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/config"
)

// maglevKeys is how many client keys the Maglev tests place.
const maglevKeys = 100_000

// instance is one lbctl's view of a pool for the Maglev tests: its own
// Backend values (instances share nothing) from specs, in the order given.
func instance(t *testing.T, specs []Spec) (*Registry, *Maglev) {
	t.Helper()
	bs := make([]*Backend, len(specs))
	for i, s := range specs {
		bs[i] = New(s.ID, s.Address, s.Weight)
	}
	m, err := NewMaglev(0)
	if err != nil {
		t.Fatal(err)
	}
	return registryOf(t, bs), m
}

// maglevSpecs returns n specs named app-00, app-01, ... of the given
// weights in turn (1 when none).
func maglevSpecs(n int, weights ...int) []Spec {
	if len(weights) == 0 {
		weights = []int{1}
	}
	specs := make([]Spec, n)
	for i := range specs {
		specs[i] = Spec{ID: fmt.Sprintf("app-%02d", i), Address: fmt.Sprintf("127.0.0.1:%d", 20000+i), Weight: weights[i%len(weights)]}
	}
	return specs
}

// placeAll returns the backend id each of maglevKeys keys is placed on.
func placeAll(reg *Registry, m *Maglev, avoid []*Backend) []string {
	ids := make([]string, maglevKeys)
	for k := range ids {
		if b := m.Select(reg, mix64(uint64(k)), avoid); b != nil {
			ids[k] = b.ID
		}
	}
	return ids
}

func TestMaglevInstancesAgreeWhateverTheOrder(t *testing.T) {
	specs := maglevSpecs(10, 1, 2, 3)
	shuffled := append([]Spec(nil), specs...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	regA, a := instance(t, specs)
	regB, b := instance(t, shuffled)
	check := func(what string) {
		t.Helper()
		pa, pb := placeAll(regA, a, nil), placeAll(regB, b, nil)
		differ := 0
		for k := range pa {
			if pa[k] != pb[k] || pa[k] == "" {
				differ++
			}
		}
		if differ != 0 {
			t.Errorf("%s: %d of %d keys placed differently (or nowhere) by two instances", what, differ, maglevKeys)
		}
	}
	check("all up")
	markDown(regA.Get("app-03"))
	markDown(regB.Get("app-03"))
	check("app-03 down on both")
}

// TestMaglevUnavailableMovesOnlyItsClients takes one backend of ten out
// (down, or in maintenance): its keys move, spread over all the others, and
// not one key of another backend moves; when it returns, its keys return.
func TestMaglevUnavailableMovesOnlyItsClients(t *testing.T) {
	reg, m := instance(t, maglevSpecs(10))
	before := placeAll(reg, m, nil)
	gone := reg.Get("app-04")
	markDown(gone)
	after := placeAll(reg, m, nil)
	movedOthers, movedOwn := 0, 0
	to := map[string]int{}
	for k := range before {
		switch {
		case before[k] == gone.ID:
			movedOwn++
			to[after[k]]++
		case after[k] != before[k]:
			movedOthers++
		}
	}
	if movedOthers != 0 {
		t.Errorf("%d keys of other backends moved, want 0", movedOthers)
	}
	if to[gone.ID] != 0 || to[""] != 0 {
		t.Errorf("keys of the down backend went to %v, want only the others", to)
	}
	// Its tenth of the keys, spread over the nine others: each gets about
	// 1/9 of them; the bounds are loose.
	for _, b := range reg.All() {
		if b != gone && (to[b.ID] < movedOwn/9/3 || to[b.ID] > movedOwn/9*3) {
			t.Errorf("%s took %d of the %d moved keys, want about %d", b.ID, to[b.ID], movedOwn, movedOwn/9)
		}
	}
	t.Logf("the down backend held %d of %d keys (%.1f%%); 0 others moved", movedOwn, maglevKeys, 100*float64(movedOwn)/maglevKeys)
	markUp(gone)
	if back := placeAll(reg, m, nil); fmt.Sprint(back) != fmt.Sprint(before) {
		t.Errorf("placement after the backend returned differs from before it left")
	}
}

// TestMaglevFailedDialMovesLikeDown: a key whose backend failed a dial on
// one instance (avoided there) goes where an instance that saw the backend
// go down sends it.
func TestMaglevFailedDialMovesLikeDown(t *testing.T) {
	specs := maglevSpecs(7, 3, 1, 2)
	regA, a := instance(t, specs)
	regB, b := instance(t, specs)
	markDown(regA.Get("app-02"))
	pa := placeAll(regA, a, nil)
	pb := placeAll(regB, b, []*Backend{regB.Get("app-02")})
	for k := range pa {
		if pa[k] != pb[k] {
			t.Fatalf("key %d: %s where the backend is down, %s where its dial failed", k, pa[k], pb[k])
		}
	}
}

// TestMaglevConfigChangeDisruption measures how many keys move when the
// config adds or removes a backend, which rebuilds the table.
func TestMaglevConfigChangeDisruption(t *testing.T) {
	const n = 10
	specs := maglevSpecs(n + 1)
	reg, m := instance(t, specs[:n])
	before := placeAll(reg, m, nil)

	grown, mg := instance(t, specs)
	after := placeAll(grown, mg, nil)
	moved, toNew := 0, 0
	for k := range before {
		if after[k] != before[k] {
			moved++
			if after[k] == specs[n].ID {
				toNew++
			}
		}
	}
	share := float64(moved) / maglevKeys
	t.Logf("adding an 11th backend moved %.2f%% of the keys (1/11 = %.2f%%), %d of %d to the new one", 100*share, 100.0/(n+1), toNew, moved)
	if want := 1.0 / (n + 1); math.Abs(share-want) > want/2 {
		t.Errorf("adding one backend to %d moved %.2f%% of the keys, want about %.2f%%", n, 100*share, 100*want)
	}

	shrunk, ms := instance(t, append(append([]Spec(nil), specs[:3]...), specs[4:n]...))
	after = placeAll(shrunk, ms, nil)
	others := 0
	for k := range before {
		if before[k] != specs[3].ID && after[k] != before[k] {
			others++
		}
	}
	t.Logf("removing one of %d backends from the config moved %.2f%% of the other backends' keys", n, 100*float64(others)/maglevKeys)
	if others > maglevKeys/50 {
		t.Errorf("removing one backend from the config moved %d keys of the others, want under 2%%", others)
	}
}

// TestMaglevWeights checks that the table gives each backend entries in
// proportion to its weight, within 1% of the table.
func TestMaglevWeights(t *testing.T) {
	reg, m := instance(t, maglevSpecs(8, 1, 2, 3, 4))
	tbl := m.table.get(reg, buildMaglev, m.size)
	count := make([]int, len(tbl.backs))
	for _, e := range tbl.entry {
		count[e]++
	}
	for i, b := range tbl.backs {
		want := float64(len(tbl.entry)) * float64(b.Weight()) / 20
		if math.Abs(float64(count[i])-want) > float64(len(tbl.entry))/100 {
			t.Errorf("%s (weight %d) holds %d entries, want about %.0f", b.ID, b.Weight(), count[i], want)
		}
	}
}

// TestAddrHashIsFixed pins the hash that places clients, and the table
// that maps it: every instance, and every version of lbctl, must compute
// the same.
func TestAddrHashIsFixed(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want uint64
	}{
		{"192.0.2.7", 0x8848291b93aecf89},
		{"::ffff:192.0.2.7", 0x8848291b93aecf89},
		{"2001:db8::1", 0x188e3d1b99f69ff0},
	} {
		if got := AddrHash(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("AddrHash(%s) = %#x, want %#x", tt.addr, got, tt.want)
		}
	}
}

func TestMaglevTableIsFixed(t *testing.T) {
	reg, m := instance(t, maglevSpecs(10, 1, 2))
	var got []string
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.9", "2001:db8::1"} {
		got = append(got, m.Select(reg, AddrHash(netip.MustParseAddr(a)), nil).ID)
	}
	if want := "[app-01 app-03 app-04 app-03 app-07]"; fmt.Sprint(got) != want {
		t.Errorf("placements %v, want %s", got, want)
	}
}

func TestCheckTableSize(t *testing.T) {
	if d := config.Default().Balance.TableSize; d != DefaultTableSize || CheckTableSize(d) != nil {
		t.Errorf("config's default table size %d, want %d, a valid one", d, DefaultTableSize)
	}
	for _, m := range []int{3, 65537, 655373} {
		if err := CheckTableSize(m); err != nil {
			t.Errorf("CheckTableSize(%d) = %v, want nil", m, err)
		}
	}
	for _, m := range []int{-7, 0, 1, 2, 4, 65536, 65541, MaxTableSize + 1} {
		if err := CheckTableSize(m); err == nil {
			t.Errorf("CheckTableSize(%d) = nil, want an error", m)
		}
	}
	if _, err := NewSelector("maglev", TableSize(65536)); err == nil {
		t.Error("NewSelector(maglev, TableSize(65536)) = nil error, want one: 65536 is not a prime")
	}
}

// Package config checks balance.table_size with its own copy of the rule
// (config imports no other lbctl package; see prime): the two agree on
// every size, the largest prime allowed and the first size past the bound
// included.
func TestConfigAgreesOnTableSize(t *testing.T) {
	for _, m := range []int{-7, 0, 1, 2, 3, 4, 9, 65536, 65537, 65541, 655373, 16777213, MaxTableSize, MaxTableSize + 1} {
		c := config.Default()
		c.Balance.TableSize = m
		err := c.Validate()
		inConfig := err == nil || !strings.Contains(err.Error(), "balance.table_size")
		if inBackend := CheckTableSize(m) == nil; inConfig != inBackend {
			t.Errorf("table size %d: config accepts it %v, backend %v (config: %v)", m, inConfig, inBackend, err)
		}
	}
}

// BenchmarkMaglevBuild measures building the table for 10, 100 and 1,000
// backends.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		reg := registryOf(b, weighted(n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buildMaglev(reg, DefaultTableSize)
			}
		})
	}
}

package backend

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
)

// DefaultTableSize is the Maglev lookup table's size unless configured: a
// prime, as the table needs, and large enough for a few hundred backends
// to get shares within about 1% of their weights (the paper asks for
// M >= 100 N).
const DefaultTableSize = 65537

// MaxTableSize bounds the lookup table: 2^24 entries, 64 MiB.
const MaxTableSize = 1 << 24

// Maglev places a client by consistent hashing (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016): a lookup
// table of M entries (M prime), each naming a backend, filled by the
// paper's population (its pseudocode 1): every backend has a permutation
// of the entries, derived from two hashes of its id (offset and skip), and
// the backends take turns claiming the next free entry of their own
// permutation, a backend of weight w taking w turns per round. The client's
// key picks the entry key mod M.
//
// The table depends only on the backends' ids and weights and on M: the
// backends are taken in order of id, so every instance with the same pool
// builds the same table whatever the order of its config, and places every
// client alike without talking to the others. Adding or removing a
// backend in the config rebuilds it, moving about 1/N of the clients.
//
// The table holds every backend of the pool, not only the available ones:
// when the backend at a client's entry is unavailable (down, draining, in
// maintenance) or avoided (its dial failed), the client goes to the backend
// of the next entry that is eligible. So a failed backend's clients move
// and nobody else's, and they move to the same backend on every instance,
// whether the instance learnt of the failure from its health checks or
// from a failed dial, at whatever moment; when the backend returns, its
// clients would return with it, which is what the affinity table's pins
// prevent (a pin overrides the hash). Because the table's entries are
// interleaved, a failed backend's clients spread over the others about in
// proportion to their weights.
//
// A selection is one table lookup and a few probes. The table is built
// once per registry, before a reload publishes it (see Pool.Reload), and
// never for a change of health or admin state, which it does not depend
// on. The zero value is not usable: see NewMaglev.
type Maglev struct {
	size  int
	table prepared[maglevTable]
}

var _ Selector = (*Maglev)(nil)

// NewMaglev returns the Maglev policy with a table of size entries (0:
// DefaultTableSize). size must be a prime of at most MaxTableSize.
func NewMaglev(size int) (*Maglev, error) {
	if size == 0 {
		size = DefaultTableSize
	}
	if err := CheckTableSize(size); err != nil {
		return nil, err
	}
	return &Maglev{size: size}, nil
}

// CheckTableSize reports whether m can size a Maglev table: a prime from 3
// to MaxTableSize.
func CheckTableSize(m int) error {
	if m < 3 || m > MaxTableSize || !prime(m) {
		return fmt.Errorf("maglev table size %d is not a prime from 3 to %d (65537 is the default; 655373 suits 6,000 backends)", m, MaxTableSize)
	}
	return nil
}

// prime reports whether n is a prime, by trial division (n is at most
// MaxTableSize: about 2,000 divisions).
//
// Package config has a copy (isPrime) to validate balance.table_size, on
// purpose: config imports no other lbctl package (see its package doc),
// and ten lines of arithmetic do not justify breaking that rule.
// TestConfigAgreesOnTableSize keeps the two alike.
func prime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// maglevTable is the lookup table over one registry.
type maglevTable struct {
	backs []*Backend // in order of id
	entry []uint32   // index into backs; empty when backs is
}

// Select returns the backend of the client's entry, or of the first entry
// after it that is eligible, or nil when none is.
func (m *Maglev) Select(reg *Registry, key uint64, avoid []*Backend) *Backend {
	t := m.table.forRegistry(reg, buildMaglev, m.size)
	if len(t.backs) == 0 {
		return nil
	}
	n := uint64(len(t.entry))
	e := key % n
	for range len(avoid) + 4*probes {
		if b := t.backs[t.entry[e]]; eligible(b, avoid) {
			return b
		}
		if e++; e == n {
			e = 0
		}
	}
	// Most of the pool is unavailable: walk the whole table on from there,
	// which is the same rule, only slower.
	for range n {
		if b := t.backs[t.entry[e]]; eligible(b, avoid) {
			return b
		}
		if e++; e == n {
			e = 0
		}
	}
	return nil
}

// buildMaglev fills a table of size entries over the backends of reg
// (NSDI 2016, pseudocode 1). Weights decide the turns: in round r a
// backend of weight w takes a turn when floor((r+1)w/top) passes
// floor(rw/top), top being the largest weight, so the heaviest backends
// take one every round and the others in proportion, interleaved.
func buildMaglev(reg *Registry, size int) *maglevTable {
	unorder(reg)
	backs := slices.Clone(reg.All())
	slices.SortFunc(backs, func(a, b *Backend) int { return strings.Compare(a.ID, b.ID) })
	t := &maglevTable{backs: backs}
	if len(backs) == 0 {
		return t
	}
	m := uint64(size)
	offset := make([]uint64, len(backs))
	skip := make([]uint64, len(backs))
	next := make([]uint64, len(backs))
	weight := make([]uint64, len(backs))
	var top uint64
	for i, b := range backs {
		h := fnv.New64a()
		h.Write([]byte(b.ID))
		sum := h.Sum64()
		offset[i] = mix64(sum^0x6d61676c65763031) % m
		skip[i] = mix64(sum^0x6d61676c65763032)%(m-1) + 1
		weight[i] = uint64(b.weight())
		top = max(top, weight[i])
	}
	const free = ^uint32(0)
	t.entry = make([]uint32, size)
	for i := range t.entry {
		t.entry[i] = free
	}
	filled := 0
	for r := uint64(0); ; r++ {
		for i := range backs {
			if (r+1)*weight[i]/top == r*weight[i]/top {
				continue
			}
			c := (offset[i] + next[i]*skip[i]) % m
			for t.entry[c] != free {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % m
			}
			t.entry[c] = uint32(i)
			next[i]++
			if filled++; filled == size {
				return t
			}
		}
	}
}

// AddrHash returns the key by which Maglev places a client at address a:
// a hash of its 16-byte form that every instance computes alike (no
// per-process seed), well spread over 64 bits.
func AddrHash(a netip.Addr) uint64 {
	b := a.As16()
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return mix64(hi ^ mix64(lo))
}

// mix64 is the finaliser of SplitMix64: a bijection of 64-bit values whose
// every output bit depends on every input bit.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Prepare builds the lookup table over reg (see Selector).
func (m *Maglev) Prepare(reg *Registry) { m.table.forRegistry(reg, buildMaglev, m.size) }

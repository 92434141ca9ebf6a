package backend

import (
	"slices"
	"sync/atomic"
)

// LeastConn picks the eligible backend with the fewest active connections
// relative to its weight (HAProxy's leastconn): of two backends, a has
// fewer than b when a.Active()/a.Weight() < b.Active()/b.Weight(), so with
// equal weights it is simply the fewest. Ties are broken in turn: among the
// tied backends, the one after the last chosen (in pool order) goes next,
// so equally loaded backends share new clients evenly instead of the first
// one taking them all.
//
// The order is a tournament tree over the available backends, rebuilt off
// the data path once per change of the pool (see prepared), whose leaves each backend's
// Acquire and Release keep current without a lock (see leaf.moved): a
// selection walks it in O(log n), about 12 levels for 3,000 backends. While
// connections start and end concurrently with a selection, it may take a
// backend one connection short of the fewest, as any reading of counters
// that move would. One LeastConn orders a given set of backends at a time:
// a second one over the same backends takes the order over on its first
// selection, and the first rebuilds its own when it is used again.
//
// The zero value is ready to use; it must not be copied after first use.
type LeastConn struct {
	next  atomic.Uint64 // the tree position after the last choice
	order prepared[order]
}

var _ Selector = (*LeastConn)(nil)

// order is a tournament tree over backs: node 1 is the root, node j has
// children 2j and 2j+1, and backend i is leaf size+i. A leaf holds its
// backend's load (see loadOf), an inner node the least load below it; each
// node also counts its writes in its low bits (see pack), so that an update
// never overwrites a newer one (see refresh).
type order struct {
	size   int // leaves, a power of two
	nodes  []atomic.Uint64
	backs  []*Backend
	leaves []leaf
}

// leaf is a backend's place in an order.
type leaf struct {
	o *order
	i int
}

const (
	versionBits = 16
	// noLoad is the load of an empty leaf (and the most a load can be).
	noLoad = 1<<(64-versionBits) - 1
	// maxOrderWeight bounds the weights the order compares exactly: a
	// load is active<<16/weight, whose quotients of distinct ratios stay
	// distinct while weights are at most 256 (2^16 >= 256*256).
	maxOrderWeight = 256
)

// loadOf returns b's load as the order compares it.
func loadOf(b *Backend) uint64 {
	a := max(b.Active(), 0)
	w := min(b.weight(), maxOrderWeight)
	return min(uint64(a)<<16/uint64(w), noLoad-1)
}

// pack returns a node word for load with the write count after old's.
func pack(load, old uint64) uint64 {
	return load<<versionBits | (old+1)&(1<<versionBits-1)
}

// loadAt returns the load node j holds.
func (o *order) loadAt(j int) uint64 { return o.nodes[j].Load() >> versionBits }

// moved brings the leaf, and the nodes above it that it changes, up to date
// with its backend's active connections. Each node is replaced by a
// compare-and-swap of the word its computation started from, retried when
// another update came in between, so concurrent updates of leaves that
// share ancestors leave each ancestor holding the least of its children;
// it stops at the first node whose load it does not change.
func (l *leaf) moved() {
	o := l.o
	j := o.size + l.i
	b := o.backs[l.i]
	for {
		old := o.nodes[j].Load()
		load := loadOf(b)
		if load == old>>versionBits {
			return
		}
		if o.nodes[j].CompareAndSwap(old, pack(load, old)) {
			break
		}
	}
	for j >>= 1; j >= 1; j >>= 1 {
		for {
			old := o.nodes[j].Load()
			load := min(o.loadAt(2*j), o.loadAt(2*j+1))
			if load == old>>versionBits {
				return
			}
			if o.nodes[j].CompareAndSwap(old, pack(load, old)) {
				break
			}
		}
	}
}

// first returns the first leaf at or after c whose load is at most m, or
// -1: up the tree to the first subtree to the right that holds one, then
// down to its leftmost such leaf.
func (o *order) first(c int, m uint64) int {
	if c >= len(o.backs) {
		return -1
	}
	j := o.size + c
	for o.loadAt(j) > m {
		for j&1 == 1 {
			j >>= 1
		}
		if j == 0 {
			return -1
		}
		j++
	}
	for j < o.size {
		if j *= 2; o.loadAt(j) > m {
			j++
		}
	}
	return j - o.size
}

// leastOver returns the least load of the leaves in [lo, hi).
func (o *order) leastOver(lo, hi int) uint64 {
	m := uint64(noLoad)
	for lo, hi = lo+o.size, hi+o.size; lo < hi; lo, hi = lo>>1, hi>>1 {
		if lo&1 == 1 {
			m = min(m, o.loadAt(lo))
			lo++
		}
		if hi&1 == 1 {
			hi--
			m = min(m, o.loadAt(hi))
		}
	}
	return m
}

// least returns the least load of the leaves outside avoid: the root's
// without one, else the least over the ranges between the avoided leaves.
func (o *order) least(avoid []*Backend) uint64 {
	if len(avoid) == 0 {
		return o.loadAt(1)
	}
	var buf [MaxTries]int
	skip := buf[:0]
	for _, b := range avoid {
		if l := b.order.Load(); l != nil && l.o == o && len(skip) < len(buf) {
			skip = append(skip, l.i)
		}
	}
	slices.Sort(skip)
	m, lo := uint64(noLoad), 0
	for _, i := range skip {
		m = min(m, o.leastOver(lo, i))
		lo = i + 1
	}
	return min(m, o.leastOver(lo, len(o.backs)))
}

// Select returns the least loaded eligible backend, or nil.
func (l *LeastConn) Select(reg *Registry, _ uint64, avoid []*Backend) *Backend {
	o := l.order.get(reg, buildOrder, 0)
	if len(o.backs) > 0 && len(avoid) <= MaxTries {
		m := o.least(avoid)
		c := int(l.next.Load() % uint64(len(o.backs)))
		for range len(avoid) + probes {
			if m == noLoad {
				break
			}
			i := o.first(c, m)
			if i < 0 {
				if i = o.first(0, m); i < 0 {
					break // the loads moved since m was read
				}
			}
			b := o.backs[i]
			if b.order.Load() != &o.leaves[i] {
				l.order.invalidate() // another LeastConn took the backends over
				break
			}
			if eligible(b, avoid) {
				l.next.Store(uint64(i + 1))
				return b
			}
			c = i + 1
		}
	}
	// The order is out of date (being rebuilt) or has nothing eligible;
	// a pass over the pool decides.
	return leastEligible(reg.All(), avoid)
}

// leastEligible returns the eligible backend of pool with the least load
// (the first of the tied ones), or nil: LeastConn's choice by a pass over
// the pool, for when its order cannot give one.
func leastEligible(pool, avoid []*Backend) *Backend {
	var best *Backend
	var least uint64
	for _, b := range pool {
		if !eligible(b, avoid) {
			continue
		}
		if load := loadOf(b); best == nil || load < least {
			best, least = b, load
		}
	}
	return best
}

// unorder takes the backends of reg out of any leastconn order: the
// policy in use is another. A LeastConn still used afterwards notices on
// its next selection and rebuilds its order.
func unorder(reg *Registry) {
	for _, b := range reg.All() {
		if b.order.Load() != nil {
			b.order.Store(nil)
		}
	}
}

// buildOrder prepares the order over the available backends of reg and
// makes their Acquire and Release keep it current; the other backends of
// reg leave whatever order they were in.
func buildOrder(reg *Registry, _ int) *order {
	u := usable(reg)
	size := 1
	for size < len(u) {
		size *= 2
	}
	o := &order{size: size, nodes: make([]atomic.Uint64, 2*size), backs: u, leaves: make([]leaf, len(u))}
	for j := range o.nodes {
		o.nodes[j].Store(pack(noLoad, 0))
	}
	for i, b := range u {
		o.leaves[i] = leaf{o: o, i: i}
		o.nodes[size+i].Store(pack(loadOf(b), 0))
	}
	for j := size - 1; j >= 1; j-- {
		o.nodes[j].Store(pack(min(o.loadAt(2*j), o.loadAt(2*j+1)), 0))
	}
	// From here on Acquire and Release update the order; a count that
	// moved while it was built is brought up to date by one more pass.
	next := 0
	for _, b := range reg.All() {
		if next < len(u) && u[next] == b {
			b.order.Store(&o.leaves[next])
			next++
		} else {
			b.order.Store(nil)
		}
	}
	for i := range o.leaves {
		o.leaves[i].moved()
	}
	return o
}

// Prepare builds the order over reg (see Selector).
func (l *LeastConn) Prepare(reg *Registry) { l.order.prepare(reg, buildOrder, 0) }

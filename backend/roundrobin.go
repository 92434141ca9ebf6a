package backend

import (
	"slices"
	"sync/atomic"
)

// RoundRobin is weighted round robin. Each available backend gets Weight
// positions in a cycle, interleaved rather than in blocks: weights 3:1 give
// a, b, a, a rather than a, a, a, b. The cycle is built over the available
// backends only, so an unavailable backend is skipped and its share is
// spread over the others in proportion to their weights. An avoided backend
// (failover) is passed over to the next position of the cycle.
//
// With an unchanging pool, selections over whole cycles give each backend
// exactly its weight's share; after a change, from when the rebuilt cycle
// lands (until then the old one serves, skipping what is no longer
// available). A selection costs one atomic counter and a binary search
// over the distinct weights (at most 256), whatever the number of
// backends; the cycle is rebuilt off the data path once per change of the
// pool (see prepared). The zero value is ready to use; it must not be copied
// after first use.
type RoundRobin struct {
	next  atomic.Uint64
	cycle prepared[cycle]
}

var _ Selector = (*RoundRobin)(nil)

// cycle is the interleaved weighted cycle over the available backends.
// It runs in rounds 0..top-1; round k holds, in pool order, the backends
// whose weight exceeds k, so a backend of weight w appears in w rounds.
// Rounds between two consecutive distinct weights hold the same backends:
// they form one segment, stored once.
type cycle struct {
	total int
	segs  []segment
}

// empty reports whether the cycle was built with no backend available.
func (c *cycle) empty() bool { return c.total == 0 }

// segment is a run of rounds that hold the same backends.
type segment struct {
	start   int        // the cycle position of its first round
	members []*Backend // the backends of each of its rounds, in pool order
}

// Select returns the backend at the next position of the weighted cycle,
// or, when that one is avoided (or no longer available), at the positions
// after it.
func (r *RoundRobin) Select(reg *Registry, _ uint64, avoid []*Backend) *Backend {
	c, stale := r.cycle.getOffering(reg, buildCycle, (*cycle).empty)
	if stale {
		return firstEligible(reg.All(), avoid, 0)
	}
	if c.empty() {
		return nil
	}
	n := r.next.Add(1) - 1
	pos := int(n % uint64(c.total))
	for range len(avoid) + probes {
		if b := c.at(pos); eligible(b, avoid) {
			return b
		}
		if pos++; pos == c.total {
			pos = 0
		}
	}
	// The cycle is out of date (being rebuilt) and what it offers is not
	// available any more; any available backend will do.
	return firstEligible(reg.All(), avoid, int(n%uint64(max(reg.Len(), 1))))
}

// probes is how many positions past the avoided ones a selection tries in
// a prepared structure before it falls back on a pass over the pool, which
// happens only while the structure is out of date.
const probes = 8

// at returns the backend at position pos (0 <= pos < total).
func (c *cycle) at(pos int) *Backend {
	// The last segment starting at or before pos.
	i, _ := slices.BinarySearchFunc(c.segs, pos, func(s segment, p int) int { return s.start - p - 1 })
	s := &c.segs[i-1]
	return s.members[(pos-s.start)%len(s.members)]
}

// buildCycle prepares the cycle over the available backends of reg.
func buildCycle(reg *Registry, _ int) *cycle {
	unorder(reg)
	u := usable(reg)
	weights := make([]int, 0, len(u))
	for _, b := range u {
		weights = append(weights, b.weight())
	}
	levels := slices.Clone(weights)
	slices.Sort(levels)
	levels = slices.Compact(levels)
	c := new(cycle)
	below := 0 // the round where the segment starts
	for _, top := range levels {
		var members []*Backend
		for i, b := range u {
			if weights[i] > below {
				members = append(members, b)
			}
		}
		c.segs = append(c.segs, segment{start: c.total, members: members})
		c.total += (top - below) * len(members)
		below = top
	}
	return c
}

// Prepare builds the cycle over reg (see Selector).
func (r *RoundRobin) Prepare(reg *Registry) { r.cycle.prepare(reg, buildCycle, 0) }

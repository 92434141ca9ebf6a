package backend

import "sync/atomic"

// RoundRobin is weighted round robin. Each eligible backend gets Weight
// positions in a cycle, interleaved rather than in blocks: weights 3:1 give
// a, b, a, a rather than a, a, a, b. The cycle is built over the eligible
// backends only, so an unavailable or avoided backend is skipped and its share
// is spread over the others in proportion to their weights.
//
// With equal weights and an unchanging pool, N*k selections over N backends
// give each exactly k. The zero value is ready to use; it is lock-free (one
// atomic counter) and must not be copied after first use.
type RoundRobin struct {
	next atomic.Uint64
}

var _ Selector = (*RoundRobin)(nil)

// Select returns the backend at the next position of the weighted cycle.
func (r *RoundRobin) Select(pool, avoid []*Backend) *Backend {
	total, top := 0, 0
	for _, b := range pool {
		if eligible(b, avoid) {
			w := b.weight()
			total += w
			top = max(top, w)
		}
	}
	if total == 0 {
		return nil
	}
	n := r.next.Add(1) - 1
	if b := atCyclePosition(pool, avoid, int(n%uint64(total)), top); b != nil {
		return b
	}
	// A backend changed state between the passes and the position fell off
	// the end of the cycle; any eligible backend will do.
	return firstEligible(pool, avoid, int(n%uint64(len(pool))))
}

// atCyclePosition returns the backend at position pos of the interleaved
// cycle over the eligible backends of pool. The cycle runs in rounds
// 0..top-1; round k holds, in pool order, the eligible backends whose weight
// exceeds k, so a backend of weight w appears in w rounds. Finding the round
// is a binary search over before(k), the number of positions in rounds below
// k. It returns nil if pos lies beyond the cycle (the pool changed).
func atCyclePosition(pool, avoid []*Backend, pos, top int) *Backend {
	before := func(round int) int {
		s := 0
		for _, b := range pool {
			if eligible(b, avoid) {
				s += min(b.weight(), round)
			}
		}
		return s
	}
	// Largest round with before(round) <= pos; before(0) == 0.
	round, start := 0, 0
	for lo, hi := 0, top-1; lo < hi; {
		mid := (lo + hi + 1) / 2
		if s := before(mid); s <= pos {
			lo, round, start = mid, mid, s
		} else {
			hi = mid - 1
		}
	}
	j := pos - start
	for _, b := range pool {
		if eligible(b, avoid) && b.weight() > round {
			if j == 0 {
				return b
			}
			j--
		}
	}
	return nil
}

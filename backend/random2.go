package backend

import "math/rand/v2"

// Random2 is the power of two choices: it draws two distinct eligible backends
// at random and takes the one with fewer active connections (the first drawn
// on a tie). It spreads load almost as evenly as LeastConn without every
// caller converging on the same backend. Weight is not considered.
//
// The zero value is ready to use. It draws from math/rand/v2's global source,
// which is safe for concurrent use.
type Random2 struct{}

var _ Selector = (*Random2)(nil)

// Select returns the less loaded of two random eligible backends, the only
// eligible one if there is one, or nil.
func (*Random2) Select(pool, avoid []*Backend) *Backend {
	k := 0
	for _, b := range pool {
		if eligible(b, avoid) {
			k++
		}
	}
	switch k {
	case 0:
		return nil
	case 1:
		return firstEligible(pool, avoid, 0)
	}
	i, j := rand.IntN(k), rand.IntN(k-1)
	if j >= i {
		j++
	}
	var first, second *Backend
	seen := 0
	for _, b := range pool {
		if !eligible(b, avoid) {
			continue
		}
		switch seen {
		case i:
			first = b
		case j:
			second = b
		}
		seen++
	}
	switch {
	case first == nil && second == nil:
		// The pool changed between the passes.
		return firstEligible(pool, avoid, i%len(pool))
	case first == nil:
		return second
	case second == nil:
		return first
	case second.Active() < first.Active():
		return second
	}
	return first
}

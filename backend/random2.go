package backend

import "math/rand/v2"

// Random2 is the power of two choices: it draws two distinct eligible backends
// at random and takes the one with fewer active connections (the first drawn
// on a tie). It spreads load almost as evenly as LeastConn without every
// caller converging on the same backend. Weight is not considered.
//
// A selection draws from a list of the available backends rebuilt off the
// data path once per change of the pool (see prepared), redrawing the rare draw that hits an
// avoided backend, so it costs the same with 3 backends or 3,000. The zero
// value is ready to use; it must not be copied after first use. It draws
// from math/rand/v2's global source, which is safe for concurrent use.
type Random2 struct {
	list prepared[[]*Backend]
}

var _ Selector = (*Random2)(nil)

// Select returns the less loaded of two random eligible backends, the only
// eligible one if there is one, or nil.
func (r *Random2) Select(reg *Registry, _ uint64, avoid []*Backend) *Backend {
	l, stale := r.list.getOffering(reg, buildUsable, noneUsable)
	if stale {
		return fewEligible(reg.All(), avoid)
	}
	u := *l
	if len(u) == 0 {
		return nil
	}
	var first, second *Backend
	if len(u) > 1 {
		for range 2 * (len(avoid) + probes) {
			i := rand.IntN(len(u))
			if first != nil && u[i] == first || !eligible(u[i], avoid) {
				continue
			}
			if first == nil {
				first = u[i]
				continue
			}
			second = u[i]
			break
		}
	}
	if second == nil {
		// Too few eligible backends to find two by drawing (or the list
		// is out of date): count them, in the pool itself when the list
		// has none.
		if b := fewEligible(u, avoid); b != nil {
			return b
		}
		return fewEligible(reg.All(), avoid)
	}
	if second.Active() < first.Active() {
		return second
	}
	return first
}

// fewEligible is Random2's choice by a pass over u: the only eligible
// backend, or the less loaded of two drawn among the k eligible ones.
func fewEligible(u, avoid []*Backend) *Backend {
	k := 0
	for _, b := range u {
		if eligible(b, avoid) {
			k++
		}
	}
	switch k {
	case 0:
		return nil
	case 1:
		return firstEligible(u, avoid, 0)
	}
	i, j := rand.IntN(k), rand.IntN(k-1)
	if j >= i {
		j++
	}
	var first, second *Backend
	seen := 0
	for _, b := range u {
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
	case first == nil || second == nil:
		return firstEligible(u, avoid, 0) // the pool changed between the passes
	case second.Active() < first.Active():
		return second
	}
	return first
}

// buildUsable prepares the list of the available backends of reg.
func buildUsable(reg *Registry, _ int) *[]*Backend {
	unorder(reg)
	u := usable(reg)
	return &u
}

// Prepare builds the list of reg's available backends (see Selector).
func (r *Random2) Prepare(reg *Registry) { r.list.prepare(reg, buildUsable, 0) }

// noneUsable reports whether a list was built with no backend available.
func noneUsable(l *[]*Backend) bool { return len(*l) == 0 }

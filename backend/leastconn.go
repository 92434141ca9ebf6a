package backend

import "sync/atomic"

// LeastConn picks the eligible backend with the fewest active connections.
// Ties are broken by a counter that advances on every call and chooses among
// the tied backends in turn, so equally loaded backends share new clients
// evenly instead of the first one taking them all. Weight is not considered.
//
// The zero value is ready to use; it must not be copied after first use.
type LeastConn struct {
	next atomic.Uint64
}

var _ Selector = (*LeastConn)(nil)

// Select returns the least loaded eligible backend, or nil.
func (l *LeastConn) Select(pool, avoid []*Backend) *Backend {
	var first *Backend
	var least int64
	ties := 0
	for _, b := range pool {
		if !eligible(b, avoid) {
			continue
		}
		switch a := b.Active(); {
		case first == nil || a < least:
			first, least, ties = b, a, 1
		case a == least:
			ties++
		}
	}
	if ties <= 1 {
		return first
	}
	j := int((l.next.Add(1) - 1) % uint64(ties))
	for _, b := range pool {
		if eligible(b, avoid) && b.Active() == least {
			if j == 0 {
				return b
			}
			j--
		}
	}
	// Loads moved between the passes; the first least loaded will do.
	if eligible(first, avoid) {
		return first
	}
	return firstEligible(pool, avoid, 0)
}

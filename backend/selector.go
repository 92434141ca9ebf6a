package backend

import (
	"fmt"
	"slices"
)

// Selector chooses a backend for a new client among the available backends of
// pool that are not in avoid. It returns nil when none qualifies.
//
// avoid holds backends that must not be chosen this time, typically the ones
// whose dial just failed during failover; it is compared by pointer and is
// usually nil or short. Implementations are safe for concurrent use and do
// not allocate.
type Selector interface {
	Select(pool []*Backend, avoid []*Backend) *Backend
}

// NewSelector returns the Selector for a balance policy: "roundrobin",
// "leastconn" or "random2".
func NewSelector(policy string) (Selector, error) {
	switch policy {
	case "roundrobin":
		return new(RoundRobin), nil
	case "leastconn":
		return new(LeastConn), nil
	case "random2":
		return new(Random2), nil
	}
	return nil, fmt.Errorf("unknown balance policy %q (want roundrobin, leastconn or random2)", policy)
}

// eligible reports whether b may be selected: it is available and not avoided.
func eligible(b *Backend, avoid []*Backend) bool {
	return b.Available() && !slices.Contains(avoid, b)
}

// firstEligible returns the first eligible backend of pool at or after index
// start, wrapping around, or nil. Policies fall back on it when the pool's
// state changed between two passes over it.
func firstEligible(pool, avoid []*Backend, start int) *Backend {
	n := len(pool)
	for i := range n {
		if b := pool[(start+i)%n]; eligible(b, avoid) {
			return b
		}
	}
	return nil
}

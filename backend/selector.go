package backend

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Selector chooses a backend for a new client among the available backends of
// reg that are not in avoid. It returns nil when none qualifies.
//
// key is the client's hash (see AddrHash): the Maglev policy places a client
// by it, so that every instance places it alike; the other policies ignore
// it. avoid holds backends that must not be chosen this time, the ones whose
// dial just failed during failover (see Attempt); it is compared by pointer
// and is short (at most MaxTries).
//
// Implementations are safe for concurrent use and do not allocate. Each
// keeps a structure prepared over the available backends (the weighted
// cycle, the least-connections order, the Maglev table) so that a selection
// does not scan the pool: see prepared for when it is rebuilt.
type Selector interface {
	Select(reg *Registry, key uint64, avoid []*Backend) *Backend
}

// Option adjusts a Selector that NewSelector builds.
type Option func(*options)

type options struct {
	tableSize int
}

// TableSize sets the size of the Maglev lookup table, a prime (see
// DefaultTableSize); other policies ignore it. Zero means the default.
func TableSize(m int) Option { return func(o *options) { o.tableSize = m } }

// NewSelector returns the Selector for a balance policy: "roundrobin",
// "leastconn", "random2" or "maglev".
func NewSelector(policy string, opts ...Option) (Selector, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch policy {
	case "roundrobin":
		return new(RoundRobin), nil
	case "leastconn":
		return new(LeastConn), nil
	case "random2":
		return new(Random2), nil
	case "maglev":
		return NewMaglev(o.tableSize)
	}
	return nil, fmt.Errorf("unknown balance policy %q (want roundrobin, leastconn, random2 or maglev)", policy)
}

// eligible reports whether b may be selected: it is available and not avoided.
func eligible(b *Backend, avoid []*Backend) bool {
	return b.Available() && !slices.Contains(avoid, b)
}

// firstEligible returns the first eligible backend of pool at or after index
// start, wrapping around, or nil. Policies fall back on it when their
// prepared structure is out of date and offers nothing eligible.
func firstEligible(pool, avoid []*Backend, start int) *Backend {
	n := len(pool)
	for i := range n {
		if b := pool[(start+i)%n]; eligible(b, avoid) {
			return b
		}
	}
	return nil
}

// usable returns the available backends of reg, in its order.
func usable(reg *Registry) []*Backend {
	u := make([]*Backend, 0, reg.Len())
	for _, b := range reg.All() {
		if b.Available() {
			u = append(u, b)
		}
	}
	return u
}

// prepared holds a selector's structure of type T built over one registry
// snapshot as it stood at one value of stateEpoch.
//
// A selection that finds the structure current (the same registry, no
// change of availability or weight since) uses it: one atomic load. One
// that finds it out of date rebuilds it, unless another selection is
// rebuilding it at that moment: then it uses the old one, whose every
// choice it checks against the backend's live state anyway (a structure
// for another registry is never used). A rebuild costs one pass over the
// pool, once per change of health, admin state or config: a selection right
// after a change sees it, so the exact shares of roundrobin hold from the
// first selection after it, and no selection waits for another except the
// very first ones for a new registry.
type prepared[T any] struct {
	cur atomic.Pointer[built[T]]
	mu  sync.Mutex // held while building
}

// built is one prepared structure and what it was built from.
type built[T any] struct {
	reg   *Registry
	epoch uint64
	val   *T
}

// get returns the structure for reg, building it with build(reg, arg) when
// the one at hand is out of date. build must be a function, not a closure,
// so that the call does not allocate; arg is what it needs besides reg
// (the Maglev table size).
func (p *prepared[T]) get(reg *Registry, build func(*Registry, int) *T, arg int) *T {
	e := stateEpoch.Load()
	c := p.cur.Load()
	if c != nil && c.reg == reg && c.epoch == e {
		return c.val
	}
	if c != nil && c.reg == reg {
		if !p.mu.TryLock() {
			return c.val // being rebuilt: checked choice by choice
		}
	} else {
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	// Read the epoch before the state the build reads, so that a change
	// during the build leaves it out of date, not marked current.
	e = stateEpoch.Load()
	if c = p.cur.Load(); c != nil && c.reg == reg && c.epoch == e {
		return c.val
	}
	c = &built[T]{reg: reg, epoch: e, val: build(reg, arg)}
	p.cur.Store(c)
	return c.val
}

// invalidate marks the structure out of date, so that the next selection
// rebuilds it.
func (p *prepared[T]) invalidate() {
	if c := p.cur.Load(); c != nil {
		p.cur.CompareAndSwap(c, &built[T]{reg: c.reg, epoch: c.epoch - 1, val: c.val})
	}
}

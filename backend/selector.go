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
	// Prepare builds the structure that Select keeps for reg, unless it
	// is ready, so that no selection in reg waits for it. Pool.Reload
	// calls it before it publishes a new registry; it may take a few
	// milliseconds (a Maglev table) and is safe to call concurrently
	// with Select.
	Prepare(reg *Registry)
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
// The data path never waits for a build of a registry it was prepared for.
// A selection that finds the structure current (the same registry, no
// change of availability or weight since) uses it: one atomic load. One
// that finds it out of date (a health transition, an admin state, another
// LeastConn taking the order over) uses it all the same, checking each
// choice against the backend's live state as every policy does, and starts
// a rebuild in the background (see refresh): until it lands, a backend that
// went down is skipped and one that came up gets no clients. A structure for
// another registry is never used: Pool.Reload prepares the next registry's
// before it publishes it (see Selector.Prepare), so only a registry that
// nobody prepared (a selector used without a Pool, or a selection for a
// registry that a reload has since replaced) is built by the selection that
// first meets it, the others waiting for that build.
type prepared[T any] struct {
	cur        atomic.Pointer[built[T]]
	mu         sync.Mutex  // held while building
	rebuilding atomic.Bool // a background rebuild is running
}

// built is one prepared structure and what it was built from.
type built[T any] struct {
	reg   *Registry
	epoch uint64
	val   *T
}

// get returns the structure for reg, starting a background rebuild when
// the one at hand is out of date, and building it here only when there is
// none for reg. build must be a function, not a closure, so that the call
// does not allocate; arg is what it needs besides reg (the Maglev table
// size).
func (p *prepared[T]) get(reg *Registry, build func(*Registry, int) *T, arg int) *T {
	c := p.cur.Load()
	if c != nil && c.reg == reg {
		if c.epoch != stateEpoch.Load() {
			p.refresh(reg, build, arg)
		}
		return c.val
	}
	return p.prepare(reg, build, arg)
}

// getOffering is get for a structure that is empty when it was built
// while no backend was available (empty says which). When it is empty and
// out of date, some backends may be available by now: it reports stale,
// and the caller looks over the pool itself. When it is empty and current,
// a rebuild may have landed between get and that check, so it is read
// once more.
func (p *prepared[T]) getOffering(reg *Registry, build func(*Registry, int) *T, empty func(*T) bool) (v *T, stale bool) {
	if v = p.get(reg, build, 0); !empty(v) {
		return v, false
	}
	if !p.current(reg) {
		return v, true
	}
	return p.get(reg, build, 0), false
}

// forRegistry is get for a structure that depends on the registry alone,
// not on the backends' availability (the Maglev table): it is built once
// per registry and never rebuilt for a change of health or admin state.
func (p *prepared[T]) forRegistry(reg *Registry, build func(*Registry, int) *T, arg int) *T {
	if c := p.cur.Load(); c != nil && c.reg == reg {
		return c.val
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.cur.Load(); c != nil && c.reg == reg {
		return c.val // built while this one waited
	}
	c := &built[T]{reg: reg, val: build(reg, arg)}
	p.cur.Store(c)
	return c.val
}

// prepare builds the structure for reg unless the one at hand is for reg
// and current, and returns it. It waits for any build under way.
func (p *prepared[T]) prepare(reg *Registry, build func(*Registry, int) *T, arg int) *T {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Read the epoch before the state the build reads, so that a change
	// during the build leaves it out of date, not marked current.
	e := stateEpoch.Load()
	if c := p.cur.Load(); c != nil && c.reg == reg && c.epoch == e {
		return c.val
	}
	c := &built[T]{reg: reg, epoch: e, val: build(reg, arg)}
	p.cur.Store(c)
	return c.val
}

// refresh starts the rebuild of the out-of-date structure for reg in a
// goroutine of its own, unless one is running. That goroutine belongs to
// the selector and lives only as long as the work: it rebuilds until the
// structure is current (changes may come in during a build) or is for
// another registry, then ends, so there is never more than one per
// structure and none once the pool is quiet. A change that comes in just
// as it ends is noticed by the next selection, which starts another.
func (p *prepared[T]) refresh(reg *Registry, build func(*Registry, int) *T, arg int) {
	if !p.rebuilding.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.rebuilding.Store(false)
		for p.rebuild(reg, build, arg) {
		}
	}()
}

// rebuild replaces the structure for reg by one built now, if it is still
// the one at hand and out of date, and reports whether it did.
func (p *prepared[T]) rebuild(reg *Registry, build func(*Registry, int) *T, arg int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := stateEpoch.Load()
	c := p.cur.Load()
	if c == nil || c.reg != reg || c.epoch == e {
		return false
	}
	// invalidate may replace c meanwhile; the new structure supersedes it.
	p.cur.Store(&built[T]{reg: reg, epoch: e, val: build(reg, arg)})
	return true
}

// current reports whether the structure is for reg and up to date: what a
// selection in reg finds ready.
func (p *prepared[T]) current(reg *Registry) bool {
	c := p.cur.Load()
	return c != nil && c.reg == reg && c.epoch == stateEpoch.Load()
}

// invalidate marks the structure out of date, so that the next selection
// has it rebuilt.
func (p *prepared[T]) invalidate() {
	if c := p.cur.Load(); c != nil {
		p.cur.CompareAndSwap(c, &built[T]{reg: c.reg, epoch: c.epoch - 1, val: c.val})
	}
}

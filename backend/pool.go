package backend

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Spec is what the config says of one backend: its id, the address to dial,
// its weight, and the PROXY protocol header it wants. A reload hands the
// Pool one Spec per backend.
type Spec struct {
	ID      string
	Address string
	Weight  int
	// SendProxy is the version of the PROXY protocol header (1 or 2) that
	// starts every connection to the backend, naming the client; 0 for
	// none.
	SendProxy byte
}

// NewFromSpec returns a backend that is up, ready and idle, as s says.
func NewFromSpec(s Spec) *Backend {
	b := &Backend{ID: s.ID}
	b.spec.Store(&s)
	return b
}

// SendProxy returns the version of the PROXY protocol header the backend
// wants first on each connection, 0 for none. A reload may change it;
// connections already open keep what they were sent.
func (b *Backend) SendProxy() byte { return b.spec.Load().SendProxy }

// Address returns the host:port the data path and the prober dial. A reload
// may change it; connections already open stay with the old address.
func (b *Backend) Address() string { return b.spec.Load().Address }

// Weight returns the backend's share under weighted policies as configured;
// selectors treat values below 1 as 1. A reload may change it.
func (b *Backend) Weight() int { return b.spec.Load().Weight }

// Removed reports whether a reload took the backend out of the pool. A
// removed backend is never available: it gets no new clients, and clients
// pinned to it move at their next connection or request, while its open
// connections run on until they end.
func (b *Backend) Removed() bool { return b.removed.Load() }

// Pool is the live backend pool: the current Registry, which a reload
// replaces whole. The data path reads it with Registry, one atomic load and
// no lock; Reload builds the next Registry and swaps it in.
type Pool struct {
	// Repins counts the clients moved off their pinned backend, by
	// reason, for the life of the pool.
	Repins Repins

	cur      atomic.Pointer[Registry]
	joinDown atomic.Bool

	mu      sync.Mutex    // serialises reloads; guards changed
	changed chan struct{} // closed when cur is replaced, then renewed
}

// NewPool returns a live pool that starts with r (nil: empty).
func NewPool(r *Registry) *Pool {
	p := &Pool{changed: make(chan struct{})}
	if r == nil {
		r = &Registry{byID: map[string]*Backend{}}
	}
	p.cur.Store(r)
	return p
}

// Registry returns the current backends. The data path takes it once per
// connection or request and uses that snapshot throughout, so that a reload
// in between never shows it half a pool. A nil Pool has no backends.
func (p *Pool) Registry() *Registry {
	if p == nil {
		return nil
	}
	return p.cur.Load()
}

// Watch returns the current backends and a channel that is closed when a
// reload replaces them, for whoever follows the pool outside the data path
// (the prober). A nil Pool never changes.
func (p *Pool) Watch() (*Registry, <-chan struct{}) {
	if p == nil {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.Load(), p.changed
}

// SetJoinDown says how the backends that later reloads add start: down
// (true), so that health checks must pass rise times before they get
// clients, or up (false, the default), for a pool without health checks,
// where nothing else would ever bring them up.
func (p *Pool) SetJoinDown(down bool) { p.joinDown.Store(down) }

// Reload makes specs, in their order, the pool. A backend whose id was
// already in the pool is kept, with its health, drain state, connection
// counts and pins: a new address or weight is applied to it in place. A
// new id joins as a new backend (see SetJoinDown). A backend whose id is
// gone is marked removed (see Backend.Removed) and dropped from the pool.
//
// Specs are checked the way NewRegistry checks backends (no empty or
// duplicate id), and an empty address is refused; on an error nothing
// changes. Reloads are serialised; readers never wait for one.
//
// prepare names the selectors that will select from the pool after the
// reload (the one in use and, when the policy changes, the next): each is
// made ready for the new registry (see Selector.Prepare) before the
// registry is published, so that no client waits for a build. With no
// change to the backends they are made ready for the current one.
func (p *Pool) Reload(specs []Spec, prepare ...Selector) (Changes, error) {
	if err := checkSpecs(specs); err != nil {
		return Changes{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur.Load()

	var ch Changes
	all := make([]*Backend, 0, len(specs))
	type edit struct {
		b    *Backend
		spec *Spec
	}
	var edits []edit
	for _, s := range specs {
		b := old.Get(s.ID)
		if b == nil {
			b = NewFromSpec(s)
			if p.joinDown.Load() {
				b.down.Store(true)
			}
			ch.Added = append(ch.Added, s.ID)
			all = append(all, b)
			continue
		}
		if was := b.spec.Load(); *was != s {
			ch.Updated = append(ch.Updated, Update{ID: s.ID, From: *was, To: s})
			edits = append(edits, edit{b, &s})
		}
		all = append(all, b)
	}
	r, err := NewRegistry(all)
	if err != nil {
		return Changes{}, err // checkSpecs should have caught it
	}
	var gone []*Backend
	for _, b := range old.All() {
		if r.Get(b.ID) == nil {
			ch.Removed = append(ch.Removed, b.ID)
			gone = append(gone, b)
		}
	}
	if ch.Empty() && sameOrder(old.All(), r.All()) {
		for _, s := range prepare {
			s.Prepare(old)
		}
		return ch, nil
	}
	for _, e := range edits {
		e.b.spec.Store(e.spec)
	}
	// The weights changed in place and the removed backends make the
	// structures over the old registry out of date; those over r are
	// built after that, so that they are current when r is published.
	availabilityChanged()
	for _, s := range prepare {
		s.Prepare(r)
	}
	p.cur.Store(r)
	for _, b := range gone {
		b.removed.Store(true)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return ch, nil
}

// checkSpecs rejects specs that cannot make a pool, naming the first fault.
func checkSpecs(specs []Spec) error {
	seen := make(map[string]struct{}, len(specs))
	for i, s := range specs {
		switch {
		case s.ID == "":
			return fmt.Errorf("backend %d (%s) has an empty id", i, s.Address)
		case s.Address == "":
			return fmt.Errorf("backend %d (%s) has an empty address", i, s.ID)
		}
		if _, dup := seen[s.ID]; dup {
			return fmt.Errorf("backend %d: duplicate id %q", i, s.ID)
		}
		seen[s.ID] = struct{}{}
	}
	return nil
}

// sameOrder reports whether a and b hold the same backends in the same
// order.
func sameOrder(a, b []*Backend) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Changes is what a Reload did to the pool.
type Changes struct {
	// Added holds the ids of the backends that joined, in config order.
	Added []string
	// Removed holds the ids of the backends that left, in their former
	// order.
	Removed []string
	// Updated holds the kept backends whose address or weight changed, in
	// config order.
	Updated []Update
}

// Update is a kept backend whose address or weight a reload changed.
type Update struct {
	ID       string
	From, To Spec
}

// Empty reports whether the reload changed no backend.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Updated) == 0
}

// Items returns one entry per change: "+app-04" for a backend that joined,
// "-app-03" for one that left, and "~app-02(weight 1->3)" (or "address
// a->b", or both, comma-separated) for one that changed, in that order.
func (c Changes) Items() []string {
	items := make([]string, 0, len(c.Added)+len(c.Removed)+len(c.Updated))
	for _, id := range c.Added {
		items = append(items, "+"+id)
	}
	for _, id := range c.Removed {
		items = append(items, "-"+id)
	}
	for _, u := range c.Updated {
		items = append(items, u.String())
	}
	return items
}

// String returns the changes as Items separated by spaces, such as
// "+app-04 -app-03 ~app-02(weight 1->3)", or "no change".
func (c Changes) String() string {
	if c.Empty() {
		return "no change"
	}
	return strings.Join(c.Items(), " ")
}

// String returns "~ID(address A->B, weight W->V)", naming only what changed.
func (u Update) String() string {
	var parts []string
	if u.From.Address != u.To.Address {
		parts = append(parts, "address "+u.From.Address+"->"+u.To.Address)
	}
	if u.From.Weight != u.To.Weight {
		parts = append(parts, "weight "+strconv.Itoa(u.From.Weight)+"->"+strconv.Itoa(u.To.Weight))
	}
	if u.From.SendProxy != u.To.SendProxy {
		parts = append(parts, "send_proxy "+proxyName(u.From.SendProxy)+"->"+proxyName(u.To.SendProxy))
	}
	return "~" + u.ID + "(" + strings.Join(parts, ", ") + ")"
}

// proxyName names a PROXY protocol version as send_proxy writes it.
func proxyName(v byte) string {
	if v == 0 {
		return "none"
	}
	return "v" + strconv.Itoa(int(v))
}

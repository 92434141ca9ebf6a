package backend

import (
	"slices"
	"time"
)

// MaxTries bounds the backends one client tries before it is refused (L4)
// or answered 503 (L7): a pool where that many dials in a row fail is in
// an outage that more tries would only prolong, and the bound keeps the
// avoid list of a selection short (see Selector).
const MaxTries = 8

// Attempt is the choice of backend for one client, written once for both
// L4 engines and L7: the backend it is pinned to, while that keeps its
// pinned clients (up, and ready or draining before its deadline: see
// KeepsPinned) and has not failed in this attempt; else the selector's
// choice among the available backends that have not failed. The caller
// dials what Next returns and, when that fails, tells Fail and asks Next
// again, one step at a time, so that the L4 event loop can dial without
// blocking between the steps.
//
// An Attempt is a value that allocates nothing once it has a home: the L4
// event loop and L7 keep it in their per-connection session, reused. (A
// local Attempt moves to the heap, because its list of failed backends is
// handed to the Selector interface: the goroutine engine pays that one
// allocation per connection, as it did for its avoid list before.) It
// reads one registry snapshot throughout, so a reload in the middle never
// shows it half a pool.
type Attempt struct {
	reg    *Registry
	sel    Selector
	key    uint64
	pin    *Backend
	pinned bool // Next returned pin
	failed [MaxTries]*Backend
	tries  int
}

// NewAttempt begins the choice for a client whose key (see AddrHash) is
// key and who is pinned to pin (nil: to none), among the backends of reg
// placed by sel.
func NewAttempt(reg *Registry, sel Selector, key uint64, pin *Backend) Attempt {
	return Attempt{reg: reg, sel: sel, key: key, pin: pin}
}

// Registry returns the snapshot the attempt chooses from.
func (a *Attempt) Registry() *Registry { return a.reg }

// Next returns the backend to try next, or nil when none is left: every
// available backend failed, or MaxTries did.
func (a *Attempt) Next() *Backend {
	a.pinned = false
	if a.tries == len(a.failed) {
		return nil
	}
	failed := a.failed[:a.tries]
	// A ready backend keeps its pins without a reading of the clock.
	if b := a.pin; b != nil && (b.Available() || b.KeepsPinned(time.Now())) && !slices.Contains(failed, b) {
		a.pinned = true
		return b
	}
	return a.sel.Select(a.reg, a.key, failed)
}

// Pinned reports whether the backend Next last returned is the one the
// client was pinned to, rather than a new choice.
func (a *Attempt) Pinned() bool { return a.pinned }

// Follow says that the client is now pinned to b (nil: to none): its pin
// was just set (L4 pins a new choice in the affinity table), or another
// connection of the same client moved it first. Next offers b while it
// keeps its pinned clients and has not failed.
func (a *Attempt) Follow(b *Backend) {
	a.pin = b
}

// Fail records that b, returned by Next, failed: Next will not return it
// again in this attempt. Reporting the failure to passive health is the
// caller's, which knows whether it was the backend's fault.
func (a *Attempt) Fail(b *Backend) {
	if a.tries < len(a.failed) {
		a.failed[a.tries] = b
		a.tries++
	}
}

// WhyRepin says why a client pinned to from is moved by this attempt (see
// the package function WhyRepin), the backends that failed in it counted
// as failed.
func (a *Attempt) WhyRepin(from *Backend) RepinReason {
	return WhyRepin(from, a.failed[:a.tries])
}

// Tries returns how many backends failed so far.
func (a *Attempt) Tries() int { return a.tries }

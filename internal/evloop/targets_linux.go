//go:build linux

package evloop

import "errors"

// ErrNotLiteral is the dial error of a backend that a reload gave a host
// name while an event loop serves: a loop dials IP literals only.
var ErrNotLiteral = errors.New("address is not an IP literal, which the event loop needs (a restart serves names)")

// Targets is a loop's cache of the connect targets of its backends, B,
// which live in registries R (see TargetFor). A backend's target is built
// on first use (it joined with a reload) and again when its address
// changed; when a reload has replaced the registry, the targets of the
// backends it removed go at the next miss. Its zero value is ready; it is
// the loop's own, never shared.
type Targets[B comparable, R interface {
	comparable
	Holds(B) bool
}] struct {
	m   map[B]*Target
	reg R // the registry m was last pruned for
}

// Get returns the target of b, whose address is addr, in the registry
// reg, or nil when addr is not an IP literal.
func (ts *Targets[B, R]) Get(b B, addr string, reg R) *Target {
	if t := ts.m[b]; t != nil && t.Address == addr {
		return t
	}
	if reg != ts.reg {
		ts.reg = reg
		for old := range ts.m {
			if !reg.Holds(old) {
				delete(ts.m, old)
			}
		}
	}
	t := TargetFor(addr)
	if t != nil {
		if ts.m == nil {
			ts.m = make(map[B]*Target)
		}
		ts.m[b] = t
	}
	return t
}

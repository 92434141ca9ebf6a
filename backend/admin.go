package backend

import (
	"fmt"
	"math"
	"time"
)

// AdminState is the state an operator puts a backend in, independent of its
// health. It decides which clients may be sent there: new clients only to a
// Ready backend; pinned clients (an L4 pin, an L7 cookie) to a Ready one or to
// one draining before its deadline.
type AdminState uint8

const (
	// Ready takes new and pinned clients. It is the zero value: a backend
	// nobody touched serves.
	Ready AdminState = iota
	// Drain takes no new clients but keeps its pinned ones, until its
	// deadline if it has one, so that their sessions end there.
	Drain
	// Maint takes nobody: pinned clients move at their next connection or
	// request, as when the backend is down.
	Maint
)

// String returns "ready", "drain" or "maint", the names ParseAdminState
// accepts.
func (s AdminState) String() string {
	switch s {
	case Ready:
		return "ready"
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return fmt.Sprintf("AdminState(%d)", uint8(s))
}

// ParseAdminState returns the state named s: "ready", "drain" or "maint",
// spelled exactly so.
func ParseAdminState(s string) (AdminState, error) {
	switch s {
	case "ready":
		return Ready, nil
	case "drain":
		return Drain, nil
	case "maint":
		return Maint, nil
	}
	return Ready, fmt.Errorf("unknown admin state %q: want ready, drain or maint", s)
}

// The admin state and its drain deadline share one word so that readers
// never see the state of one change with the deadline of another: the low
// two bits hold the state, the rest the deadline in Unix nanoseconds rounded
// up to a multiple of four (0: no deadline).
const (
	adminStateBits = 3
	// minDeadline stands for a deadline at or before 1970, long past.
	minDeadline = adminStateBits + 1
	// maxDeadline stands for a deadline after 2262, which Unix nanoseconds
	// cannot hold.
	maxDeadline = math.MaxInt64 &^ adminStateBits
)

// packAdmin returns the word for state s with deadline until (the zero time:
// none). Only Drain keeps a deadline; any state beyond Maint counts as Maint,
// which sends nobody to the backend.
func packAdmin(s AdminState, until time.Time) int64 {
	if s > Maint {
		s = Maint
	}
	if s != Drain || until.IsZero() {
		return int64(s)
	}
	var n int64
	switch {
	case !until.After(time.Unix(0, minDeadline)):
		n = minDeadline
	case until.After(time.Unix(0, maxDeadline)):
		n = maxDeadline
	default:
		n = (until.UnixNano() + adminStateBits) &^ adminStateBits
	}
	return n | int64(s)
}

// SetAdmin puts the backend in state s. For Drain, until is the deadline
// after which pinned clients are moved as from a backend in maintenance; the
// zero time means no deadline. Other states ignore until. The change is one
// atomic store: the data path sees it at its next decision, without a lock.
func (b *Backend) SetAdmin(s AdminState, until time.Time) {
	b.admin.Store(packAdmin(s, until))
	availabilityChanged()
}

// Admin returns the backend's admin state and, for a drain with a deadline,
// that deadline (to within 4 ns; the zero time otherwise).
func (b *Backend) Admin() (AdminState, time.Time) {
	w := b.admin.Load()
	s := AdminState(w & adminStateBits)
	if n := w &^ adminStateBits; n != 0 {
		return s, time.Unix(0, n)
	}
	return s, time.Time{}
}

// Available reports whether new clients may be sent to the backend: it is up,
// Ready, and still in the pool. Selectors choose only among available
// backends.
func (b *Backend) Available() bool {
	return !b.down.Load() && AdminState(b.admin.Load()&adminStateBits) == Ready && !b.removed.Load()
}

// KeepsPinned reports whether a client pinned to the backend may still be
// sent there at time now: it is up, and Ready or draining with no deadline
// or one after now, and still in the pool. A pinned client it does not keep
// is moved, as from a backend that is down.
//
// The data path checks Available first and calls KeepsPinned, with the
// current time, only when that fails, so that a Ready backend costs no
// reading of the clock.
func (b *Backend) KeepsPinned(now time.Time) bool {
	if b.down.Load() || b.removed.Load() {
		return false
	}
	w := b.admin.Load()
	switch AdminState(w & adminStateBits) {
	case Ready:
		return true
	case Drain:
		until := w &^ adminStateBits
		return until == 0 || now.UnixNano() < until
	}
	return false
}

// Served returns how many requests (L7) or connections (L4) the data path
// sent to the backend.
func (b *Backend) Served() uint64 { return b.served.Load() }

// CountServed records one request (L7) or connection (L4) sent to the
// backend; the data path calls it once per request or connection, at the
// point the backend it chose is used.
func (b *Backend) CountServed() { b.served.Add(1) }

package backend

import (
	"slices"
	"sync/atomic"
	"time"
)

// RepinReason says why a pinned client (an L4 pin, an L7 cookie) was moved
// to another backend.
type RepinReason uint8

const (
	// RepinDown: health checks mark the backend down.
	RepinDown RepinReason = iota
	// RepinMaint: the backend is in maintenance.
	RepinMaint
	// RepinDrainDeadline: the backend drains and its deadline has passed.
	RepinDrainDeadline
	// RepinRemoved: a reload took the backend out of the pool.
	RepinRemoved
	// RepinFailed: connecting to the backend, or the exchange before its
	// answer, failed for this very client.
	RepinFailed

	numRepinReasons
)

// RepinReasons lists every reason, in the order of their values.
var RepinReasons = [numRepinReasons]RepinReason{RepinDown, RepinMaint, RepinDrainDeadline, RepinRemoved, RepinFailed}

// String returns the reason as metrics and the API name it:
// "backend_down", "maint", "drain_deadline", "removed" or "failed".
func (r RepinReason) String() string {
	switch r {
	case RepinDown:
		return "backend_down"
	case RepinMaint:
		return "maint"
	case RepinDrainDeadline:
		return "drain_deadline"
	case RepinRemoved:
		return "removed"
	case RepinFailed:
		return "failed"
	}
	return "unknown"
}

// WhyRepin returns why a client pinned to from is being moved: from is nil
// when its pin names no backend of the pool, and in avoid when it failed
// this client. The checks go in the order the data path makes them, so the
// reason is the first that applies; a backend whose state would keep the
// client can only have lost it by failing it (avoid may then be nil).
func WhyRepin(from *Backend, avoid []*Backend) RepinReason {
	switch {
	case from == nil || from.Removed():
		return RepinRemoved
	case slices.Contains(avoid, from):
		return RepinFailed
	case !from.Up():
		return RepinDown
	}
	switch st, until := from.Admin(); {
	case st == Maint:
		return RepinMaint
	case st == Drain && !until.IsZero() && !time.Now().Before(until):
		return RepinDrainDeadline
	}
	return RepinFailed
}

// Repins counts re-pins by reason. The zero value is ready; the data path
// adds to it without a lock.
type Repins struct {
	n [numRepinReasons]atomic.Uint64
}

// Count records one re-pin for reason r.
func (c *Repins) Count(r RepinReason) {
	if r < numRepinReasons {
		c.n[r].Add(1)
	}
}

// Load returns the re-pins counted for reason r.
func (c *Repins) Load(r RepinReason) uint64 {
	if r >= numRepinReasons {
		return 0
	}
	return c.n[r].Load()
}

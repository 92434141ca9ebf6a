// Package backend owns the backend pool that both front doors share: each
// Backend's identity and live state (health, admin state, counters, all in
// atomics the data path reads without locks), the Registry that groups them,
// the live Pool that a reload replaces the Registry in, the Selector
// policies that choose among available backends, the Attempt through which
// both front doors choose a client's backend and fail over, the Prober that keeps
// their health current (active checks, and the passive failures the
// proxies report), and how a backend is dialled (Dialer). It imports no
// other lbctl package; the instance wiring translates a config into it.
package backend

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one server of the pool. Its ID is fixed at construction; its
// address and weight (see Address and Weight) may be changed by a reload of
// the Pool, and its live state (health, admin state, active connections,
// requests served) is kept in atomics, so that selectors and the data path
// read both without locks while the prober, the operator, the data path and
// reloads write them.
type Backend struct {
	// ID names the backend in configs, cookies and logs ("app-01").
	ID string

	spec    atomic.Pointer[Spec] // address and weight, replaced whole
	removed atomic.Bool          // a reload took the backend out of the pool
	down    atomic.Bool          // inverted so that the zero value is up
	admin   atomic.Int64         // the admin state and its drain deadline: see packAdmin
	active  atomic.Int64
	served  atomic.Uint64
	stats   counters // connections, failures, responses: see counters.go
	// order is the leastconn order this backend's connection count keeps
	// current, if a LeastConn selector placed it in one (see leastconn.go).
	order atomic.Pointer[leaf]

	// mu guards the consecutive pass and fail counts while a check result is
	// folded into the health state.
	mu     sync.Mutex
	passes int
	fails  int
}

// New returns a backend that is up, ready and idle.
func New(id, address string, weight int) *Backend {
	b := &Backend{ID: id}
	b.spec.Store(&Spec{ID: id, Address: address, Weight: weight})
	return b
}

// DefaultConnectTimeout bounds a backend dial when no connect timeout is
// set.
const DefaultConnectTimeout = 3 * time.Second

// Dialer returns the dialer both front doors connect to backends with:
// connect bounds each dial (DefaultConnectTimeout when it is not
// positive), and TCP keep-alive is off, since dead peers are found by the
// proxies' own timeouts and keep-alive would only add three system calls
// to every dial.
func Dialer(connect time.Duration) net.Dialer {
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	return net.Dialer{Timeout: connect, KeepAlive: -1}
}

// Dial opens a TCP connection to the backend with d. The error names the
// backend: "dial app-02 (10.0.0.2:80): connection refused".
//
// Dialer.DialTCP would skip parsing an IP literal, but it binds the socket
// to the zero address first, one more system call per connection than
// letting connect pick the source port.
func (b *Backend) Dial(ctx context.Context, d *net.Dialer) (*net.TCPConn, error) {
	c, err := d.DialContext(ctx, "tcp", b.Address())
	if err != nil {
		b.CountConnectFailure()
		return nil, b.DialError(err)
	}
	b.CountConnected()
	return c.(*net.TCPConn), nil
}

// DialError wraps err, a failed connection attempt to b, so that it names
// the backend the way Dial's errors do.
func (b *Backend) DialError(err error) error {
	return fmt.Errorf("dial %s (%s): %w", b.ID, b.Address(), err)
}

// Up reports whether health checks consider the backend healthy. A backend
// without health checks is always up.
func (b *Backend) Up() bool { return !b.down.Load() }

// Active returns the number of connections currently open to the backend.
func (b *Backend) Active() int64 { return b.active.Load() }

// Acquire records a new connection to the backend. Every Acquire must be
// matched by one Release when the connection ends.
func (b *Backend) Acquire() {
	b.active.Add(1)
	if l := b.order.Load(); l != nil {
		l.moved()
	}
}

// Release records the end of a connection counted by Acquire.
func (b *Backend) Release() {
	b.active.Add(-1)
	if l := b.order.Load(); l != nil {
		l.moved()
	}
}

// stateEpoch counts the changes of any backend's availability or weight:
// health transitions, admin states, reloads. Selectors keep structures
// prepared over the available backends and rebuild them in the background
// when it moves (see prepared). It is one counter for the process rather than one per
// pool because a Backend does not know its pool; a change in one pool
// costs another at most one rebuild.
var stateEpoch atomic.Uint64

// availabilityChanged tells the selectors that some backend's
// availability or weight changed. Call it after the change is stored.
func availabilityChanged() { stateEpoch.Add(1) }

// ConsecutiveFailures returns the number of failed checks (active or
// passive) since the last passing one. It takes the lock that Observe
// folds results under; the data path never asks.
func (b *Backend) ConsecutiveFailures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fails
}

// weight returns the effective weight, at least 1.
func (b *Backend) weight() int {
	return max(b.Weight(), 1)
}

// Transition says how one check result changed a backend's health.
type Transition int

const (
	// Unchanged means the backend kept its state.
	Unchanged Transition = iota
	// WentUp means the backend reached rise consecutive passes while down.
	WentUp
	// WentDown means the backend reached fall consecutive failures while up.
	WentDown
)

// String returns "unchanged", "up" or "down".
func (t Transition) String() string {
	switch t {
	case WentUp:
		return "up"
	case WentDown:
		return "down"
	}
	return "unchanged"
}

// Observe folds one check result into the backend's health: rise consecutive
// passes mark a down backend up, fall consecutive failures mark an up backend
// down. It returns the transition, if any, so that the caller logs each change
// exactly once. Thresholds below 1 are treated as 1.
func (b *Backend) Observe(pass bool, rise, fall int) Transition {
	rise, fall = max(rise, 1), max(fall, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if pass {
		b.fails = 0
		b.passes++
		if b.down.Load() && b.passes >= rise {
			b.down.Store(false)
			availabilityChanged()
			return WentUp
		}
		return Unchanged
	}
	b.passes = 0
	b.fails++
	if !b.down.Load() && b.fails >= fall {
		b.down.Store(true)
		availabilityChanged()
		return WentDown
	}
	return Unchanged
}

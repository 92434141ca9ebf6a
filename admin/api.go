// Package admin is the admin listener of a running lbctl: a JSON API that
// reads and steers the instance (backend admin states, affinity pins,
// reload, the counters of /api/stats), the Prometheus metrics of /metrics,
// and the small client the operator commands use. It is never on
// the data path: every call goes through an Instance, which applies it to
// the live pool and table.
package admin

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// Instance is what the admin API reads and steers: one running lbctl. Its
// methods are called from the API's request goroutines, concurrently.
type Instance interface {
	// Backends returns every configured backend, in config order.
	Backends() []BackendStatus
	// SetAdminState puts backend id into state, as opts say (see
	// StateOptions). source says who asked ("api"). An unknown id is
	// ErrUnknownBackend.
	SetAdminState(id string, state backend.AdminState, opts StateOptions, source string) (BackendStatus, error)
	// Pin returns the live pin of a client key given as an operator types
	// it ("203.0.113.7"); ok is false when the key is not pinned. An error
	// means the key is malformed.
	Pin(key string) (pin PinStatus, ok bool, err error)
	// Pins returns at most limit live pins, all of them or only those to
	// backendID when it is not empty. An unknown backendID is
	// ErrUnknownBackend.
	Pins(backendID string, limit int) ([]PinStatus, error)
	// ForgetPin removes the pin of key; false when it was not pinned. An
	// error means the key is malformed.
	ForgetPin(key string) (bool, error)
	// Reload reads, checks and applies the config file again. A file that
	// fails validation changes nothing and is a *ReloadError carrying
	// every message.
	Reload(ctx context.Context) (ReloadResult, error)
	// NAT returns the NAT view with at most limit sources in each list.
	NAT(limit int) NATView
	// Stats returns a snapshot of the counters, read from the atomics
	// the data path keeps; GET /api/stats and /metrics are built from it.
	Stats() Stats
	// Upgrade starts the binary on disk with the listeners handed over and
	// returns once it is ready to serve; this process then stops accepting
	// and drains. Another upgrade in flight is ErrUpgradeInProgress; any
	// failure leaves this process serving.
	Upgrade(ctx context.Context) (UpgradeResult, error)
}

// StateOptions are the parts of an admin state change besides the state.
type StateOptions struct {
	// For bounds a drain: after it, the backend's pinned clients move
	// too. Zero means no deadline and is the only value for the other
	// states.
	For time.Duration
	// Kill closes the backend's open connections once it is in
	// maintenance, instead of letting them finish; only with Maint.
	Kill bool
}

// BackendStatus is one backend as the API shows it.
type BackendStatus struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// Health is "up" or "down", as the prober last saw it.
	Health string `json:"health"`
	// State is the admin state: "ready", "drain" or "maint".
	State string `json:"state"`
	// DrainUntil is when a bounded drain lets go of its pinned clients;
	// omitted when the backend is not draining or drains without a
	// deadline.
	DrainUntil time.Time `json:"drain_until,omitzero"`
	// Active is the number of open connections to the backend.
	Active int64 `json:"active"`
	// Pinned is the number of clients pinned to the backend: pins in the
	// table (L4), or the distinct clients that came with a cookie it
	// honoured in the last minute or two (L7, an estimate).
	Pinned int `json:"pinned"`
	// Served counts connections (L4) or requests (L7) sent to the backend.
	Served uint64 `json:"served"`
}

// PinStatus is one live affinity pin.
type PinStatus struct {
	// Key is the client key as the table holds it (the source address,
	// masked with the configured prefix).
	Key     string    `json:"key"`
	Backend string    `json:"backend"`
	Expires time.Time `json:"expires"`
}

// ReloadResult is what an applied reload changed.
type ReloadResult struct {
	// Changes lists each change, one per backend or setting
	// ("+app-04", "-app-03", "~app-02(weight 1->3)").
	Changes []string `json:"changes"`
	// Summary is the one line an operator reads
	// ("reloaded: +app-04 -app-03 ~app-02(weight 1->3)").
	Summary string `json:"summary"`
}

// UpgradeResult is what a successful upgrade started.
type UpgradeResult struct {
	// PID is the process id of the new lbctl.
	PID int `json:"pid"`
	// Summary is the one line an operator reads.
	Summary string `json:"summary"`
}

// ErrUpgradeInProgress is the error of an Instance asked to upgrade while
// an upgrade is already in flight, or done.
var ErrUpgradeInProgress = errors.New("an upgrade is already in progress")

// ErrUnknownBackend is the error of an Instance for a backend id that is
// not configured.
var ErrUnknownBackend = errors.New("unknown backend")

// ReloadError is a reload refused because the file failed to load or
// validate; the running config is unchanged.
type ReloadError struct {
	// Messages are every problem found, each with its file and line.
	Messages []string
}

func (e *ReloadError) Error() string {
	return "config not reloaded: " + strings.Join(e.Messages, "; ")
}

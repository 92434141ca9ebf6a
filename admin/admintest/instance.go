// Package admintest provides an in-memory admin.Instance, for tests of
// the admin API and of the commands that call it.
package admintest

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
)

// Instance is an admin.Instance held in memory: three backends (app-01
// and app-02 up, app-03 down) and a pin table that the test fills. Its
// clock stands still at the time it was made (see Now).
type Instance struct {
	mu        sync.Mutex
	backends  []admin.BackendStatus
	pins      map[string]admin.PinStatus
	changes   []string // "id state for source", one per SetAdminState
	pinsLimit int      // the limit of the last Pins call
	reload    func() (admin.ReloadResult, error)
	upgrade   func() (admin.UpgradeResult, error)
	now       time.Time
	nat       admin.NATView
}

// NewInstance returns an Instance with its three backends and no pins.
func NewInstance() *Instance {
	return &Instance{
		backends: []admin.BackendStatus{
			{ID: "app-01", Address: "127.0.0.1:9001", Weight: 1, Health: "up", State: "ready", Active: 2, Pinned: 2, Served: 40},
			{ID: "app-02", Address: "127.0.0.1:9002", Weight: 3, Health: "up", State: "ready", Active: 1, Pinned: 1, Served: 12},
			{ID: "app-03", Address: "127.0.0.1:9003", Weight: 1, Health: "down", State: "ready"},
		},
		pins: map[string]admin.PinStatus{},
		now:  time.Now().UTC().Truncate(time.Second),
		reload: func() (admin.ReloadResult, error) {
			return admin.ReloadResult{Changes: []string{"+app-04"}, Summary: "reloaded: +app-04"}, nil
		},
		upgrade: func() (admin.UpgradeResult, error) {
			return admin.UpgradeResult{PID: 4242, Summary: "upgraded: new process 4242 serves"}, nil
		},
	}
}

var _ admin.Instance = (*Instance)(nil)

// Now is the Instance's clock: pins expire and drains end relative to it.
func (f *Instance) Now() time.Time { return f.now }

// AddPin adds a pin of key to backend that expires ttl after Now.
func (f *Instance) AddPin(key, backend string, ttl time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins[key] = admin.PinStatus{Key: key, Backend: backend, Expires: f.now.Add(ttl)}
}

func (f *Instance) Backends() []admin.BackendStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]admin.BackendStatus(nil), f.backends...)
}

func (f *Instance) SetAdminState(id string, state backend.AdminState, opts admin.StateOptions, source string) (admin.BackendStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.backends {
		b := &f.backends[i]
		if b.ID != id {
			continue
		}
		b.State, b.DrainUntil = state.String(), time.Time{}
		if opts.For > 0 {
			b.DrainUntil = f.now.Add(opts.For)
		}
		change := fmt.Sprintf("%s %s %v %s", id, state, opts.For, source)
		if opts.Kill {
			// Killed connections are gone: the status shows none.
			change += " kill"
			b.Active = 0
		}
		f.changes = append(f.changes, change)
		return *b, nil
	}
	return admin.BackendStatus{}, fmt.Errorf("set %s: %w", id, admin.ErrUnknownBackend)
}

// parseKey accepts what the affinity table would: an address or a prefix.
func parseKey(key string) (string, error) {
	if a, err := netip.ParseAddr(key); err == nil {
		return a.String(), nil
	}
	if p, err := netip.ParsePrefix(key); err == nil {
		return p.String(), nil
	}
	return "", fmt.Errorf("key %q is not an IP address or prefix", key)
}

func (f *Instance) Pin(key string) (admin.PinStatus, bool, error) {
	k, err := parseKey(key)
	if err != nil {
		return admin.PinStatus{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pins[k]
	return p, ok, nil
}

func (f *Instance) Pins(backendID string, limit int) ([]admin.PinStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pinsLimit = limit
	if backendID != "" && !f.known(backendID) {
		return nil, admin.ErrUnknownBackend
	}
	var list []admin.PinStatus
	for _, p := range f.pins {
		if backendID == "" || p.Backend == backendID {
			list = append(list, p)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Key < list[j].Key })
	if len(list) > limit {
		list = list[:limit]
	}
	return list, nil
}

func (f *Instance) known(id string) bool {
	for _, b := range f.backends {
		if b.ID == id {
			return true
		}
	}
	return false
}

func (f *Instance) ForgetPin(key string) (bool, error) {
	k, err := parseKey(key)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pins[k]
	delete(f.pins, k)
	return ok, nil
}

func (f *Instance) Reload(context.Context) (admin.ReloadResult, error) {
	f.mu.Lock()
	reload := f.reload
	f.mu.Unlock()
	return reload()
}

func (f *Instance) Upgrade(context.Context) (admin.UpgradeResult, error) {
	f.mu.Lock()
	upgrade := f.upgrade
	f.mu.Unlock()
	return upgrade()
}

// SetUpgrade makes fn the answer of every Upgrade from now on.
func (f *Instance) SetUpgrade(fn func() (admin.UpgradeResult, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upgrade = fn
}

// Snapshot returns the backends, pins and state changes as text, for tests
// that check that a refused call changed nothing.
func (f *Instance) Snapshot() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.backends, f.pins, f.changes)
}

// Changes returns every SetAdminState call so far, each as
// "id state for source", with " kill" after it when asked.
func (f *Instance) Changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.changes...)
}

// PinsLimit returns the limit of the last Pins call.
func (f *Instance) PinsLimit() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pinsLimit
}

// SetReload makes fn the answer of every Reload from now on.
func (f *Instance) SetReload(fn func() (admin.ReloadResult, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reload = fn
}

// SetNAT makes v the answer of every NAT call from now on (cut to the
// limit asked).
func (f *Instance) SetNAT(v admin.NATView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nat = v
}

// NAT returns the view SetNAT gave, by default an empty L4 one.
func (f *Instance) NAT(limit int) admin.NATView {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.nat
	if v.Mode == "" {
		v = admin.NATView{Mode: "l4", WindowSeconds: 60, IPAffinitySkew: 1, Capacity: 256, ErrorBound: "none counted"}
	}
	v.Sources = append([]admin.NATSource(nil), v.Sources[:min(limit, len(v.Sources))]...)
	v.ByConnections = append([]admin.NATSource(nil), v.ByConnections[:min(limit, len(v.ByConnections))]...)
	return v
}

package admintest

import (
	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
)

// Stats returns the counters of an L4 instance whose backends are the
// Instance's: each backend's connections are its Served count, with no
// failures, and the affinity table holds the pins the test added.
func (f *Instance) Stats() admin.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := admin.Stats{
		Time: f.now, Version: "(devel)", Mode: "l4", Listen: "127.0.0.1:8080", Started: f.now,
		Affinity: &admin.AffinityStats{Entries: len(f.pins), Capacity: 65536},
		Repins:   map[string]uint64{},
		Reload:   admin.ReloadStats{LastOK: true},
	}
	for _, b := range f.backends {
		st.Backends = append(st.Backends, admin.BackendStats{BackendStatus: b, ConnectionsTotal: b.Served})
		st.Front.ActiveConnections += b.Active
		st.Front.ConnectionsTotal += b.Served
	}
	for _, r := range backend.RepinReasons {
		st.Repins[r.String()] = 0
	}
	return st
}

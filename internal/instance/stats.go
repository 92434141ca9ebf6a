package instance

import (
	"context"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
)

// observed is what the instance keeps for Stats beyond the data path's own
// counters: when and as what it started, the access log it owns, and the
// account of reloads and state saves.
type observed struct {
	started           time.Time
	mode              string
	version, revision string
	access            *accesslog.Log // nil when [log] access is off

	saveFailures atomic.Uint64

	reloadMu sync.Mutex // guards reload
	reload   admin.ReloadStats
}

// openObserved starts the account of an instance built from cfg and opens
// its access log, which attachAccessLog then hands to the front door.
func (in *Instance) openObserved(cfg *config.Config) error {
	in.obs.started = time.Now()
	in.obs.mode = cfg.Mode
	in.obs.version, in.obs.revision = buildVersion()
	in.obs.reload.LastOK = true
	log, err := accesslog.Open(cfg.Log.Access, accesslog.DefaultSize)
	if err != nil {
		return err
	}
	in.obs.access = log
	return nil
}

// attachAccessLog hands the access log, if any, to the front door.
func (in *Instance) attachAccessLog() {
	if in.l7 != nil {
		in.l7.AccessLog = in.obs.access
	} else {
		in.l4.AccessLog = in.obs.access
	}
}

// closeAccessLog writes what the access log holds and closes it, waiting
// up to five seconds for a slow output. The front door must have stopped.
func (in *Instance) closeAccessLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := in.obs.access.Close(ctx); err != nil {
		in.log.Warn("access log not closed cleanly", "error", err)
	}
}

// SetVersion sets the version Stats and lbctl_build_info report, for a
// binary whose version was set at link time; otherwise the module's build
// information gives it.
func (in *Instance) SetVersion(v string) {
	if v != "" {
		in.obs.version = v
	}
}

// buildVersion returns the main module's version and VCS revision from
// the build information, "(devel)" and "" when there is none.
func buildVersion() (version, revision string) {
	version = "(devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision
}

// noteReload records the outcome of one reload.
func (in *Instance) noteReload(res admin.ReloadResult, err error) {
	in.obs.reloadMu.Lock()
	defer in.obs.reloadMu.Unlock()
	r := &in.obs.reload
	r.LastTime = time.Now()
	r.LastOK = err == nil
	if err != nil {
		r.ReloadsFailed++
		r.LastSummary = err.Error()
		return
	}
	r.ReloadsOK++
	r.LastSummary = res.Summary
}

// counts returns the front door's connection and request counts.
func (in *Instance) counts() *accept.Counts {
	if in.l7 != nil {
		return in.l7.Counts()
	}
	return in.l4.Counts()
}

// Stats returns a snapshot of the instance's counters. Everything the
// data path counts is read from its atomics; the only locks taken are the
// ones outside the data path (the reload account, the front listener, and
// in L4 the table's shards, one at a time, to count pins per backend).
func (in *Instance) Stats() admin.Stats {
	l7 := in.l7 != nil
	st := admin.Stats{
		Time: time.Now(), Version: in.obs.version, Revision: in.obs.revision, Mode: in.obs.mode,
		Started:           in.obs.started.Truncate(time.Second),
		Repins:            make(map[string]uint64, len(backend.RepinReasons)),
		StateSaveFailures: in.obs.saveFailures.Load(),
	}
	if ln := in.frontListener(); ln != nil {
		st.Listen = ln.Addr().String()
	}
	c := in.counts()
	st.Front = admin.FrontStats{ActiveConnections: c.Open(), ConnectionsTotal: c.Accepted(), RequestsTotal: c.Requests(), ProxyRefused: c.ProxyRefused()}
	if in.l4 != nil {
		st.Front.LoopConnections = in.l4.LoopAccepts()
	}

	pinned := in.pinnedCounts()
	all := in.parts.Backends.Registry().All()
	st.Backends = make([]admin.BackendStats, len(all))
	for i, b := range all {
		bs := admin.BackendStats{
			BackendStatus:        status(b, pinned[b.ID]),
			ConnectionsTotal:     b.Connections(),
			ConnectFailuresTotal: b.ConnectFailures(),
		}
		if l7 {
			bs.RequestsTotal = b.Served()
			bs.Responses = admin.ResponseClassesOf(b.Responses())
			bs.ResponseHead = b.ResponseHead()
		}
		st.Backends[i] = bs
	}
	if in.table != nil {
		t := in.table.Stats()
		st.Affinity = &admin.AffinityStats{
			Entries: t.Size, Capacity: in.table.Capacity(), Hits: t.Hits, Misses: t.Misses,
			Repins: t.Repins, Evictions: t.Evictions, Expirations: t.Expirations,
		}
	}
	for _, r := range backend.RepinReasons {
		st.Repins[r.String()] = in.parts.Backends.Repins.Load(r)
	}
	in.obs.reloadMu.Lock()
	st.Reload = in.obs.reload
	in.obs.reloadMu.Unlock()
	if lg := in.obs.access; lg != nil {
		st.AccessLog = admin.AccessLogStats{Enabled: true, Written: lg.Written(), Dropped: lg.Dropped()}
	}
	if node := in.cluster.Load(); node != nil {
		c := node.Stats()
		st.Cluster = &admin.ClusterStats{
			Members: c.Members, PinsSent: c.PinsSent, PinsDropped: c.PinsDropped, PinsReceived: c.PinsReceived,
			PinsApplied: c.PinsApplied, AdminApplied: c.AdminApplied, BadMessages: c.BadMessages,
		}
	}
	return st
}

package instance

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/cluster"
	"github.com/lbctl/lbctl/config"
)

// joinCluster makes the instance a member of the cluster [cluster]
// configures, if any: it joins the members that answer and takes their
// pins and admin states before New returns, so before the first client,
// and from then on shares its own. It runs after the state file is
// restored, so that what the other members know, which is newer, wins.
// Only a failure to bind the cluster's address is an error.
func (in *Instance) joinCluster(cfg *config.Config) error {
	c := cfg.Cluster
	if c.Bind == "" {
		return nil
	}
	node, err := cluster.Start(cluster.Options{
		Name:      c.Name,
		Bind:      c.Bind,
		Join:      c.Join,
		SecretKey: c.ClusterKey(),
		PushPull:  c.PushPullInterval.D(),
		Gossip:    c.GossipInterval.D(),
		QueueSize: c.QueueSize,
		Table:     in.table,
		Apply:     in.applyClusterAdmin,
		Log:       in.log,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	in.clusterMu.Lock()
	defer in.clusterMu.Unlock()
	in.cluster.Store(node)
	// The join applied the other members' states; those set here while
	// waiting are later, and win here as everywhere.
	for id, a := range in.unpublished {
		node.PublishAdmin(id, a.state, a.until)
		if b := in.parts.Backends.Registry().Get(id); b != nil {
			b.SetAdmin(a.state, a.until)
			in.watchDrain(b, a.until)
		}
	}
	in.unpublished = nil
	return nil
}

// adminChange is an admin state the operator set, waiting for the join
// to be shared.
type adminChange struct {
	state backend.AdminState
	until time.Time
}

// rejoinRetry is how often the new process of an upgrade tries the
// cluster's bind address again while the old process still holds it.
const rejoinRetry = 50 * time.Millisecond

// joinClusterAfterUpgrade joins the cluster in the new process of an
// upgrade, once the old one has left it and freed the bind address (TCP
// and UDP), which it does as soon as it stops accepting (see
// runner.handOver). Until then this process serves with the pins handed
// over; joining exchanges whole state with a member, which brings the pins
// the others made in between and sends the ones made here. It retries
// until it binds or ctx ends, warning once when that takes longer than
// patience.
func (in *Instance) joinClusterAfterUpgrade(ctx context.Context, cfg *config.Config, patience time.Duration) {
	if cfg.Cluster.Bind == "" {
		return
	}
	warnAt := time.Now().Add(patience)
	warned := false
	t := time.NewTicker(rejoinRetry)
	defer t.Stop()
	for {
		err := in.joinCluster(cfg)
		if err == nil {
			if warned {
				in.log.Info("cluster joined after the upgrade", "bind", cfg.Cluster.Bind)
			}
			return
		}
		if !warned && time.Now().After(warnAt) {
			in.log.Warn("cluster not joined yet after the upgrade; retrying", "error", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyClusterAdmin sets an admin state that another member's operator
// set, on the backend of that id here, if there is one.
func (in *Instance) applyClusterAdmin(id string, state backend.AdminState, until time.Time) {
	b := in.parts.Backends.Registry().Get(id)
	if b == nil {
		return
	}
	b.SetAdmin(state, until)
	in.watchDrain(b, until)
	in.log.Info("admin state set by another member", "backend", id, "state", state.String())
}

// publishAdmin shares an admin state the operator set here with the other
// members. With [cluster] configured but not yet joined (the new process
// of an upgrade, until the old one has left), the last state of each
// backend waits and is published at the join: otherwise the join would
// bring the other members' older state over it.
func (in *Instance) publishAdmin(id string, state backend.AdminState, until time.Time) {
	in.clusterMu.Lock()
	defer in.clusterMu.Unlock()
	if node := in.cluster.Load(); node != nil {
		node.PublishAdmin(id, state, until)
		return
	}
	if in.clusterBind == "" {
		return
	}
	if in.unpublished == nil {
		in.unpublished = map[string]adminChange{}
	}
	in.unpublished[id] = adminChange{state: state, until: until}
}

// Cluster returns the instance's cluster membership, nil without one.
func (in *Instance) Cluster() *cluster.Node { return in.cluster.Load() }

// leaveCluster leaves the cluster, telling the other members; it may be
// called again.
func (in *Instance) leaveCluster() {
	if node := in.cluster.Load(); node != nil {
		node.Close()
	}
}

// clusterRestartOnly refuses a reload that changes [cluster] (membership
// is set up once, at start) or listen_proxy.
func clusterRestartOnly(cur, next *config.Config) []string {
	msgs := proxyRestartOnly(cur, next)
	if !reflect.DeepEqual(cur.Cluster, next.Cluster) {
		msgs = append(msgs, "cluster: changed; it takes effect only at a restart, so the reload is refused (restore it, or restart lbctl)")
	}
	return msgs
}

// ClusterStatus returns the cluster as this instance sees it, for the
// admin API; ok is false without [cluster].
func (in *Instance) ClusterStatus() (admin.ClusterStatus, bool) {
	node := in.cluster.Load()
	if node == nil {
		return admin.ClusterStatus{}, false
	}
	st := node.Stats()
	out := admin.ClusterStatus{Name: node.Name(), PinsSent: st.PinsSent, PinsDropped: st.PinsDropped, PinsApplied: st.PinsApplied}
	for _, m := range node.Members() {
		out.Members = append(out.Members, admin.ClusterMember{Name: m.Name, Address: m.Address, State: m.State})
	}
	return out, true
}

var _ admin.ClusterInstance = (*Instance)(nil)

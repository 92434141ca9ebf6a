package instance

import (
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
	in.cluster = node
	return nil
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
// members.
func (in *Instance) publishAdmin(id string, state backend.AdminState, until time.Time) {
	if in.cluster != nil {
		in.cluster.PublishAdmin(id, state, until)
	}
}

// Cluster returns the instance's cluster membership, nil without one.
func (in *Instance) Cluster() *cluster.Node { return in.cluster }

// leaveCluster leaves the cluster, telling the other members.
func (in *Instance) leaveCluster() {
	if in.cluster != nil {
		in.cluster.Close()
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
	if in.cluster == nil {
		return admin.ClusterStatus{}, false
	}
	st := in.cluster.Stats()
	out := admin.ClusterStatus{Name: in.cluster.Name(), PinsSent: st.PinsSent, PinsDropped: st.PinsDropped, PinsApplied: st.PinsApplied}
	for _, m := range in.cluster.Members() {
		out.Members = append(out.Members, admin.ClusterMember{Name: m.Name, Address: m.Address, State: m.State})
	}
	return out, true
}

var _ admin.ClusterInstance = (*Instance)(nil)

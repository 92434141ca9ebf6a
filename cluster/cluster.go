// Package cluster lets several lbctl instances share their affinity pins
// and their backends' admin states, so that a client whose connections
// land on any of them, or on one just restarted, goes where it was pinned,
// re-pins after a failure included, and an operator's drain on one
// instance holds on all.
//
// It is built on hashicorp/memberlist (gossip membership with failure
// detection, the library under Consul and Nomad, with AES-GCM encryption
// of every message). Whole tables are exchanged at every push/pull, at a
// join and periodically after, which brings a new or restarted member up
// to date and repairs anything lost. Between push/pulls:
//
//   - pins and re-pins: the affinity table writes each into a bounded
//     outbox (see affinity.Outbox) without waiting or allocating; a
//     goroutine of the Node drains it every 20ms, packs the changes into
//     messages of one UDP packet each, and sends each message to every
//     live member over memberlist's packet transport (best effort, as
//     gossip is). Pins are not gossiped through memberlist's
//     TransmitLimitedQueue: that queue leaves only at the gossip ticks, a
//     packet per tick and peer shared with memberlist's own messages, and
//     sends each message several times, which carried 150 pins a second
//     between two members where a busy balancer makes thousands.
//   - admin states: broadcast through a TransmitLimitedQueue, one entry
//     per backend (a newer state replaces the queued one), retransmitted
//     by the gossip, since they are rare and each one matters.
//
// The data path never waits for any of it.
package cluster

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// Defaults used for zero Options fields.
const (
	DefaultPushPull  = 30 * time.Second
	DefaultGossip    = 200 * time.Millisecond
	DefaultQueueSize = 8192
)

// Batching and upkeep.
const (
	flushEvery = 20 * time.Millisecond // how often the outbox is drained
	// maxMessage bounds one message of pins so that it fits one UDP
	// packet with memberlist's framing and encryption (the 1400 bytes it
	// assumes of a path), about 30 pins.
	maxMessage = 1200
	leaveWait  = 2 * time.Second // how long Close waits for its leave to spread
)

// rejoinPeriod is how often a join address that is not a live member is
// tried again; a variable so that a test can shorten it.
var rejoinPeriod = 5 * time.Second

// Options configures a Node.
type Options struct {
	// Name is the member's name, unique in the cluster. Empty means the
	// bind address.
	Name string
	// Bind is the host:port the member listens on (TCP and UDP).
	Bind string
	// Join lists host:port addresses of other members. Start joins them
	// before it returns, and the node retries those it is not connected
	// to every few seconds, so that members may start in any order and a
	// member cut off from the others comes back.
	Join []string
	// SecretKey, 16, 24 or 32 bytes, encrypts and authenticates every
	// message (AES-GCM); nil sends them in the clear.
	SecretKey []byte
	// PushPull is the period of the full exchange of state with a random
	// member. Zero means DefaultPushPull.
	PushPull time.Duration
	// Gossip is the period of gossip, which carries membership and admin
	// states. Zero means DefaultGossip.
	Gossip time.Duration
	// QueueSize bounds the pin changes waiting to be sent (the outbox,
	// drained every 20ms); a change that finds it full is dropped and
	// counted, and left to the next push/pull. Zero means
	// DefaultQueueSize.
	QueueSize int

	// Table is the affinity table to replicate; nil replicates admin
	// states only (L7).
	Table *affinity.Table
	// Apply sets an admin state learnt from another member on the local
	// backend id; an id this instance does not have must be ignored. It
	// must not block.
	Apply func(id string, state backend.AdminState, until time.Time)
	// Log receives membership changes and memberlist's own warnings.
	// Nil discards them.
	Log *slog.Logger
}

// Stats counts what a Node has done since it started.
type Stats struct {
	PinsSent     uint64 // local pins and re-pins sent to every live member
	PinsDropped  uint64 // local pins and re-pins dropped: the queue was full
	PinsReceived uint64 // pins received, in broadcasts and push/pulls
	PinsApplied  uint64 // received pins that changed the table
	AdminApplied uint64 // received admin states that changed a backend
	BadMessages  uint64 // messages that did not decode
	Members      int    // live members, this one included
}

// Member is one member of the cluster as this one sees it.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	State   string `json:"state"` // "alive" or "suspect"
}

// Node is this instance's membership of the cluster. Create it with Start
// and end it with Close.
type Node struct {
	opts   Options
	log    *slog.Logger
	list   *memberlist.Memberlist
	queue  *memberlist.TransmitLimitedQueue
	outbox *affinity.Outbox

	// adminMu guards admin, the last admin state known of each backend
	// id, set here or learnt.
	adminMu sync.Mutex
	admin   map[string]adminState

	pinsSent, pinsReceived, pinsApplied  atomic.Uint64
	adminApplied, badMessages, sendFails atomic.Uint64

	name string // this member's
	// returned receives the address of each member that joins, or comes
	// back after it was taken for dead (a partition, a pause), for a
	// whole-state exchange with it at once: see rejoinEvery.
	returned chan string

	stop    chan struct{}
	workers sync.WaitGroup
	closing sync.Once
}

// Start creates the member, bound to opts.Bind, joins the members of
// opts.Join that answer (exchanging whole state with them, so that the
// table holds their pins before Start returns), and starts publishing the
// table's changes. A join address that does not answer is logged and
// retried in the background; only a failure to bind is an error.
func Start(opts Options) (*Node, error) {
	host, portText, err := net.SplitHostPort(opts.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster bind %q: %w", opts.Bind, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("cluster bind %q: port: %w", opts.Bind, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{opts: opts, log: log, admin: map[string]adminState{}, stop: make(chan struct{}), returned: make(chan string, 16)}
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: n.numMembers, RetransmitMult: 4}

	conf := memberlist.DefaultLANConfig()
	conf.Name = cmp.Or(opts.Name, opts.Bind)
	n.name = conf.Name
	conf.BindAddr, conf.BindPort = host, port
	conf.SecretKey = opts.SecretKey
	conf.PushPullInterval = cmp.Or(opts.PushPull, DefaultPushPull)
	conf.GossipInterval = cmp.Or(opts.Gossip, DefaultGossip)
	conf.Delegate = (*delegate)(n)
	conf.Events = (*events)(n)
	conf.Logger = newMemberlistLogger(log)
	list, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("cluster bind %s: %w", opts.Bind, err)
	}
	n.list = list
	if opts.Table != nil {
		n.outbox = affinity.NewOutbox(cmp.Or(opts.QueueSize, DefaultQueueSize))
		opts.Table.Publish(n.outbox)
		n.workers.Go(n.flushEvery)
	}
	n.joinMissing()
	rejoin := rejoinPeriod
	n.workers.Go(func() { n.rejoinEvery(rejoin) })
	log.Info("cluster started", "name", conf.Name, "bind", opts.Bind, "members", list.NumMembers(), "encrypted", len(opts.SecretKey) > 0)
	return n, nil
}

// Name returns the member's name.
func (n *Node) Name() string { return n.list.LocalNode().Name }

// Address returns the host:port other members reach this one at, the
// port bound when Bind asked for port 0.
func (n *Node) Address() string { return n.list.LocalNode().Address() }

func (n *Node) numMembers() int {
	if n.list == nil {
		return 1
	}
	return n.list.NumMembers()
}

// Close stops publishing the table's changes, tells the other members
// this one leaves (waiting a moment for that to spread), and shuts the
// member down. Close is idempotent.
func (n *Node) Close() error {
	var err error
	n.closing.Do(func() {
		if n.opts.Table != nil {
			n.opts.Table.Publish(nil)
		}
		close(n.stop)
		n.workers.Wait()
		if lerr := n.list.Leave(leaveWait); lerr != nil {
			n.log.Warn("cluster leave", "error", lerr)
		}
		err = n.list.Shutdown()
	})
	return err
}

// Members returns the members this one takes for alive or suspects of
// having failed, itself included, by name; those found dead, or that
// left, drop out (memberlist forgets them).
func (n *Node) Members() []Member {
	nodes := n.list.Members()
	out := make([]Member, 0, len(nodes))
	for _, m := range nodes {
		out = append(out, Member{Name: m.Name, Address: m.Address(), State: stateName(m.State)})
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", s)
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{
		PinsSent:     n.pinsSent.Load(),
		PinsReceived: n.pinsReceived.Load(),
		PinsApplied:  n.pinsApplied.Load(),
		AdminApplied: n.adminApplied.Load(),
		BadMessages:  n.badMessages.Load(),
		Members:      n.list.NumMembers(),
	}
	if n.outbox != nil {
		st.PinsDropped += n.outbox.Dropped()
	}
	return st
}

// PublishAdmin records that the operator put backend id into state here
// and broadcasts it. Its stamp is above any state known of id, so that it
// wins everywhere, as the latest decision.
func (n *Node) PublishAdmin(id string, state backend.AdminState, until time.Time) {
	a := adminState{state: state}
	if !until.IsZero() && state == backend.Drain {
		a.until = until.UnixNano()
	}
	n.adminMu.Lock()
	a.stamp = max(time.Now().UnixNano(), n.admin[id].stamp+1)
	n.admin[id] = a
	n.adminMu.Unlock()
	// A newer state of one backend replaces the older one in the queue,
	// which therefore holds at most one entry per backend.
	n.queue.QueueBroadcast(&adminChange{msg: appendAdmin([]byte{wireVersion}, id, a), id: id})
}

// flushEvery drains the outbox into broadcasts until the node stops.
func (n *Node) flushEvery() {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	buf := make([]affinity.Change, 0, 256)
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			for {
				buf = n.outbox.Take(buf[:0])
				n.flush(buf)
				if len(buf) < cap(buf) {
					break
				}
			}
		}
	}
}

// flush packs changes into messages of at most maxMessage bytes and sends
// each to every other live member.
func (n *Node) flush(changes []affinity.Change) {
	if len(changes) == 0 {
		return
	}
	var peers []*memberlist.Node
	self := n.list.LocalNode().Name
	for _, m := range n.list.Members() {
		if m.Name != self && m.State == memberlist.StateAlive {
			peers = append(peers, m)
		}
	}
	send := func(msg []byte) {
		for _, m := range peers {
			if err := n.list.SendBestEffort(m, msg); err != nil {
				n.sendFails.Add(1)
			}
		}
	}
	// Counted before they go, so that no member can have received more
	// of them than this one reports sent.
	n.pinsSent.Add(uint64(len(changes)))
	msg := make([]byte, 1, maxMessage)
	msg[0] = wireVersion
	for _, c := range changes {
		p := affinity.Stamped(c)
		if len(msg)+pinSize(p) > maxMessage {
			send(msg)
			msg = msg[:1]
		}
		msg = appendPin(msg, p)
	}
	send(msg)
}

// rejoinEvery retries the join addresses that are not live members, and
// exchanges whole state with each member that joins or comes back, until
// the node stops. A member back from a partition has missed the pins sent
// meanwhile (they go to live members only); once the others take it for
// alive again, they no longer retry its address, and it would otherwise
// wait for the next periodic push/pull.
func (n *Node) rejoinEvery(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.joinMissing()
		case addr := <-n.returned:
			if _, err := n.list.Join([]string{addr}); err != nil {
				n.log.Debug("cluster state exchange with a returning member failed", "address", addr, "error", err)
			}
		}
	}
}

// joinMissing joins each join address that no live member has. Joining
// exchanges whole state with the member reached.
func (n *Node) joinMissing() {
	live := map[string]bool{}
	for _, m := range n.list.Members() {
		if m.State == memberlist.StateAlive {
			live[m.Address()] = true
		}
	}
	self := n.list.LocalNode().Address()
	var missing []string
	for _, addr := range n.opts.Join {
		if resolved, err := net.ResolveTCPAddr("tcp", addr); err == nil {
			if a := resolved.String(); a == self || live[a] {
				continue
			}
		}
		missing = append(missing, addr)
	}
	if len(missing) == 0 {
		return
	}
	joined, err := n.list.Join(missing)
	if err != nil {
		n.log.Debug("cluster join: some members did not answer; retrying", "join", missing, "joined", joined, "error", err)
		return
	}
	n.log.Info("cluster joined", "join", missing, "members", n.list.NumMembers())
}

// applyPin merges a pin received from another member into the table.
// Pins keyed with other prefixes than this table's are ignored: they would
// name no client here.
func (n *Node) applyPin(p affinity.Stamped) {
	n.pinsReceived.Add(1)
	t := n.opts.Table
	if t == nil || t.Key(p.Key.Addr()) != p.Key {
		return
	}
	if t.Merge(p.Key, p.ID, p.Stamp, p.Used) == affinity.MergeApplied {
		n.pinsApplied.Add(1)
	}
}

// applyAdmin records an admin state received from another member and, when
// it beats the one known here, applies it to the local backend.
func (n *Node) applyAdmin(id string, a adminState) {
	n.adminMu.Lock()
	cur, ok := n.admin[id]
	if ok && !a.beats(cur) {
		n.adminMu.Unlock()
		return
	}
	n.admin[id] = a
	n.adminMu.Unlock()
	n.adminApplied.Add(1)
	if n.opts.Apply != nil {
		n.opts.Apply(id, a.state, a.deadline())
	}
}

// receive applies every record of a message from another member.
func (n *Node) receive(msg []byte) {
	if err := decode(msg, n.applyPin, n.applyAdmin); err != nil {
		n.badMessages.Add(1)
		n.log.Warn("cluster message ignored", "error", err)
	}
}

// localState encodes the admin states known here and every live pin.
func (n *Node) localState() []byte {
	buf := []byte{wireVersion}
	n.adminMu.Lock()
	for id, a := range n.admin {
		buf = appendAdmin(buf, id, a)
	}
	n.adminMu.Unlock()
	if t := n.opts.Table; t != nil {
		t.RangeStamped(func(p affinity.Stamped) bool {
			if len(buf)+pinSize(p) > maxState {
				n.log.Warn("cluster state exchange truncated: the table is larger than a push/pull carries", "bytes", maxState)
				return false
			}
			buf = appendPin(buf, p)
			return true
		})
	}
	return buf
}

// maxState bounds the state sent at a push/pull below memberlist's limit
// of 20 MiB (about 400,000 pins).
const maxState = 19 << 20

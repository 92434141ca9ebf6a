package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/cluster"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/l4"
	"github.com/lbctl/lbctl/l7"
)

// Instance is one running lbctl: the backend pool, the front door of the
// configured mode (with its affinity table in L4), and the config they were
// built from. It applies reloads and operator commands to those parts while
// they serve, and implements admin.Instance for the runtime API.
//
// Build it with New, start the front door with Serve, and stop it with
// Shutdown, then Close.
type Instance struct {
	// Load reads and checks the config again for a reload; it is the same
	// loading serve started from (file, flags that override it). Nil means
	// the instance cannot be reloaded.
	Load func() (*config.Config, error)
	// API is the runtime API server, whose token a reload changes in
	// place; nil when there is none. Set it before Serve.
	API *admin.Server

	log   *slog.Logger
	parts *Pool
	l4    *l4.Proxy
	l7    *l7.Proxy
	table *affinity.Table // nil in L7

	reloading sync.Mutex // serializes reloads; guards cfg
	cfg       *config.Config

	timersMu sync.Mutex // guards timers and closed
	timers   map[string]*time.Timer
	closed   bool

	frontMu sync.Mutex   // guards front and frontDup
	front   net.Listener // the listener new clients reach; nil before Serve
	// frontDup is a duplicate of front's socket, which an upgrade hands
	// to the new process: the L4 event loop takes front's own descriptor
	// over. It is closed whenever front stops accepting, so that it never
	// keeps a retired socket queueing clients nobody accepts.
	frontDup socketDup
	ended    chan error // what the front listener's Serve returned
	serving  sync.WaitGroup

	// upgrade starts the binary on disk to take over (see Run); nil when
	// the instance was not started by Run.
	upgrade func(context.Context) (admin.UpgradeResult, error)

	// stateFile is [affinity] state_file, "" for none; see SaveState.
	stateFile string
	saving    sync.Mutex // serializes saves
	saver     sync.WaitGroup
	saverStop chan struct{}
	stopSaver sync.Once

	obs observed // for Stats and the access log: see stats.go
	// cluster is the membership, nil without [cluster], and in the new
	// process of an upgrade until the old one has left (see cluster.go).
	cluster atomic.Pointer[cluster.Node]
	// clusterMu orders the admin states the operator sets against the
	// join: one set before it waits in unpublished, and is published as
	// the node starts. See publishAdmin.
	clusterMu   sync.Mutex
	unpublished map[string]adminChange
	clusterBind string   // [cluster] bind: "" without a cluster
	tls         tlsFront // L7 with [tls]: see tls.go
}

// New builds an instance from cfg, which must be valid. With a state
// file configured, it restores the admin states and pins saved there (see
// restoreState) and saves them again every save_interval until Shutdown
// or Close; no client is served until Serve (and no backend probed until
// the prober's Run, which the caller starts: see Prober).
func New(cfg *config.Config, log *slog.Logger) (*Instance, error) {
	in, err := build(cfg, log)
	if err != nil {
		return nil, err
	}
	if in.stateFile != "" {
		in.restoreState(in.stateFile)
	}
	if err := in.joinCluster(cfg); err != nil {
		in.Close()
		return nil, err
	}
	in.startSaving()
	return in, nil
}

// build builds an instance from cfg with nothing restored, no saves
// started and no cluster joined: an upgraded process restores from its
// predecessor instead of the state file, and joins the cluster once its
// predecessor has left it (see Run).
func build(cfg *config.Config, log *slog.Logger) (*Instance, error) {
	parts, err := NewPool(cfg, log)
	if err != nil {
		return nil, err
	}
	in := &Instance{log: log, parts: parts, cfg: cfg, timers: map[string]*time.Timer{}, ended: make(chan error, 1),
		stateFile: cfg.Affinity.StateFile, saverStop: make(chan struct{}), clusterBind: cfg.Cluster.Bind}
	if err := in.openObserved(cfg); err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case "l7":
		in.l7 = L7(cfg, parts, log)
		if err := in.setupTLS(cfg); err != nil {
			in.closeAccessLog()
			return nil, err
		}
	default:
		in.l4, in.table = L4(cfg, parts, log)
	}
	in.attachAccessLog()
	return in, nil
}

// startSaving starts the periodic saves of the state file, if one is
// configured. It reads the interval before the saver starts: a reload
// replaces in.cfg (save_interval is restart-only, so the value is the
// same), and the saver must not read it while it does.
func (in *Instance) startSaving() {
	if in.stateFile != "" {
		every := in.cfg.Affinity.SaveInterval.D()
		in.saver.Go(func() { in.saveEvery(every, in.saverStop) })
	}
}

// Prober returns the health prober. With checks off it probes nothing
// until a reload turns them on.
func (in *Instance) Prober() *backend.Prober { return in.parts.Prober }

// Table returns the L4 affinity table, nil in L7.
func (in *Instance) Table() *affinity.Table { return in.table }

// Pool returns the live backend pool.
func (in *Instance) Pool() *backend.Pool { return in.parts.Backends }

// Serve serves clients on ln until Shutdown or Close, and on the listener
// of each reload that moves listen after that, returning what the
// serving of the latest one returned. It is called once.
func (in *Instance) Serve(ln net.Listener) error {
	in.serveRedirect()
	in.serveOn(ln)
	return <-in.ended
}

// Listen opens a front listener on addr, as serve and a reload that moves
// listen do. Idle clients are cut by the timeouts; TCP keep-alive probes
// would only cost system calls on every accepted connection.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// serveOn makes ln the front listener and serves it in a goroutine of its
// own. What its Serve returns ends Serve, unless a reload has moved the
// front to another listener by then.
func (in *Instance) serveOn(ln net.Listener) {
	d, err := dupSocket(ln)
	if err != nil {
		in.log.Warn("listener not kept for upgrades; an upgrade will be refused", "listen", ln.Addr().String(), "error", err)
	}
	in.frontMu.Lock()
	in.front = ln
	old := in.frontDup
	in.frontDup = d
	in.frontMu.Unlock()
	old.close()
	in.serving.Go(func() {
		var err error
		if in.l7 != nil {
			err = in.l7.Serve(ln)
		} else {
			err = in.l4.Serve(ln)
		}
		in.frontMu.Lock()
		current := in.front == ln
		in.frontMu.Unlock()
		if current {
			select {
			case in.ended <- err:
			default:
			}
		}
	})
}

// closeFrontDup closes the duplicate of the front listener's socket, so
// that nothing holds it open once the proxy stops accepting.
func (in *Instance) closeFrontDup() {
	in.frontMu.Lock()
	d := in.frontDup
	in.frontDup = socketDup{}
	in.frontMu.Unlock()
	d.close()
}

// frontSocket returns a new duplicate of the front listener's socket, for
// an upgrade to hand over; the caller closes it.
func (in *Instance) frontSocket() (*os.File, error) {
	in.frontMu.Lock()
	defer in.frontMu.Unlock()
	return in.frontDup.file("front")
}

// listenAddr returns the configured listen address the front listener was
// opened for.
func (in *Instance) listenAddr() string {
	in.reloading.Lock()
	defer in.reloading.Unlock()
	return in.cfg.Listen
}

// frontListener returns the listener new clients reach, nil before Serve.
func (in *Instance) frontListener() net.Listener {
	in.frontMu.Lock()
	defer in.frontMu.Unlock()
	return in.front
}

// moveFront serves ln, already open, and then stops accepting on the
// listener it replaces, whose connections run on: from the moment the
// reload returns, new clients reach ln alone.
func (in *Instance) moveFront(ln net.Listener) {
	old := in.frontListener()
	in.serveOn(ln)
	if in.l7 != nil {
		in.l7.StopAccepting(old)
	} else {
		in.l4.StopAccepting(old)
	}
}

// StopAccepting stops accepting new clients on the front listener and lets
// the connections it accepted run on, as a reload that moves listen does;
// Shutdown then waits for them. An upgrade calls it once the new process
// is ready to take the listener over.
func (in *Instance) StopAccepting() {
	in.frontMu.Lock()
	ln, d := in.front, in.frontDup
	in.frontDup = socketDup{}
	in.frontMu.Unlock()
	if ln == nil {
		d.close()
		return
	}
	d.close()
	// An upgrade sends the pins once StopAccepting returns. The L4 event
	// loops each close their copy of the listener at their next turn, and
	// may take one more batch of clients before they do, placing and
	// pinning each: l4's StopAccepting returns once they all have, so that
	// every client this process accepted has its pin by then.
	if in.l7 != nil {
		in.l7.StopAccepting(ln)
		return
	}
	in.l4.StopAccepting(ln)
}

// Shutdown stops the periodic saves of the state file, stops accepting and
// lets open connections finish until ctx ends (see l4.Proxy.Shutdown and
// l7.Proxy.Shutdown). The final save is the caller's: SaveState.
func (in *Instance) Shutdown(ctx context.Context) error {
	in.stopSaving()
	in.stopTimers()
	in.closeFrontDup()
	in.stopRedirect(ctx)
	if in.l7 != nil {
		return in.l7.Shutdown(ctx)
	}
	return in.l4.Shutdown(ctx)
}

// Close releases what outlives the front door: the periodic saves, the
// affinity table's sweeper and the drain timers. After a Serve, it waits for the serving of
// every listener to end, which Shutdown brings about.
func (in *Instance) Close() {
	in.serving.Wait()
	in.closeFrontDup()
	in.leaveCluster()
	in.closeRedirect()
	in.stopSaving()
	in.stopTimers()
	if in.table != nil {
		in.table.Close()
	}
	in.closeAccessLog()
}

func (in *Instance) stopTimers() {
	in.timersMu.Lock()
	defer in.timersMu.Unlock()
	in.closed = true
	for id, t := range in.timers {
		t.Stop()
		delete(in.timers, id)
	}
}

// Reload reads the config again and applies it in place: the backends
// change as backend.Pool.Reload says (a backend is its id), then the
// proxy's own settings ([balance], [timeouts], [limits], [cookie]) as
// l4.Proxy.Reconfigure and l7.Proxy.Reconfigure say (connections and
// requests that start afterwards use them), then [health] and the
// affinity ttl and capacity (see applySettings), then admin.token (the
// next API request must send the new one), then listen: the new address is
// opened before anything changes (a failure refuses the reload) and served
// at the end, and the old listener stops accepting while the connections
// it accepted run on. A file that fails to load or validate changes
// nothing and is an *admin.ReloadError with every message. Settings that
// this version applies only at start (mode, the affinity prefixes,
// admin.listen, the state file and its save interval) must be unchanged: a change to any of
// them is refused the same way, naming the section, so that the running
// config never silently differs from the file. The result names every
// backend and every changed section. Reloads are serialized.
func (in *Instance) Reload(ctx context.Context) (res admin.ReloadResult, err error) {
	defer func() { in.noteReload(res, err) }()
	if in.Load == nil {
		return admin.ReloadResult{}, errors.New("this instance has no config file to reload")
	}
	in.reloading.Lock()
	defer in.reloading.Unlock()
	if err := ctx.Err(); err != nil {
		return admin.ReloadResult{}, err
	}
	next, err := in.Load()
	if err != nil {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: messages(err)}
	}
	if msgs := restartOnly(in.cfg, next); len(msgs) > 0 {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: msgs}
	}
	settings, err := planSettings(in.cfg, next)
	if err != nil {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: []string{err.Error()}}
	}
	tlsPlan, err := in.planTLS(next)
	if err != nil {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: []string{err.Error()}}
	}
	sel := in.parts.Selector
	if next.Balance != in.cfg.Balance {
		if sel, err = backend.NewSelector(next.Balance.Policy, backend.TableSize(next.Balance.TableSize)); err != nil {
			return admin.ReloadResult{}, &admin.ReloadError{Messages: []string{"balance.policy: " + err.Error()}}
		}
	}
	// The new listener opens last of the checks: an address that cannot
	// be taken refuses the reload while nothing has changed.
	var moved net.Listener
	if next.Listen != in.cfg.Listen && in.frontListener() != nil {
		if moved, err = Listen(ctx, next.Listen); err != nil {
			return admin.ReloadResult{}, &admin.ReloadError{Messages: []string{"listen: " + err.Error()}}
		}
	}
	specs := make([]backend.Spec, len(next.Backends))
	for i, b := range next.Backends {
		specs[i] = Spec(b)
	}
	// Both selectors may meet the new registry: the one in use until
	// Reconfigure below swaps sel in.
	changes, err := in.parts.Backends.Reload(specs, in.parts.Selector, sel)
	if err != nil {
		if moved != nil {
			moved.Close()
		}
		return admin.ReloadResult{}, &admin.ReloadError{Messages: []string{err.Error()}}
	}
	tuning := tuningChanges(in.cfg, next)
	if len(tuning) > 0 {
		in.parts.Selector = sel
		// Reconfigure fails only without a selector, and sel is one.
		if in.l7 != nil {
			in.l7.Reconfigure(L7Settings(next, sel))
		} else {
			in.l4.Reconfigure(L4Settings(next, sel))
		}
	}
	items := append(changes.Items(), tuning...)
	items = append(items, in.applySettings(settings, next)...)
	items = append(items, in.applyTLS(tlsPlan)...)
	if next.Admin.Token != in.cfg.Admin.Token {
		if in.API != nil {
			in.API.SetToken(next.Admin.Token)
		}
		items = append(items, "~admin(token changed)")
	}
	if moved != nil {
		in.moveFront(moved)
	}
	if next.Listen != in.cfg.Listen {
		items = append(items, "~listen("+in.cfg.Listen+"->"+next.Listen+")")
	}
	in.cfg = next
	summary := "no change"
	if len(items) > 0 {
		summary = strings.Join(items, " ")
	}
	return admin.ReloadResult{Changes: items, Summary: "reloaded: " + summary}, nil
}

// messages splits a config error into its lines, one problem each.
func messages(err error) []string {
	var out []string
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// restartOnly returns a message for each part of the config that differs
// between cur and next and that this version applies only when it starts.
func restartOnly(cur, next *config.Config) []string {
	var msgs []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			msgs = append(msgs, fmt.Sprintf("%s: changed; it takes effect only at a restart, so the reload is refused (restore it, or restart lbctl)", key))
		}
	}
	check("mode", cur.Mode, next.Mode)
	msgs = append(msgs, affinityRestartOnly(cur, next)...)
	msgs = append(msgs, clusterRestartOnly(cur, next)...)
	check("admin.listen", cur.Admin.Listen, next.Admin.Listen)
	check("affinity.state_file", cur.Affinity.StateFile, next.Affinity.StateFile)
	check("affinity.save_interval", cur.Affinity.SaveInterval, next.Affinity.SaveInterval)
	check("log.access", cur.Log.Access, next.Log.Access)
	check("l4.loops", cur.L4.Loops, next.L4.Loops)
	check("l7.engine", cur.L7.Engine, next.L7.Engine)
	msgs = append(msgs, tlsRestartOnly(cur, next)...)
	return msgs
}

// Backends returns every backend of the live pool, in config order.
func (in *Instance) Backends() []admin.BackendStatus {
	pinned := in.pinnedCounts()
	all := in.parts.Backends.Registry().All()
	out := make([]admin.BackendStatus, len(all))
	for i, b := range all {
		out[i] = status(b, pinned[b.ID])
	}
	return out
}

func status(b *backend.Backend, pinned int) admin.BackendStatus {
	state, until := b.Admin()
	health := "up"
	if !b.Up() {
		health = "down"
	}
	st := admin.BackendStatus{
		ID: b.ID, Address: b.Address(), Weight: b.Weight(), Health: health,
		State: state.String(), Active: b.Active(), Pinned: pinned, Served: b.Served(),
	}
	if state == backend.Drain {
		st.DrainUntil = until
	}
	return st
}

// SetAdminState puts backend id into state; a drain with opts.For lets go
// of its pinned clients at the deadline, which is logged when it passes. A
// maint with opts.Kill then closes the backend's open connections: once
// the state is set no new one goes there, so none is left behind.
func (in *Instance) SetAdminState(id string, state backend.AdminState, opts admin.StateOptions, source string) (admin.BackendStatus, error) {
	b := in.parts.Backends.Registry().Get(id)
	if b == nil {
		return admin.BackendStatus{}, fmt.Errorf("set %s: %w", id, admin.ErrUnknownBackend)
	}
	var until time.Time
	if state == backend.Drain && opts.For > 0 {
		until = time.Now().Add(opts.For)
	}
	b.SetAdmin(state, until)
	in.publishAdmin(id, state, until)
	in.watchDrain(b, until)
	if opts.Kill && state == backend.Maint {
		in.closeConns(id)
	}
	return status(b, in.pinnedOf(id)), nil
}

// watchDrain logs the moment a bounded drain of b lets go of its pinned
// clients, unless its state has changed by then. Each backend has at most
// one such timer; a new state replaces it.
func (in *Instance) watchDrain(b *backend.Backend, until time.Time) {
	in.timersMu.Lock()
	defer in.timersMu.Unlock()
	if t := in.timers[b.ID]; t != nil {
		t.Stop()
		delete(in.timers, b.ID)
	}
	if until.IsZero() || in.closed {
		return
	}
	in.timers[b.ID] = time.AfterFunc(time.Until(until), func() {
		if st, u := b.Admin(); st == backend.Drain && u.Equal(until) {
			in.log.Info("drain deadline reached; pinned clients move at their next request", "backend", b.ID)
		}
		in.timersMu.Lock()
		if in.timers[b.ID] != nil && !in.closed {
			delete(in.timers, b.ID)
		}
		in.timersMu.Unlock()
	})
}

// errNoTable answers pin calls in L7, where persistence lives in cookies.
var errNoTable = errors.New("no affinity table: in l7 mode the pins are the browsers' cookies")

// Pin returns the live pin of key.
func (in *Instance) Pin(key string) (admin.PinStatus, bool, error) {
	if in.table == nil {
		return admin.PinStatus{}, false, errNoTable
	}
	k, err := in.table.ParseKey(key)
	if err != nil {
		return admin.PinStatus{}, false, err
	}
	id, expires, ok := in.table.Get(k)
	if !ok {
		return admin.PinStatus{}, false, nil
	}
	return admin.PinStatus{Key: k.String(), Backend: id, Expires: expires}, true, nil
}

// Pins returns at most limit live pins, only those to backendID when it is
// not empty. In L7 there are none.
func (in *Instance) Pins(backendID string, limit int) ([]admin.PinStatus, error) {
	if backendID != "" && in.parts.Backends.Registry().Get(backendID) == nil {
		return nil, fmt.Errorf("pins of %s: %w", backendID, admin.ErrUnknownBackend)
	}
	var out []admin.PinStatus
	if in.table == nil || limit <= 0 {
		return out, nil
	}
	in.table.Range(func(k affinity.Key, id string, expires time.Time) bool {
		if backendID == "" || id == backendID {
			out = append(out, admin.PinStatus{Key: k.String(), Backend: id, Expires: expires})
		}
		return len(out) < limit
	})
	return out, nil
}

// ForgetPin removes the pin of key.
func (in *Instance) ForgetPin(key string) (bool, error) {
	if in.table == nil {
		return false, errNoTable
	}
	k, err := in.table.ParseKey(key)
	if err != nil {
		return false, err
	}
	return in.table.Forget(k), nil
}

// errNoUpgrade answers an upgrade of an instance that Run did not start.
var errNoUpgrade = errors.New("this instance cannot upgrade: it was not started by lbctl serve")

// Upgrade starts the binary on disk with the listeners handed over and
// returns once it is ready to serve, as SIGUSR2 does (see Run); this
// process then stops accepting and drains. A failure leaves this process
// serving.
func (in *Instance) Upgrade(ctx context.Context) (admin.UpgradeResult, error) {
	if in.upgrade == nil {
		return admin.UpgradeResult{}, errNoUpgrade
	}
	return in.upgrade(ctx)
}

var _ admin.Instance = (*Instance)(nil)

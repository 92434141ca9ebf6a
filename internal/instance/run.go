package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/config"
)

// DefaultUpgradeTimeout is how long an upgrade waits for the new process
// to be ready when Options.UpgradeTimeout is zero.
const DefaultUpgradeTimeout = 30 * time.Second

// apiShutdownTimeout bounds how long the admin API's requests in progress
// may finish when the process stops or hands over.
const apiShutdownTimeout = 5 * time.Second

// Options are what Run needs besides its context.
type Options struct {
	// Config is the config to serve, for an instance that has no file
	// to reload (the demo). When nil, Load reads it.
	Config *config.Config
	// Load reads and checks the config file, with the command line's
	// overrides applied: at start, and again at each reload.
	Load func() (*config.Config, error)
	// Log gets the instance's log; nil is slog.Default().
	Log *slog.Logger
	// Grace is how long open connections may finish once accepting has
	// stopped, at shutdown and after an upgrade.
	Grace time.Duration
	// UpgradeTimeout bounds the wait for the new process of an upgrade to
	// be ready; zero is DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration
	// PIDFile, when not empty, is written with this process's id once it
	// serves (by the new process of an upgrade before the old one
	// exits, so that a service manager follows the main process) and
	// removed at exit unless another process has written it since.
	PIDFile string
	// Version is what Stats and lbctl_build_info report when it is not
	// empty (see SetVersion).
	Version string
	// Serving, when not nil, is called once the front listener serves.
	Serving func(front net.Addr, cfg *config.Config)
}

func (o *Options) upgradeTimeout() time.Duration {
	if o.UpgradeTimeout > 0 {
		return o.UpgradeTimeout
	}
	return DefaultUpgradeTimeout
}

// Run runs one lbctl instance until ctx ends (SIGTERM, SIGINT) or it has
// handed over to the binary on disk: it loads the config, opens the
// listeners (or takes them over from the process it upgrades), restores the
// state, serves the front door and the admin API, reloads on SIGHUP,
// upgrades on SIGUSR2 or the API's upgrade call, and at the end stops
// accepting, lets open connections finish for up to Grace, and saves the
// state.
//
// An upgrade runs as follows, this process being the old one.
//
//  1. The binary on disk is started with the same arguments and three
//     descriptors: a control stream, the front listener and the admin
//     listener (when there is one). The kernel keeps queueing clients on
//     the listeners throughout: none is refused.
//  2. While this process serves on, it sends every pin and admin state
//     over the control stream. The new process loads them, opens nothing,
//     probes the backends once, writes the PID file and says it is ready;
//     it accepts nobody yet.
//  3. This process then stops its admin API (requests in progress finish)
//     and stops accepting, and sends the pins made, moved or renewed since
//     step 2 began, and the admin states again. The new process merges
//     them (the newer of two pins of one key wins) and starts accepting.
//  4. This process drains its connections for up to Grace and exits,
//     leaving the state file to the new process.
//
// Sending the table while still serving and then only what changed keeps
// the pause in accepting (step 3) short however large the table: a
// million pins take about two seconds to save and load, the changes of a
// few seconds take milliseconds. At no time do both processes accept, so
// a client's connections can never be placed by two tables: no pin is
// lost or split between them. A new process that fails before it is ready
// (it exits, its config is broken, it does not answer within
// UpgradeTimeout) is stopped and the old one serves on, logging why; so
// does an upgrade asked for while another is in flight.
func Run(ctx context.Context, o Options) (err error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	pred, err := inherited()
	if err != nil {
		return fmt.Errorf("taking over from the old process: %w", err)
	}
	if pred != nil {
		// Whatever fails before the hand-over is told to the old process,
		// which serves on and logs it.
		defer func() { pred.close(err) }()
	}
	cfg := o.Config
	if cfg == nil {
		if o.Load == nil {
			return errors.New("instance: Run needs Config or Load")
		}
		if cfg, err = o.Load(); err != nil {
			return err
		}
	} else if err := cfg.Validate(); err != nil {
		return err
	}
	in, err := build(cfg, log)
	if err != nil {
		return err
	}
	in.SetVersion(o.Version)
	defer in.Close()
	if o.Config == nil {
		in.Load = o.Load
	}
	if pred == nil {
		if in.stateFile != "" {
			in.restoreState(in.stateFile)
		}
		if err := in.joinCluster(cfg); err != nil {
			return err
		}
	}
	ln, adminLn, err := pred.listeners(ctx, cfg)
	if err != nil {
		return err
	}
	r := &runner{o: o, log: log, in: in, cfg: cfg, adminLn: adminLn, handover: make(chan *successor, 1)}
	in.upgrade = r.upgrade
	return r.run(ctx, ln, pred)
}

// runner is one Run: what an upgrade needs besides the instance.
type runner struct {
	o       Options
	log     *slog.Logger
	in      *Instance
	cfg     *config.Config // the config Run started with; admin.listen is restart-only
	adminLn net.Listener
	api     *admin.Server

	// bg ends when Run stops serving: it stops the prober, the loggers
	// and an upgrade in flight.
	bg context.Context
	// upgrading is held while an upgrade is in flight, and for good once
	// one has succeeded: see upgrade.
	upgrading sync.Mutex
	// handover passes the ready new process of an upgrade to run.
	handover chan *successor
	// stopJoining, in the new process of an upgrade, ends its attempts to
	// join the cluster and waits for them: a process that hands over in
	// turn must not join once it has left. Nil otherwise.
	stopJoining func()
	wg          sync.WaitGroup
}

func (r *runner) run(ctx context.Context, ln net.Listener, pred *predecessor) error {
	in, log, cfg := r.in, r.log, r.cfg
	bgCtx, stopBackground := context.WithCancel(context.Background())
	r.bg = bgCtx
	defer r.wg.Wait()
	defer stopBackground()
	if pr := in.Prober(); pr != nil {
		pr.Round(bgCtx) // know who is up before the first client
		r.wg.Go(func() { pr.Run(bgCtx) })
	}
	if pred != nil {
		if err := pred.takeOver(in, r.o.PIDFile, r.o.upgradeTimeout()); err != nil {
			ln.Close()
			if r.adminLn != nil {
				r.adminLn.Close()
			}
			return err
		}
		// The old process has stopped accepting and leaves the cluster,
		// freeing its bind address for this one.
		joinCtx, stopJoining := context.WithCancel(bgCtx)
		joining := make(chan struct{})
		r.wg.Go(func() {
			defer close(joining)
			in.joinClusterAfterUpgrade(joinCtx, cfg, r.o.upgradeTimeout())
		})
		r.stopJoining = func() { stopJoining(); <-joining }
	} else if err := writePIDFile(r.o.PIDFile); err != nil {
		ln.Close()
		if r.adminLn != nil {
			r.adminLn.Close()
		}
		return err
	}
	defer removePIDFile(r.o.PIDFile, log)
	in.startSaving()
	if table := in.Table(); table != nil {
		r.wg.Go(func() { logAffinity(bgCtx, log, table, time.Minute) })
	}
	if r.adminLn != nil {
		r.api = &admin.Server{Instance: in, Token: cfg.Admin.Token, Logger: log}
		in.API = r.api
		defer r.stopAPI()
		api, adminLn := r.api, r.adminLn
		r.wg.Go(func() {
			if err := api.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin API stopped", "error", err)
			}
		})
		log.Info("admin API listening", "listen", cfg.Admin.Listen)
	}
	// SIGHUP means "reload" and SIGUSR2 "upgrade" from here on, before
	// the first client is taken: by default either would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r.wg.Go(func() { reloadOnSignal(bgCtx, hup, in, log) })
	usr2 := make(chan os.Signal, 1)
	if len(upgradeSignals) > 0 {
		signal.Notify(usr2, upgradeSignals...)
		defer signal.Stop(usr2)
	}
	// The instance owns ln from here on: a reload that moves listen
	// replaces it.
	served := make(chan error, 1)
	go func() { served <- in.Serve(ln) }()
	log.Info("lbctl serving", "mode", cfg.Mode, "listen", ln.Addr().String(), "pid", os.Getpid(),
		"backends", in.Pool().Registry().Len(), "policy", cfg.Balance.Policy, "health", cfg.Health.Check)
	if pred != nil {
		log.Info("upgrade complete: this process serves")
	}
	if r.o.Serving != nil {
		r.o.Serving(ln.Addr(), cfg)
	}

	var next *successor
wait:
	for {
		select {
		case err := <-served:
			return fmt.Errorf("serving clients: %w", err)
		case <-ctx.Done():
			break wait
		case <-usr2:
			r.wg.Go(func() { r.upgrade(bgCtx) })
		case next = <-r.handover:
			break wait
		}
	}
	if next == nil {
		// An upgrade that became ready as the process was told to stop
		// is told nothing more: the new process serves with the state it
		// has, and this one stops as asked.
		select {
		case s := <-r.handover:
			s.abandon()
		default:
		}
		log.Info("shutting down", "grace", r.o.Grace)
	} else {
		r.handOver(next)
		// A draining old process upgrades nothing more; it says so.
		drained := make(chan struct{})
		defer close(drained)
		r.wg.Go(func() {
			for {
				select {
				case <-drained:
					return
				case <-usr2:
					log.Warn("upgrade refused: another is in flight or done", "pid", os.Getpid())
				}
			}
		})
	}
	stopBackground()
	sctx, cancel := context.WithTimeout(context.Background(), r.o.Grace)
	defer cancel()
	if err := in.Shutdown(sctx); err != nil {
		log.Warn("grace period over; open connections closed", "error", err)
	}
	if next == nil {
		// After a hand-over the state file is the new process's: a save
		// from here would overwrite its saves with older pins.
		in.SaveState() // logged when it fails; the exit is clean regardless
	}
	if err := <-served; err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	if table := in.Table(); table != nil {
		st := table.Stats()
		log.Info("stopped", slog.Group("affinity", "size", st.Size, "hits", st.Hits, "misses", st.Misses,
			"repins", st.Repins, "evictions", st.Evictions, "expirations", st.Expirations))
	} else {
		log.Info("stopped")
	}
	return nil
}

// stopAPI stops the admin API, letting requests in progress finish for a
// few seconds; it is called once the API has been started, and may be
// called again.
func (r *runner) stopAPI() {
	actx, cancel := context.WithTimeout(context.Background(), apiShutdownTimeout)
	defer cancel()
	r.api.Shutdown(actx)
}

// upgrade starts the binary on disk to take over and returns once it is
// ready; run then hands over. One upgrade at a time: another asked for
// while one is in flight, or after one succeeded, is refused and logged.
// A failure is logged and leaves this process serving.
func (r *runner) upgrade(ctx context.Context) (admin.UpgradeResult, error) {
	if !r.upgrading.TryLock() {
		r.log.Warn("upgrade refused: another is in flight or done", "pid", os.Getpid())
		return admin.UpgradeResult{}, admin.ErrUpgradeInProgress
	}
	// The API's caller may hang up; the upgrade goes on until the
	// process stops.
	ctx = context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.bg, cancel)
	defer stop()
	defer cancel()
	r.log.Info("upgrade: starting the binary on disk")
	s, err := r.startSuccessor(ctx)
	if err != nil {
		r.upgrading.Unlock()
		if rerr := writePIDFile(r.o.PIDFile); rerr != nil {
			r.log.Warn("PID file not restored", "error", rerr)
		}
		r.log.Error("upgrade failed; this process serves on", "error", err)
		return admin.UpgradeResult{}, err
	}
	if r.bg.Err() != nil {
		s.abandon()
		return admin.UpgradeResult{}, errors.New("upgrade abandoned: the process is stopping")
	}
	r.log.Info("upgrade: the new process is ready", "new_pid", s.pid)
	r.handover <- s // room for one: upgrading stays held from here on
	return admin.UpgradeResult{PID: s.pid, Summary: "upgraded: new process " + strconv.Itoa(s.pid) + " serves; this one drains"}, nil
}

// handOver makes the ready new process s the one that accepts: the
// periodic saves stop, the admin API stops (requests in progress finish, so that the admin states sent
// are final), the front stops accepting, and the changes since the first
// part of the hand-over are sent.
func (r *runner) handOver(s *successor) {
	// From here on the state file is the new process's to write.
	r.in.stopSaving()
	if r.api != nil {
		keepSocketFile(r.adminLn)
		r.stopAPI()
	}
	r.in.StopAccepting()
	// The new process joins the cluster on the same bind address once
	// this one has left it. Leaving waits for the other members to be
	// told, which may take a gossip period: it runs while the changes are
	// sent, so as not to hold the new process back from accepting.
	var left sync.WaitGroup
	left.Go(func() {
		if r.stopJoining != nil {
			r.stopJoining()
		}
		r.in.leaveCluster()
	})
	defer left.Wait()
	states, pins, err := s.finish(r.in, r.o.upgradeTimeout())
	if err != nil {
		r.log.Warn("upgrade: the last changes were not handed over; the new process serves with the state sent before", "error", err)
	} else {
		r.log.Info("upgrade: handed over; draining", "new_pid", s.pid, "admin_states", states, "pins", pins, "grace", r.o.Grace)
	}
}

// reloadOnSignal reloads the config each time hup delivers (SIGHUP), until
// ctx ends, and logs what the reload changed or why it was refused.
// Signals that arrive during a reload are folded into one more reload.
func reloadOnSignal(ctx context.Context, hup <-chan os.Signal, in *Instance, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		res, err := in.Reload(ctx)
		if rerr, ok := errors.AsType[*admin.ReloadError](err); ok {
			log.Warn("config reload refused; the running config is unchanged", "source", "signal", "problems", strings.Join(rerr.Messages, "; "))
			continue
		}
		if err != nil {
			log.Error("config reload failed", "source", "signal", "error", err)
			continue
		}
		log.Info("config reloaded", "source", "signal", "summary", res.Summary)
	}
}

// logAffinity logs the affinity table's counters every interval in which
// clients were re-pinned or pins were evicted or expired, until ctx ends:
// the one line an operator needs to see failover and table pressure.
func logAffinity(ctx context.Context, log *slog.Logger, table *affinity.Table, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last affinity.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := table.Stats()
		if st.Repins == last.Repins && st.Evictions == last.Evictions && st.Expirations == last.Expirations {
			continue
		}
		log.Info("affinity", "size", st.Size, "repins", st.Repins-last.Repins,
			"evictions", st.Evictions-last.Evictions, "expirations", st.Expirations-last.Expirations,
			"hits", st.Hits-last.Hits, "misses", st.Misses-last.Misses)
		last = st
	}
}

// writePIDFile writes this process's id to path ("" for none), through a
// temporary file renamed over it, so that a reader never sees a part.
func writePIDFile(path string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("PID file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("PID file: %w", err)
	}
	return nil
}

// removePIDFile removes the PID file at exit, unless it names another
// process: the new one of an upgrade, which has written it since.
func removePIDFile(path string, log *slog.Logger) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("PID file not removed", "file", path, "error", err)
	}
}

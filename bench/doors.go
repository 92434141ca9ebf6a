package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
)

// doors are the lbctl instances one mode's run plays against: one, or
// --instances of them on distinct loopback addresses (127.0.0.2, .3, ...),
// each built by instance.New exactly as serve builds it, with its own pool,
// prober and (in L4) affinity table. The lab's events act on every one of
// them: a reload (which is how --add joins a backend), an admin state, or a
// restart, which shuts an instance down, saves its state file if it has
// one, and builds it again on the same address.
type doors struct {
	log      *slog.Logger
	stateDir string // where each instance keeps its state file; "" for none

	// mu guards cfg, which the instances' Load reads on a reload, and
	// all, which a restart changes.
	mu  sync.Mutex
	cfg *config.Config
	all []*door
}

// door is one running instance and what it needs to stop.
type door struct {
	index      int
	addr       string // the front listener's, kept across restarts
	in         *instance.Instance
	served     chan error
	stopProbes context.CancelFunc
	probes     sync.WaitGroup
}

// startDoors builds n instances of cfg (whose Mode says the front door)
// and serves each on a port of 127.0.0.(2+i). With stateDir, each keeps
// the state file lab-N.state there. It returns once every backend passes
// its health checks on every instance, with the checks running on.
func startDoors(ctx context.Context, cfg *config.Config, n int, stateDir string, log *slog.Logger) (*doors, error) {
	d := &doors{log: log, stateDir: stateDir, cfg: cfg}
	for i := range n {
		dr, err := d.start(ctx, i, fmt.Sprintf("127.0.0.%d:0", 2+i))
		if err != nil {
			d.close()
			return nil, err
		}
		d.all = append(d.all, dr)
	}
	if err := d.waitUp(ctx); err != nil {
		d.close()
		return nil, err
	}
	for _, dr := range d.all {
		dr.probe()
	}
	return d, nil
}

// instanceConfig is the config instance i runs: the shared one with its
// own state file.
func (d *doors) instanceConfig(i int) *config.Config {
	d.mu.Lock()
	c := *d.cfg
	d.mu.Unlock()
	c.Backends = slices.Clone(c.Backends)
	if d.stateDir != "" {
		c.Affinity.StateFile = filepath.Join(d.stateDir, fmt.Sprintf("lab-%d.state", i+1))
	}
	return &c
}

// start builds instance i and serves it on addr.
func (d *doors) start(ctx context.Context, i int, addr string) (*door, error) {
	in, err := instance.New(d.instanceConfig(i), d.log)
	if err != nil {
		return nil, fmt.Errorf("instance %d: %w", i+1, err)
	}
	in.Load = func() (*config.Config, error) { return d.instanceConfig(i), nil }
	ln, err := instance.Listen(ctx, addr)
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("instance %d: %w", i+1, err)
	}
	dr := &door{index: i, addr: ln.Addr().String(), in: in, served: make(chan error, 1)}
	go func() { dr.served <- in.Serve(ln) }()
	return dr, nil
}

// probe starts the instance's health checks, until stop.
func (dr *door) probe() {
	probeCtx, stop := context.WithCancel(context.Background())
	dr.stopProbes = stop
	dr.probes.Go(func() { dr.in.Prober().Run(probeCtx) })
}

// stop shuts the instance down, letting its connections finish for at
// most grace, saves its state file, and waits until nothing of it runs.
func (dr *door) stop(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	dr.in.Shutdown(ctx) // past grace, it closes what is left: that is no failure here
	saveErr := dr.in.SaveState()
	if dr.stopProbes != nil {
		dr.stopProbes()
	}
	dr.probes.Wait()
	err := <-dr.served
	dr.in.Close()
	if err != nil && !errors.Is(err, instance.ErrClosed) {
		return errors.Join(fmt.Errorf("instance %d: serve: %w", dr.index+1, err), saveErr)
	}
	return saveErr
}

// urls returns each instance's front door as a URL.
func (d *doors) urls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var us []string
	for _, dr := range d.all {
		us = append(us, frontURL(d.cfg, dr.addr))
	}
	return us
}

// each runs f on every instance, in order, and joins the errors.
func (d *doors) each(f func(*instance.Instance) error) error {
	d.mu.Lock()
	all := slices.Clone(d.all)
	d.mu.Unlock()
	var errs []error
	for _, dr := range all {
		if err := f(dr.in); err != nil {
			errs = append(errs, fmt.Errorf("instance %d: %w", dr.index+1, err))
		}
	}
	return errors.Join(errs...)
}

// reload makes every instance read its config again.
func (d *doors) reload(ctx context.Context) error {
	return d.each(func(in *instance.Instance) error {
		_, err := in.Reload(ctx)
		return err
	})
}

// add puts a backend into the config and reloads every instance.
func (d *doors) add(ctx context.Context, id, addr string) error {
	d.mu.Lock()
	c := *d.cfg
	c.Backends = append(slices.Clone(c.Backends), config.Backend{ID: id, Address: addr, Weight: 1})
	d.cfg = &c
	d.mu.Unlock()
	return d.reload(ctx)
}

// setState puts backend id in state on every instance; a drain lasts at
// most drainFor when it is positive.
func (d *doors) setState(id string, state backend.AdminState, drainFor time.Duration) error {
	opts := admin.StateOptions{}
	if state == backend.Drain {
		opts.For = drainFor
	}
	return d.each(func(in *instance.Instance) error {
		_, err := in.SetAdminState(id, state, opts, "lab")
		return err
	})
}

// restart stops every instance and builds it again on its address, one
// after the other, as a rolling restart of lbctl processes would.
func (d *doors) restart(ctx context.Context) error {
	var errs []error
	for i := range d.count() {
		d.mu.Lock()
		old := d.all[i]
		d.mu.Unlock()
		errs = append(errs, old.stop(time.Second))
		dr, err := d.start(ctx, i, old.addr)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		dr.probe()
		d.mu.Lock()
		d.all[i] = dr
		d.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (d *doors) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.all)
}

// affinity returns the counters of instance 1's table, nil in L7.
func (d *doors) affinity() *AffinityStats {
	d.mu.Lock()
	in := d.all[0].in
	d.mu.Unlock()
	table := in.Table()
	if table == nil {
		return nil
	}
	st := table.Stats()
	return &AffinityStats{Hits: st.Hits, Misses: st.Misses, Repins: st.Repins,
		Evictions: st.Evictions, Expirations: st.Expirations, Size: st.Size}
}

// upgrade is for lbctl as a child process only; Validate keeps it from an
// in-process run.
func (d *doors) upgrade(context.Context) error {
	return errors.New("--upgrade@: in-process instances cannot upgrade; give the lbctl binary (Options.Binary)")
}

// close stops every instance, the way the end of a run does.
func (d *doors) close() error {
	d.mu.Lock()
	all := d.all
	d.all = nil
	d.mu.Unlock()
	var errs []error
	for _, dr := range all {
		errs = append(errs, dr.stop(time.Second))
	}
	return errors.Join(errs...)
}

// waitUp probes until every backend of every instance is available, so
// that a run does not start while the previous one's failures still count.
func (d *doors) waitUp(ctx context.Context) error {
	return d.each(func(in *instance.Instance) error {
		p := in.Prober()
		rounds := p.Rise + p.Fall + 20
		for range rounds {
			p.Round(ctx)
			var down []string
			for _, b := range in.Pool().Registry().All() {
				if !b.Available() {
					down = append(down, b.ID)
				}
			}
			if len(down) == 0 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return errors.New("backends did not pass their health checks before the run")
	})
}

// frontURL is the URL of a front door of cfg listening on addr: https
// when it terminates TLS.
func frontURL(cfg *config.Config, addr string) string {
	if cfg.TLS.On() {
		return "https://" + addr + "/"
	}
	return "http://" + addr + "/"
}

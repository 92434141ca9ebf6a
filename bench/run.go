// Package bench owns lbctl's NAT-skew and failover lab: the population of
// browsers behind NAT gateways (each gateway a distinct 127.x.y.z source
// address), the load generator, the schedule of backend failures and
// recoveries, the metrics, and the report and plot. It starts killable
// in-process backends (internal/testbackend) and builds lbctl's own L4 and
// L7 front doors over one backend pool through the instance wiring, exactly
// as serve does, plays the population against each front door in turn, and
// reports how evenly each kind of persistence spread the load, whether any
// session moved while its backend was up, and how users were re-pinned when
// a backend was killed.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
)

// Run plays the scenario against each mode in turn and returns the report.
// Backends start once; before each mode they are all brought back up, their
// records cleared, and the front door is built afresh (a new affinity table
// for L4) over the one pool both modes share.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.KeepAlive {
		// Every user keeps a connection open for the whole run: its own,
		// the proxy's two sides, and the backend's.
		need := 4*uint64(o.Users) + 512
		if limit, ok := fdLimit(); ok && need > limit {
			return nil, fmt.Errorf("--keepalive: %d users keep about %d files open, over this process's limit of %d (ulimit -n)",
				o.Users, need, limit)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pop, err := NewPopulation(o.Users, o.Gateways, o.Skew, o.ZipfS, o.Seed)
	if err != nil {
		return nil, err
	}
	set, err := startBackends(o.Backends)
	if err != nil {
		return nil, err
	}
	defer set.close()
	base := o.Config
	if base == nil {
		base = LabConfig()
	}
	cfg, err := runConfig(base, set)
	if err != nil {
		return nil, err
	}
	pool, err := instance.NewPool(cfg, log)
	if err != nil {
		return nil, err
	}
	rep := &Report{Scenario: scenario(&o, pop, cfg)}
	for _, m := range o.Modes {
		res, err := runMode(ctx, m, &o, pop, set, cfg, pool, log)
		if err != nil {
			return nil, fmt.Errorf("%s run: %w", m, err)
		}
		rep.Runs = append(rep.Runs, res)
	}
	return rep, nil
}

// runMode plays the scenario once against one front door.
func runMode(ctx context.Context, mode Mode, o *Options, pop *Population, set *backendSet,
	cfg *config.Config, pool *instance.Pool, log *slog.Logger) (RunResult, error) {
	if err := set.reset(); err != nil {
		return RunResult{}, err
	}
	if err := waitUp(ctx, pool); err != nil {
		return RunResult{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return RunResult{}, err
	}
	modeCfg := *cfg
	modeCfg.Mode = string(mode)
	door, table := instance.NewFrontDoor(&modeCfg, pool, log)
	served := make(chan error, 1)
	go func() { served <- door.Serve(ln) }()

	var probes sync.WaitGroup
	probeCtx, stopProbes := context.WithCancel(ctx)
	if pool.Prober != nil {
		probes.Go(func() { pool.Prober.Run(probeCtx) })
	}

	gen := newGenerator(o, pop, set, "http://"+ln.Addr().String()+"/")
	stopBar := startProgress(o.Progress, string(mode), gen.total(), &gen.done)
	start := time.Now()
	sched := startSchedule(set, o.Failures, o.Recoveries, start)
	samples, elapsed, runErr := gen.run(ctx, start)
	downs, warnings, schedErr := sched.stop(elapsed)
	stopBar()

	stopProbes()
	probes.Wait()
	door.Close()
	if err := <-served; err != nil && !errors.Is(err, instance.ErrClosed) {
		return RunResult{}, fmt.Errorf("serve: %w", err)
	}
	var aff *AffinityStats
	if table != nil {
		st := table.Stats()
		table.Close()
		aff = &AffinityStats{Hits: st.Hits, Misses: st.Misses, Repins: st.Repins,
			Evictions: st.Evictions, Expirations: st.Expirations, Size: st.Size}
	}
	records := set.takeRecords()
	if err := errors.Join(runErr, schedErr); err != nil {
		return RunResult{}, err
	}
	return analyze(&runData{
		mode:     mode,
		pop:      pop,
		requests: o.Requests,
		ids:      set.ids(),
		samples:  samples,
		records:  records,
		downs:    downs,
		elapsed:  elapsed,
		reasons:  gen.failureReasons(),
		affinity: aff,
		warnings: warnings,
	}), nil
}

// newGenerator returns the generator that plays pop against target, with
// the options' pace and concurrency, knowing set's backends by index.
func newGenerator(o *Options, pop *Population, set *backendSet, target string) *generator {
	gen := &generator{
		pop:         pop,
		requests:    o.Requests,
		duration:    o.Pace(),
		concurrency: o.Concurrency,
		keepAlive:   o.KeepAlive,
		timeout:     10 * time.Second,
		target:      target,
		backends:    make(map[string]int, len(set.all)),
	}
	for i, b := range set.all {
		gen.backends[b.id] = i
	}
	return gen
}

// waitUp probes until every backend is available, so that a run does not
// start while the previous one's failures still count.
func waitUp(ctx context.Context, pool *instance.Pool) error {
	if pool.Prober == nil {
		return nil
	}
	rounds := pool.Prober.Rise + pool.Prober.Fall + 20
	for range rounds {
		pool.Prober.Round(ctx)
		var down []string
		for _, b := range pool.Backends.Registry().All() {
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
}

// scenario describes what every mode faces.
func scenario(o *Options, pop *Population, cfg *config.Config) Scenario {
	s := Scenario{
		Users:          o.Users,
		Gateways:       o.Gateways,
		ActiveGateways: pop.ActiveGateways(),
		Skew:           string(o.Skew),
		Seed:           o.Seed,
		Backends:       o.Backends,
		Requests:       o.Requests,
		TotalRequests:  o.Users * o.Requests,
		Concurrency:    o.Concurrency,
		KeepAlive:      o.KeepAlive,
		Rate:           o.Rate,
		DurationMS:     ms(o.Pace()),
		Policy:         cfg.Balance.Policy,
		Failures:       []EventReport{},
		Recoveries:     []EventReport{},
	}
	if o.Skew == Zipf {
		s.ZipfS = o.ZipfS
	}
	switch h := cfg.Health; h.Check {
	case "none":
		s.Health = "none"
	case "http":
		s.Health = fmt.Sprintf("http %s every %v (rise %d, fall %d)", h.Path, h.Interval.D(), h.Rise, h.Fall)
	default:
		s.Health = fmt.Sprintf("%s every %v (rise %d, fall %d)", h.Check, h.Interval.D(), h.Rise, h.Fall)
	}
	for _, e := range o.Failures {
		s.Failures = append(s.Failures, EventReport{Backend: e.Backend, AtMS: ms(e.At)})
	}
	for _, e := range o.Recoveries {
		s.Recoveries = append(s.Recoveries, EventReport{Backend: e.Backend, AtMS: ms(e.At)})
	}
	for _, g := range pop.Top(topGateways) {
		s.TopGateways = append(s.TopGateways, GatewayShare{Addr: g.Addr.String(), Users: g.Users, Share: pop.Share(g.Index)})
	}
	return s
}

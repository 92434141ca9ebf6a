// Package bench owns lbctl's NAT-skew and failover lab: the population of
// browsers behind NAT gateways (each gateway a distinct 127.x.y.z source
// address), the load generator, the schedule of backend failures and
// recoveries, the metrics, and the report and plot. It starts killable
// in-process backends (internal/testbackend) and builds lbctl's own L4 and
// L7 front doors over one backend pool through the instance wiring, exactly
// as serve does, plays the population against each front door in turn, and
// reports how evenly each kind of persistence spread the load, whether any
// session moved while its backend was up, and how users were re-pinned when
// a backend was killed. A run that restarts, upgrades or clusters lbctl
// runs it as `lbctl serve` child processes of a binary instead (procs.go).
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
)

// Run plays the scenario against each mode in turn and returns the report.
// Backends start once; before each mode they are all brought back up, their
// records cleared, and the front door is built afresh (a new affinity table
// for L4) over the one pool both modes share.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if len(o.Upgrades) > 0 && o.Binary == "" {
		return nil, errors.New("--upgrade@: needs the lbctl binary, to run lbctl as child processes")
	}
	if o.Cluster && o.Binary == "" {
		return nil, errors.New("--cluster: needs the lbctl binary, to run lbctl as child processes")
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
	set, err := startBackends(o.Backends, o.TargetBackends, o.Adds)
	if err != nil {
		return nil, err
	}
	defer set.close()
	base := o.Config
	if base == nil {
		base = LabConfig()
	}
	cfg, err := runConfig(base, set.all[:o.Backends])
	if err != nil {
		return nil, err
	}
	var stateDir string
	if o.StateFile {
		if stateDir, err = os.MkdirTemp("", "lbctl-bench-"); err != nil {
			return nil, fmt.Errorf("--state-file: %w", err)
		}
		defer os.RemoveAll(stateDir)
	}
	rep := &Report{Scenario: scenario(&o, pop, cfg)}
	for _, m := range o.Modes {
		dir := ""
		if stateDir != "" {
			dir = filepath.Join(stateDir, string(m))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, fmt.Errorf("--state-file: %w", err)
			}
		}
		res, err := runMode(ctx, m, &o, pop, set, cfg, dir, log)
		if err != nil {
			return nil, fmt.Errorf("%s run: %w", m, err)
		}
		rep.Runs = append(rep.Runs, res)
	}
	return rep, nil
}

// startFleet starts the mode's lbctl instances: child processes of
// o.Binary when the run restarts, upgrades or clusters lbctl and has the
// binary,
// in-process instances otherwise. A process run keeps its files in a
// folder of its own, and its state files there too.
func startFleet(ctx context.Context, o *Options, cfg *config.Config, stateDir string, log *slog.Logger) (fleet, error) {
	if !o.processes() {
		return startDoors(ctx, cfg, o.instances(), stateDir, log)
	}
	dir, err := os.MkdirTemp("", "lbctl-bench-proc-")
	if err != nil {
		return nil, fmt.Errorf("lbctl processes: %w", err)
	}
	ps, err := startProcs(ctx, o.Binary, cfg, o.instances(), dir, o.StateFile, o.Cluster)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &removing{ps, dir}, nil
}

// removing is a fleet whose close also removes its folder.
type removing struct {
	fleet
	dir string
}

func (r *removing) close() error {
	err := r.fleet.close()
	return errors.Join(err, os.RemoveAll(r.dir))
}

// runMode plays the scenario once against one mode's front doors: lbctl's
// own instances, or the --target of the mode.
func runMode(ctx context.Context, mode Mode, o *Options, pop *Population, set *backendSet,
	cfg *config.Config, stateDir string, log *slog.Logger) (res RunResult, err error) {
	if err := set.reset(); err != nil {
		return RunResult{}, err
	}
	var d fleet
	var urls []string
	if targets := o.Targets[mode]; len(targets) > 0 {
		for _, t := range targets {
			u, err := targetURL(t)
			if err != nil {
				return RunResult{}, fmt.Errorf("--target %s=%s: %w", mode, t, err)
			}
			urls = append(urls, u)
		}
		if err := settle(ctx, o.TargetSettle); err != nil {
			return RunResult{}, err
		}
	} else {
		modeCfg := *cfg
		modeCfg.Mode = string(mode)
		if mode == L4 {
			modeCfg.TLS.Certificates = nil // TLS terminates at L7 only
		}
		if d, err = startFleet(ctx, o, &modeCfg, stateDir, log); err != nil {
			return RunResult{}, err
		}
		defer func() {
			if d != nil {
				err = errors.Join(err, d.close())
			}
		}()
		urls = d.urls()
	}

	gen := newGenerator(o, pop, set, urls)
	stopBar := startProgress(o.Progress, string(mode), gen.total(), &gen.done)
	start := time.Now()
	sched := startSchedule(actions(ctx, o, set, d), start)
	samples, elapsed, runErr := gen.run(ctx, start)
	past, warnings, schedErr := sched.stop(elapsed)
	stopBar()

	var aff *AffinityStats
	if d != nil {
		aff = d.affinity()
		closeErr := d.close()
		d = nil
		if closeErr != nil {
			return RunResult{}, closeErr
		}
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
		initial:  o.Backends,
		samples:  samples,
		records:  records,
		past:     past,
		drainFor: o.DrainFor,
		elapsed:  elapsed,
		reasons:  gen.failureReasons(),
		affinity: aff,
		warnings: warnings,
		churn:    o.IPChurn > 0 || o.IPChurnEvery > 0,
		prefix:   cfg.Affinity.IPv4Prefix,
	}), nil
}

// fleet is the lbctl instances a mode's run plays against: in-process
// (doors) or child processes (procs, for --restart@ and --upgrade@ with a
// binary).
type fleet interface {
	urls() []string
	reload(ctx context.Context) error
	add(ctx context.Context, id, addr string) error
	setState(id string, state backend.AdminState, drainFor time.Duration) error
	restart(ctx context.Context) error
	upgrade(ctx context.Context) error
	affinity() *AffinityStats
	close() error
}

// commandWait bounds a --target-reload-cmd or --target-restart-cmd: a
// restart on a loaded machine may take seconds.
const commandWait = time.Minute

// runCommand runs an operator's shell command that reloads or restarts a
// target, and waits for it to exit. Its output goes into the error when it
// fails. A daemon it starts must leave its standard output and error (as
// daemons do): the wait for the output ends 5 s after the command exits.
func runCommand(ctx context.Context, command string) error {
	ctx, cancel := context.WithTimeout(ctx, commandWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// settle waits d, or until ctx ends.
func settle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// actions are the run's events, each bound to what it acts on.
func actions(ctx context.Context, o *Options, set *backendSet, d fleet) []action {
	var as []action
	on := func(flag string, es []Event, apply func(b *labBackend) error) {
		for _, e := range es {
			b := set.byID[e.Backend]
			as = append(as, action{flag: flag, event: e, backend: b.index, apply: func() error { return apply(b) }})
		}
	}
	on("--fail", o.Failures, func(b *labBackend) error { b.kill(); return nil })
	on("--recover", o.Recoveries, func(b *labBackend) error { return b.restart() })
	if d == nil {
		// A target: its own commands reload and restart it.
		for _, g := range []struct {
			flag, cmd string
			at        []time.Duration
		}{{"--reload@", o.TargetReloadCmd, o.Reloads}, {"--restart@", o.TargetRestartCmd, o.Restarts}} {
			for _, at := range g.at {
				as = append(as, action{flag: g.flag, event: Event{At: at}, backend: -1, apply: func() error { return runCommand(ctx, g.cmd) }})
			}
		}
		return as
	}
	on("--add", o.Adds, func(b *labBackend) error { return d.add(ctx, b.id, b.addr) })
	on("--drain", o.Drains, func(b *labBackend) error { return d.setState(b.id, backend.Drain, o.DrainFor) })
	on("--maint", o.Maints, func(b *labBackend) error { return d.setState(b.id, backend.Maint, 0) })
	on("--ready", o.Readies, func(b *labBackend) error { return d.setState(b.id, backend.Ready, 0) })
	for _, at := range o.Reloads {
		as = append(as, action{flag: "--reload@", event: Event{At: at}, backend: -1, apply: func() error { return d.reload(ctx) }})
	}
	for _, at := range o.Restarts {
		as = append(as, action{flag: "--restart@", event: Event{At: at}, backend: -1, apply: func() error { return d.restart(ctx) }})
	}
	for _, at := range o.Upgrades {
		as = append(as, action{flag: "--upgrade@", event: Event{At: at}, backend: -1, apply: func() error { return d.upgrade(ctx) }})
	}
	return as
}

// newGenerator returns the generator that plays pop against the front
// doors at urls, with the options' pace, concurrency and churn, knowing
// set's backends by index.
func newGenerator(o *Options, pop *Population, set *backendSet, urls []string) *generator {
	gen := &generator{
		pop:         pop,
		requests:    o.Requests,
		duration:    o.Pace(),
		concurrency: o.Concurrency,
		keepAlive:   o.KeepAlive,
		timeout:     10 * time.Second,
		targets:     urls,
		backends:    make(map[string]int, len(set.all)),
		seed:        o.Seed,
		poolSize:    max(o.PoolSize, 1),
		churn:       o.IPChurn,
		churnEvery:  o.IPChurnEvery,
	}
	for i, b := range set.all {
		gen.backends[b.id] = i
	}
	return gen
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
	s.PoolSize, s.IPChurn, s.IPChurnEveryMS = max(o.PoolSize, 1), o.IPChurn, ms(o.IPChurnEvery)
	s.Instances, s.StateFile = o.instances(), o.StateFile
	if len(o.Targets) > 0 {
		s.Instances = 0
	}
	for _, m := range o.Modes {
		for _, t := range o.Targets[m] {
			s.Target += fmt.Sprintf(", target %s=%s", m, t)
		}
		s.Instances = max(s.Instances, len(o.Targets[m]))
	}
	for _, g := range []struct {
		flag string
		es   []Event
	}{{"--add", o.Adds}, {"--drain", o.Drains}, {"--maint", o.Maints}, {"--ready", o.Readies}} {
		for _, e := range g.es {
			s.Events = append(s.Events, g.flag+" "+e.String())
		}
	}
	if o.DrainFor > 0 {
		s.Events = append(s.Events, "--drain-for "+o.DrainFor.String())
	}
	for _, at := range o.Reloads {
		s.Events = append(s.Events, "--reload@"+at.String())
	}
	for _, at := range o.Restarts {
		s.Events = append(s.Events, "--restart@"+at.String())
	}
	for _, at := range o.Upgrades {
		s.Events = append(s.Events, "--upgrade@"+at.String())
	}
	if o.Cluster {
		s.Events = append(s.Events, "--cluster")
	}
	if o.processes() {
		s.Events = append(s.Events, "(lbctl as child processes)")
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

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/lbctl/lbctl/bench"
)

// benchFlags are bench's flags, as given.
type benchFlags struct {
	backends, users, gateways, requests, concurrency int
	skew, mode, config, json, plot, logLevel         string
	zipfS, rate                                      float64
	fail, recover                                    []string
	seed                                             uint64
	keepAlive                                        bool
	duration                                         time.Duration

	poolSize, instances                 int
	ipChurn                             float64
	ipChurnEvery, drainFor              time.Duration
	targetSettle                        time.Duration
	add, drain, maint, ready            []string
	reloadAt, restartAt, targetBackends []string
	upgradeAt                           []string
	target                              string
	targetReloadCmd, targetRestartCmd   string
	stateFile, cluster                  bool
	modeGiven                           bool // --mode was on the command line
	scenarioFiles                       []string
}

// defaultBenchFlags returns bench's flags as they are when none is given.
func defaultBenchFlags() benchFlags {
	d := bench.DefaultOptions()
	return benchFlags{
		backends: d.Backends, users: d.Users, gateways: d.Gateways, requests: d.Requests,
		concurrency: d.Concurrency, skew: string(d.Skew), zipfS: d.ZipfS, mode: "both",
		seed: d.Seed, rate: d.Rate, logLevel: "error", poolSize: d.PoolSize, instances: d.Instances,
		targetSettle: d.TargetSettle,
	}
}

func newBenchCmd() *cobra.Command {
	f := defaultBenchFlags()
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure how sticky sessions spread and break: NAT skew, failover, churn, scale-up, drains, restarts",
		Long: `bench is the NAT-skew and failover lab. It starts in-process backends and
lbctl's own L4 and L7 front doors over one backend pool, then plays a
population of browsers behind NAT gateways (each gateway its own 127.x.y.z
source address) against each front door in turn, and reports per backend
the users, requests and share, the balance (max_over_mean, cov, jain),
broken sessions, re-pinned users, failed requests, failover time and
latency, side by side.

  lbctl bench
  lbctl bench --users 5000 --gateways 200 --skew zipf --zipf-s 1.1 --backends 4 \
              --requests 20 --mode both --fail app-02@5s --json report.json --plot report.svg
  lbctl bench --config lbctl.toml    # [balance], [affinity], [cookie], [health], [tls] from a config

Each mode's requests are spread evenly over its run, which lasts
users*requests/--rate seconds (or --duration): every user sends its requests
at a steady pace, at a phase of its own. Event times (--fail, --recover,
--add, --drain, --maint, --ready, --reload@, --restart@, --upgrade@) count from the
start of each mode's run and must fall within it. broken_sessions is split
by cause: backend_failed, maintenance, drain_deadline, restarted, reloaded,
instance_changed, address_changed, and rebalanced (none of these).

  lbctl bench --pool-size 16 --ip-churn 0.05      # carrier NAT pools
  lbctl bench --add app-05@4s                     # scale up through a reload
  lbctl bench --drain app-02@3s --drain-for 4s
  lbctl bench --restart@4s --state-file            # lbctl as child processes: SIGTERM, start again
  lbctl bench --upgrade@4s                         # SIGUSR2: the zero-gap upgrade
  lbctl bench --instances 3 -c maglev.toml
  lbctl bench --instances 3 --cluster              # the instances share their pins
  lbctl bench --target l7=127.0.0.1:18080 --target-backends 127.0.0.1:19001,127.0.0.1:19002
  lbctl bench --target l7=https://127.0.0.1:8443 --target-backends ... \
              --restart@4s --target-restart-cmd 'systemctl restart haproxy'
  lbctl bench --scenario bench/scenarios/cgnat.toml`,
		// Flags are parsed here, so that --reload@4s reads as --reload@=4s.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cmd.Flags().Parse(atFlags(args)); err != nil {
				if errors.Is(err, pflag.ErrHelp) {
					return cmd.Help()
				}
				return err
			}
			// cobra defines --help on the command's flags before RunE, so
			// that Parse sets it rather than failing with ErrHelp.
			if help, _ := cmd.Flags().GetBool("help"); help {
				return cmd.Help()
			}
			if rest := cmd.Flags().Args(); len(rest) > 0 {
				return fmt.Errorf("bench takes no arguments, got %q", rest)
			}
			f.modeGiven = cmd.Flags().Changed("mode")
			runs, err := f.scenarios(cmd.Flags())
			if err != nil {
				return err
			}
			if f.plot != "" {
				if _, err := bench.PlotFormat(f.plot); err != nil {
					return fmt.Errorf("--plot: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			for i, sc := range runs {
				o := sc.Options
				// A restart or an upgrade runs lbctl as child processes
				// of this very binary.
				if o.Binary, err = os.Executable(); err != nil {
					return fmt.Errorf("finding the lbctl binary: %w", err)
				}
				if term.IsTerminal(int(os.Stderr.Fd())) {
					o.Progress = os.Stderr
				}
				if sc.Path != "" {
					if i > 0 {
						fmt.Fprintln(out)
					}
					fmt.Fprintf(out, "== %s (%s)\n", sc.Name, sc.Path)
				}
				rep, err := bench.Run(ctx, o)
				if err != nil {
					return fmt.Errorf("%s%w", sc.prefix(), err)
				}
				if err := rep.WriteText(out); err != nil {
					return err
				}
				if f.json != "" {
					if err := writeFile(sc.file(f.json, len(runs)), rep.WriteJSON); err != nil {
						return fmt.Errorf("--json: %w", err)
					}
				}
				if f.plot != "" {
					name := sc.file(f.plot, len(runs))
					if err := writeFile(name, func(w io.Writer) error { return rep.Plot(w, name) }); err != nil {
						return fmt.Errorf("--plot: %w", err)
					}
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.backends, "backends", f.backends, "number of in-process backends, app-01..app-NN")
	fl.IntVar(&f.users, "users", f.users, "number of users (browsers)")
	fl.IntVar(&f.gateways, "gateways", f.gateways, "number of NAT gateways (source addresses) the users sit behind")
	fl.StringVar(&f.skew, "skew", f.skew, "how users spread over gateways: zipf or uniform")
	fl.Float64Var(&f.zipfS, "zipf-s", f.zipfS, "zipf exponent: gateway g holds a share proportional to 1/(g+1)^s")
	fl.IntVar(&f.requests, "requests", f.requests, "requests per user")
	fl.StringVar(&f.mode, "mode", f.mode, "front doors to measure: l4, l7 or both")
	fl.StringArrayVar(&f.fail, "fail", nil, "kill a backend this far into each run, as `ID@DURATION` such as app-02@5s (repeatable)")
	fl.StringArrayVar(&f.recover, "recover", nil, "bring a killed backend back on its address, as `ID@DURATION` (repeatable)")
	fl.StringVar(&f.json, "json", "", "write the report as JSON to `FILE`")
	fl.StringVar(&f.plot, "plot", "", "draw the report to `FILE` (.svg or .png)")
	fl.Uint64Var(&f.seed, "seed", f.seed, "seed of the population: same seed, same users behind the same gateways")
	fl.StringVarP(&f.config, "config", "c", "", "take [balance], [affinity], [cookie] and [health] from this config `FILE`")
	fl.IntVar(&f.concurrency, "concurrency", f.concurrency, "most requests in flight at once")
	fl.BoolVar(&f.keepAlive, "keepalive", false, "each user keeps one connection open instead of a new one per request")
	fl.Float64Var(&f.rate, "rate", f.rate, "requests per second offered; sets how long each run lasts; 0 = as fast as possible")
	fl.DurationVar(&f.duration, "duration", 0, "spread each mode's requests over this long instead of pacing by --rate")
	fl.StringVar(&f.logLevel, "log-level", f.logLevel, "level of lbctl's own logs on stderr: debug, info, warn or error")
	fl.IntVar(&f.poolSize, "pool-size", f.poolSize, "addresses per gateway (a carrier NAT's pool), from which --ip-churn picks")
	fl.Float64Var(&f.ipChurn, "ip-churn", 0, "probability that a request moves its user to another address of its gateway's pool")
	fl.DurationVar(&f.ipChurnEvery, "ip-churn-every", 0, "move each user to another address of its pool once its address is this old")
	fl.StringArrayVar(&f.add, "add", nil, "join a new backend through a reload, as `ID@DURATION` such as app-05@4s (repeatable)")
	fl.StringArrayVar(&f.drain, "drain", nil, "drain a backend, as `ID@DURATION` (repeatable)")
	fl.StringArrayVar(&f.maint, "maint", nil, "put a backend in maintenance, as `ID@DURATION` (repeatable)")
	fl.StringArrayVar(&f.ready, "ready", nil, "make a backend ready again, as `ID@DURATION` (repeatable)")
	fl.DurationVar(&f.drainFor, "drain-for", 0, "bound each --drain: after this, its pinned users move too; 0 = no deadline")
	fl.StringArrayVar(&f.reloadAt, "reload@", nil, "reload lbctl's config this far into each run, as `DURATION` (repeatable)")
	fl.StringArrayVar(&f.restartAt, "restart@", nil, "restart lbctl (SIGTERM, then start the process again) this far into each run, as `DURATION` (repeatable)")
	fl.StringArrayVar(&f.upgradeAt, "upgrade@", nil, "upgrade lbctl (SIGUSR2: the binary on disk takes over) this far into each run, as `DURATION` (repeatable)")
	fl.IntVar(&f.instances, "instances", f.instances, "lbctl instances on 127.0.0.2 and up; each connection goes to one by a hash, as ECMP")
	fl.BoolVar(&f.cluster, "cluster", false, "make the --instances one [cluster] that shares pins and admin states (lbctl as child processes)")
	fl.BoolVar(&f.stateFile, "state-file", false, "give each instance an affinity state file, so that a restart keeps pins and admin states")
	fl.StringArrayVar(&f.scenarioFiles, "scenario", nil, "run the scenario in this TOML `FILE` instead of the flags (repeatable: each in turn)")
	fl.StringVar(&f.target, "target", "", "measure external load balancers instead of lbctl, as `l4=ADDR,l7=ADDR` (either alone; a mode again adds an instance; https://ADDR for TLS)")
	fl.StringVar(&f.targetReloadCmd, "target-reload-cmd", "", "with --target: the shell `COMMAND` that --reload@ runs to reload it")
	fl.StringVar(&f.targetRestartCmd, "target-restart-cmd", "", "with --target: the shell `COMMAND` that --restart@ runs to restart it")
	fl.DurationVar(&f.targetSettle, "target-settle", f.targetSettle, "with --target: wait this long with the backends up before each run, for the target's health checks")
	fl.StringSliceVar(&f.targetBackends, "target-backends", nil, "with --target: the lab's backends listen on these `ADDR,...`, one per --backends")
	return cmd
}

// options turns the flags into a scenario.
func (f *benchFlags) options() (bench.Options, error) {
	o := bench.DefaultOptions()
	o.Backends, o.Users, o.Gateways, o.Requests = f.backends, f.users, f.gateways, f.requests
	o.Skew, o.ZipfS, o.Seed = bench.Skew(f.skew), f.zipfS, f.seed
	o.Concurrency, o.KeepAlive, o.Rate, o.Duration = f.concurrency, f.keepAlive, f.rate, f.duration
	modes, err := bench.ParseModes(f.mode)
	if err != nil {
		return o, err
	}
	o.Modes = modes
	for _, s := range f.fail {
		e, err := bench.ParseEvent(s)
		if err != nil {
			return o, fmt.Errorf("--fail: %w", err)
		}
		o.Failures = append(o.Failures, e)
	}
	for _, g := range []struct {
		flag string
		from []string
		to   *[]bench.Event
	}{{"--recover", f.recover, &o.Recoveries}, {"--add", f.add, &o.Adds}, {"--drain", f.drain, &o.Drains},
		{"--maint", f.maint, &o.Maints}, {"--ready", f.ready, &o.Readies}} {
		for _, s := range g.from {
			e, err := bench.ParseEvent(s)
			if err != nil {
				return o, fmt.Errorf("%s: %w", g.flag, err)
			}
			*g.to = append(*g.to, e)
		}
	}
	for _, g := range []struct {
		flag string
		from []string
		to   *[]time.Duration
	}{{"--reload@", f.reloadAt, &o.Reloads}, {"--restart@", f.restartAt, &o.Restarts}, {"--upgrade@", f.upgradeAt, &o.Upgrades}} {
		for _, s := range g.from {
			at, err := bench.ParseAt(s)
			if err != nil {
				return o, fmt.Errorf("%s: %w", g.flag, err)
			}
			*g.to = append(*g.to, at)
		}
	}
	o.PoolSize, o.IPChurn, o.IPChurnEvery = f.poolSize, f.ipChurn, f.ipChurnEvery
	o.DrainFor, o.Instances, o.StateFile, o.Cluster = f.drainFor, f.instances, f.stateFile, f.cluster
	if f.target != "" {
		if o.Targets, err = bench.ParseTargets(f.target); err != nil {
			return o, fmt.Errorf("--target: %w", err)
		}
		if !f.modeGiven {
			// The modes are those the target names, l4 first.
			o.Modes = nil
			for _, m := range []bench.Mode{bench.L4, bench.L7} {
				if len(o.Targets[m]) > 0 {
					o.Modes = append(o.Modes, m)
				}
			}
		}
		if len(f.targetBackends) > 0 {
			o.Backends = len(f.targetBackends)
		}
	}
	o.TargetBackends, o.TargetSettle = f.targetBackends, f.targetSettle
	o.TargetReloadCmd, o.TargetRestartCmd = f.targetReloadCmd, f.targetRestartCmd
	if err := o.Validate(); err != nil {
		return o, err
	}
	if f.config != "" {
		if o.Config, err = bench.LoadConfig(f.config); err != nil {
			return o, err
		}
	}
	if o.Logger, err = newLogger(f.logLevel); err != nil {
		return o, err
	}
	return o, nil
}

// scenarioRun is one scenario bench runs: from a file, or from the flags
// (Path "").
type scenarioRun struct {
	bench.ScenarioFile
}

// prefix names the scenario's file for an error, "" for the flags.
func (s *scenarioRun) prefix() string {
	if s.Path == "" {
		return ""
	}
	return s.Path + ": "
}

// file is where the report of the scenario goes: name itself with one
// scenario, else name with the scenario file's base name before the
// extension (report-cgnat.json).
func (s *scenarioRun) file(name string, runs int) string {
	if runs < 2 {
		return name
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	return strings.TrimSuffix(name, ext) + "-" + base + ext
}

// scenarioFlagsAllowed are the flags that go with --scenario: where the
// reports go and what is logged. Everything else is the scenario's.
var scenarioFlagsAllowed = []string{"scenario", "json", "plot", "log-level"}

// scenarios returns what bench runs: each --scenario file, or the flags.
func (f *benchFlags) scenarios(fs *pflag.FlagSet) ([]scenarioRun, error) {
	if len(f.scenarioFiles) == 0 {
		o, err := f.options()
		if err != nil {
			return nil, err
		}
		return []scenarioRun{{ScenarioFile: bench.ScenarioFile{Options: o}}}, nil
	}
	var errs []error
	fs.Visit(func(fl *pflag.Flag) {
		if !slices.Contains(scenarioFlagsAllowed, fl.Name) {
			errs = append(errs, fmt.Errorf("--%s: set it in the scenario file; with --scenario only --json, --plot and --log-level apply", fl.Name))
		}
	})
	logger, err := newLogger(f.logLevel)
	if err != nil {
		errs = append(errs, err)
	}
	var runs []scenarioRun
	for _, path := range f.scenarioFiles {
		sf, err := bench.LoadScenario(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sf.Options.Logger = logger
		runs = append(runs, scenarioRun{ScenarioFile: *sf})
	}
	return runs, errors.Join(errs...)
}

// atFlags rewrites --reload@DURATION, --restart@DURATION and
// --upgrade@DURATION, as the lab's
// flags are written, into the --reload@=DURATION that pflag parses.
func atFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		for _, name := range []string{"--reload@", "--restart@", "--upgrade@"} {
			if rest, ok := strings.CutPrefix(a, name); ok && rest != "" && !strings.HasPrefix(rest, "=") {
				out[i] = name + "=" + rest
			}
		}
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
	}
	return out
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

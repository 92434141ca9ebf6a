package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/lbctl/lbctl/config"
)

// Mode is a front door the lab measures.
type Mode string

const (
	// L4 is the TCP proxy with source-IP affinity.
	L4 Mode = "l4"
	// L7 is the HTTP proxy with cookie persistence.
	L7 Mode = "l7"
)

// ParseModes returns the modes to run for "l4", "l7" or "both" (l4, then
// l7).
func ParseModes(s string) ([]Mode, error) {
	switch s {
	case "l4":
		return []Mode{L4}, nil
	case "l7":
		return []Mode{L7}, nil
	case "both":
		return []Mode{L4, L7}, nil
	}
	return nil, fmt.Errorf("--mode: %q is not l4, l7 or both", s)
}

// Event is something the lab does to a backend at a time into each mode's
// run: kill it (--fail), bring it back (--recover), join it (--add), or put
// it in an admin state (--drain, --maint, --ready). A --reload@ or
// --restart@ has no backend.
type Event struct {
	Backend string
	At      time.Duration
}

// ParseEvent parses "ID@DURATION", such as "app-02@5s".
func ParseEvent(s string) (Event, error) {
	id, at, ok := strings.Cut(s, "@")
	if !ok || id == "" || at == "" {
		return Event{}, fmt.Errorf("%q is not ID@DURATION (app-02@5s)", s)
	}
	d, err := parseAt(s, at)
	if err != nil {
		return Event{}, err
	}
	return Event{Backend: id, At: d}, nil
}

// ParseAt parses the DURATION of --reload@DURATION and --restart@DURATION.
func ParseAt(s string) (time.Duration, error) { return parseAt(s, s) }

func parseAt(s, at string) (time.Duration, error) {
	d, err := time.ParseDuration(at)
	if err != nil {
		return 0, fmt.Errorf("%q: %q is not a duration (500ms, 5s)", s, at)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: the time must not be negative", s)
	}
	return d, nil
}

// String returns the event as ParseEvent reads it.
func (e Event) String() string {
	if e.Backend == "" {
		return e.At.String()
	}
	return e.Backend + "@" + e.At.String()
}

// Options is a lab scenario. Each field is the lbctl bench flag of the same
// name, and Validate's messages name the flags.
type Options struct {
	// Backends is the number of backends, app-01 to app-NN (1..99).
	Backends int
	// Users is the number of browsers, Gateways the number of NAT
	// gateways (source addresses) they sit behind.
	Users, Gateways int
	// Skew spreads users over gateways; ZipfS is the exponent for Zipf.
	Skew  Skew
	ZipfS float64
	// Requests is the number of requests each user sends.
	Requests int
	// Modes are run in order, each against fresh backends.
	Modes []Mode
	// Failures kill backends, Recoveries bring them back, at their times
	// into each mode's run.
	Failures, Recoveries []Event
	// PoolSize is the number of addresses of each gateway (a carrier NAT's
	// pool); with more than one, gateway g sends from 127.(2+g/256).(g%256).x.
	// IPChurn is the probability that a request after a user's first moves
	// it to another address of its pool; IPChurnEvery, when positive, moves
	// it once its address is that old.
	PoolSize     int
	IPChurn      float64
	IPChurnEvery time.Duration
	// Adds join new backends, each with an id that none of app-01..NN
	// has, through a reload of every instance.
	Adds []Event
	// Drains, Maints and Readies set admin states on every instance; a
	// drain lasts at most DrainFor when that is positive.
	Drains, Maints, Readies []Event
	DrainFor                time.Duration
	// Reloads and Restarts reload or restart every instance at those
	// times. A restart is in process: the instance shuts down (open
	// connections get a second), saves its state file if it has one, and
	// is built again on its address.
	Reloads, Restarts []time.Duration
	// Upgrades send SIGUSR2 to every lbctl process at those times: the
	// binary on disk starts, takes the listeners, pins and admin states
	// over, and the old process drains. Run refuses them without Binary.
	Upgrades []time.Duration
	// Binary is the lbctl executable. With it, a run that restarts or
	// upgrades lbctl runs its instances as `lbctl serve` child processes,
	// so that --restart@ is a real SIGTERM and start and --upgrade@ a real
	// SIGUSR2; without it, --restart@ rebuilds in-process instances.
	Binary string
	// Instances is the number of lbctl instances (1..8), on 127.0.0.2 and
	// up; each request goes to one of them by a hash, as ECMP spreads
	// connections. Zero means one.
	Instances int
	// Cluster makes the instances one [cluster]: each shares its pins and
	// admin states with the others over memberlist, so that a user's
	// connection that lands on another instance finds its pin there, once
	// it has arrived. It needs Binary and two instances or more.
	Cluster bool
	// StateFile gives each instance an affinity state file in a temporary
	// folder, so that a restart keeps the admin states and (in L4) pins.
	StateFile bool
	// Targets, when set, are external load balancers to measure instead
	// of lbctl, by mode: each an ADDR (plain HTTP) or https://ADDR (a
	// load balancer that terminates TLS), several when the load balancer
	// runs as several instances, over which connections are spread as
	// with Instances. The lab's backends then listen on TargetBackends,
	// the addresses those load balancers are configured with.
	Targets        map[Mode][]string
	TargetBackends []string
	// TargetReloadCmd and TargetRestartCmd are shell commands that reload
	// or restart the target; with a target, --reload@ and --restart@ run
	// them at their times and wait for them to exit.
	TargetReloadCmd, TargetRestartCmd string
	// TargetSettle is how long the lab waits, with its backends up,
	// before each run against a target, so that the target's health
	// checks have seen them all; lbctl's own instances are waited for
	// by their probes instead.
	TargetSettle time.Duration
	// Seed fixes the population: which users sit behind which gateway
	// and when each sends its requests.
	Seed uint64
	// Concurrency bounds the requests in flight at once.
	Concurrency int
	// KeepAlive lets each user keep one connection open between its
	// requests; by default each request opens a new one.
	KeepAlive bool
	// Rate paces each mode's run: its requests are spread over
	// Users*Requests/Rate seconds, request k of a user due at
	// (k+phase)/Requests of that time. Zero, with no Duration, sends them
	// as fast as Concurrency allows.
	Rate float64
	// Duration, when positive, sets the length of each mode's run
	// instead of Rate.
	Duration time.Duration
	// Config supplies [balance], [affinity], [cookie] and [health]; nil
	// means LabConfig(). Its backends, listen address and timeouts are
	// not used.
	Config *config.Config
	// Logger receives lbctl's own logs (backend down, backend up). Nil
	// discards them.
	Logger *slog.Logger
	// Progress, when set, gets a one-line progress bar redrawn with \r;
	// give it a terminal.
	Progress io.Writer
}

// DefaultOptions returns the default scenario: 2000 users behind 100
// gateways with a Zipf skew of 1.1, 4 backends, 10 requests per user at
// 2000 requests per second (10s per mode), both modes, no failure.
func DefaultOptions() Options {
	return Options{
		Backends:     4,
		Users:        2000,
		Gateways:     100,
		Skew:         Zipf,
		ZipfS:        1.1,
		Requests:     10,
		Modes:        []Mode{L4, L7},
		Seed:         1,
		Concurrency:  64,
		Rate:         2000,
		PoolSize:     1,
		Instances:    1,
		TargetSettle: time.Second,
	}
}

// Pace returns the length each mode's requests are spread over, from
// Duration or else Rate; zero means as fast as possible.
func (o *Options) Pace() time.Duration {
	switch {
	case o.Duration > 0:
		return o.Duration
	case o.Rate > 0 && o.Users > 0 && o.Requests > 0:
		return time.Duration(float64(o.Users) * float64(o.Requests) / o.Rate * float64(time.Second))
	}
	return 0
}

// paceFlags names the flags that set the pace, for messages.
func (o *Options) paceFlags() string {
	if o.Duration > 0 {
		return fmt.Sprintf("--duration %v", o.Duration)
	}
	return fmt.Sprintf("%d requests at --rate %g", o.Users*o.Requests, o.Rate)
}

// Limits of a scenario.
const (
	MaxBackends      = 99
	MaxTotalRequests = 5_000_000 // per mode
)

// Validate checks the scenario and reports every problem, naming flags.
func (o *Options) Validate() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.Backends < 1 || o.Backends > MaxBackends {
		fail("--backends: %d is out of range 1..%d", o.Backends, MaxBackends)
	}
	if o.Users < 1 {
		fail("--users: %d must be at least 1", o.Users)
	}
	if o.Gateways < 1 || o.Gateways > MaxGateways {
		fail("--gateways: %d is out of range 1..%d", o.Gateways, MaxGateways)
	}
	if _, err := ParseSkew(string(o.Skew)); err != nil {
		fail("--skew: %v", err)
	}
	if o.Skew == Zipf && !(o.ZipfS > 0 && o.ZipfS <= 10) {
		fail("--zipf-s: %v is out of range (0, 10]", o.ZipfS)
	}
	if o.Requests < 1 {
		fail("--requests: %d must be at least 1", o.Requests)
	}
	if o.Users >= 1 && o.Requests >= 1 && o.Users > MaxTotalRequests/o.Requests {
		fail("--users times --requests: %d*%d is more than %d requests per mode", o.Users, o.Requests, MaxTotalRequests)
	}
	if len(o.Modes) == 0 {
		fail("--mode: no mode to run")
	}
	for _, m := range o.Modes {
		if m != L4 && m != L7 {
			fail("--mode: %q is not l4, l7 or both", m)
		}
	}
	if o.Concurrency < 1 {
		fail("--concurrency: %d must be at least 1", o.Concurrency)
	}
	if o.Duration < 0 {
		fail("--duration: %v must not be negative", o.Duration)
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		fail("--rate: %v must be a positive number of requests per second, or 0 for as fast as possible", o.Rate)
	}
	if o.PoolSize < 1 || o.PoolSize > MaxPoolSize {
		fail("--pool-size: %d is out of range 1..%d", o.PoolSize, MaxPoolSize)
	}
	if o.IPChurn < 0 || o.IPChurn > 1 || math.IsNaN(o.IPChurn) {
		fail("--ip-churn: %v is not a probability in [0, 1]", o.IPChurn)
	}
	if o.IPChurnEvery < 0 {
		fail("--ip-churn-every: %v must not be negative", o.IPChurnEvery)
	}
	if (o.IPChurn > 0 || o.IPChurnEvery > 0) && o.PoolSize < 2 {
		fail("--ip-churn: a user can only move to another address of its gateway's pool; give --pool-size 2 or more")
	}
	if o.Instances < 0 || o.Instances > MaxInstances {
		fail("--instances: %d is out of range 1..%d", o.Instances, MaxInstances)
	}
	if o.Cluster && o.instances() < 2 {
		fail("--cluster: a cluster of one instance; give --instances 2 or more")
	}
	if o.TargetSettle < 0 {
		fail("--target-settle: %v must not be negative", o.TargetSettle)
	}
	if o.DrainFor < 0 {
		fail("--drain-for: %v must not be negative", o.DrainFor)
	}
	errs = append(errs, o.checkTargets()...)
	errs = append(errs, o.checkEvents()...)
	return errors.Join(errs...)
}

// processes reports whether the run's lbctl instances are child
// processes.
func (o *Options) processes() bool {
	return o.Binary != "" && len(o.Targets) == 0 && (len(o.Restarts) > 0 || len(o.Upgrades) > 0 || o.Cluster)
}

// MaxInstances is the most lbctl instances a run plays against.
const MaxInstances = 8

// instances is the number of instances a run starts.
func (o *Options) instances() int { return max(o.Instances, 1) }

// checkTargets checks --target and --target-backends: each target is an
// address of a mode the run measures, the backends' addresses are as many
// as --backends, and nothing asks an external load balancer to do what
// only lbctl's own instances can (reload, restart, admin states).
func (o *Options) checkTargets() []error {
	var errs []error
	if len(o.Targets) == 0 {
		if len(o.TargetBackends) > 0 {
			errs = append(errs, errors.New("--target-backends: only with --target"))
		}
		if o.TargetReloadCmd != "" || o.TargetRestartCmd != "" {
			errs = append(errs, errors.New("--target-reload-cmd and --target-restart-cmd: only with --target (lbctl's own instances are reloaded and restarted by the lab)"))
		}
		return errs
	}
	for _, m := range []Mode{L4, L7} {
		addrs := o.Targets[m]
		for _, addr := range addrs {
			if _, err := targetURL(addr); err != nil {
				errs = append(errs, fmt.Errorf("--target %s=%s: %w", m, addr, err))
			}
		}
		if len(addrs) > MaxInstances {
			errs = append(errs, fmt.Errorf("--target: %d addresses for mode %s, at most %d instances", len(addrs), m, MaxInstances))
		}
		if len(addrs) > 0 && !slices.Contains(o.Modes, m) {
			errs = append(errs, fmt.Errorf("--target %s=%s: --mode does not run %s", m, addrs[0], m))
		}
	}
	for _, m := range o.Modes {
		if len(o.Targets[m]) == 0 {
			errs = append(errs, fmt.Errorf("--target: no address for mode %s", m))
		}
	}
	if len(o.TargetBackends) != o.Backends {
		errs = append(errs, fmt.Errorf("--target-backends: %d addresses for %d --backends", len(o.TargetBackends), o.Backends))
	}
	for _, a := range o.TargetBackends {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("--target-backends %s: %w", a, err))
		}
	}
	for _, g := range []struct {
		flag string
		n    int
	}{{"--add", len(o.Adds)}, {"--drain", len(o.Drains)}, {"--maint", len(o.Maints)},
		{"--ready", len(o.Readies)}, {"--upgrade@", len(o.Upgrades)}} {
		if g.n > 0 {
			errs = append(errs, fmt.Errorf("%s: acts on lbctl's own instances, not on a --target", g.flag))
		}
	}
	if len(o.Reloads) > 0 && o.TargetReloadCmd == "" {
		errs = append(errs, errors.New("--reload@: with a --target, give --target-reload-cmd, the command that reloads it"))
	}
	if len(o.Restarts) > 0 && o.TargetRestartCmd == "" {
		errs = append(errs, errors.New("--restart@: with a --target, give --target-restart-cmd, the command that restarts it"))
	}
	if o.instances() > 1 {
		errs = append(errs, errors.New("--instances: with a --target, name each of its instances (l4=ADDR,l4=ADDR)"))
	}
	if o.StateFile || o.Cluster {
		errs = append(errs, errors.New("--cluster and --state-file: lbctl's own instances, not a --target"))
	}
	return errs
}

// targetURL returns the URL of a --target address: ADDR or http://ADDR
// for plain HTTP, https://ADDR for a load balancer that terminates TLS.
func targetURL(addr string) (string, error) {
	scheme, hostPort, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, hostPort = "http", addr
	}
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("%q is not http or https", scheme)
	}
	if _, _, err := net.SplitHostPort(hostPort); err != nil {
		return "", err
	}
	return scheme + "://" + hostPort + "/", nil
}

// ParseTargets parses --target's "l4=ADDR,l7=ADDR" (either part alone);
// a mode named again adds an instance of that load balancer, and an ADDR
// may be https://ADDR.
func ParseTargets(s string) (map[Mode][]string, error) {
	t := make(map[Mode][]string)
	for part := range strings.SplitSeq(s, ",") {
		m, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || (Mode(m) != L4 && Mode(m) != L7) || addr == "" {
			return nil, fmt.Errorf("%q is not l4=ADDR or l7=ADDR", part)
		}
		t[Mode(m)] = append(t[Mode(m)], addr)
	}
	return t, nil
}

// checkEvents checks that every event names a backend, falls within the
// paced run, that each backend's kills alternate (a fail, then a recover,
// then a fail...), and that each --add names a new backend once.
func (o *Options) checkEvents() []error {
	var errs []error
	type ev struct {
		Event
		flag string
	}
	var all []ev
	for _, g := range []struct {
		flag string
		es   []Event
	}{{"--fail", o.Failures}, {"--recover", o.Recoveries}, {"--add", o.Adds},
		{"--drain", o.Drains}, {"--maint", o.Maints}, {"--ready", o.Readies}} {
		for _, e := range g.es {
			all = append(all, ev{e, g.flag})
		}
	}
	for _, at := range o.Reloads {
		all = append(all, ev{Event{At: at}, "--reload@"})
	}
	for _, at := range o.Restarts {
		all = append(all, ev{Event{At: at}, "--restart@"})
	}
	for _, at := range o.Upgrades {
		all = append(all, ev{Event{At: at}, "--upgrade@"})
	}
	added := make(map[string]bool)
	for _, e := range o.Adds {
		if o.initialBackend(e.Backend) {
			errs = append(errs, fmt.Errorf("--add %s: %s is already one of the %d --backends; give a new id such as %s",
				e, e.Backend, o.Backends, backendID(o.Backends+len(o.Adds)-1)))
		}
		if added[e.Backend] {
			errs = append(errs, fmt.Errorf("--add %s: %s is added twice", e, e.Backend))
		}
		added[e.Backend] = true
	}
	down := make(map[string]bool)
	slices.SortStableFunc(all, func(a, b ev) int { return cmp.Compare(a.At, b.At) })
	for _, e := range all {
		switch {
		case e.Backend != "" && !o.initialBackend(e.Backend) && !added[e.Backend]:
			errs = append(errs, fmt.Errorf("%s %s: no backend %q (the lab runs app-01..%s)", e.flag, e, e.Backend, backendID(max(o.Backends, 1)-1)))
			continue
		case o.Pace() > 0 && e.At >= o.Pace():
			errs = append(errs, fmt.Errorf("%s %s: each run lasts %v (%s); choose an earlier time, or a longer run with --duration or a lower --rate",
				e.flag, e, o.Pace().Round(time.Millisecond), o.paceFlags()))
		}
		switch {
		case e.flag == "--fail" && down[e.Backend]:
			errs = append(errs, fmt.Errorf("%s %s: %s has already failed by then", e.flag, e, e.Backend))
		case e.flag == "--recover" && !down[e.Backend]:
			errs = append(errs, fmt.Errorf("%s %s: %s has not failed by then (a --fail must come first)", e.flag, e, e.Backend))
		}
		switch e.flag {
		case "--fail", "--recover":
			down[e.Backend] = e.flag == "--fail"
		}
	}
	return errs
}

// initialBackend reports whether id is one of app-01..NN.
func (o *Options) initialBackend(id string) bool {
	for i := range o.Backends {
		if backendID(i) == id {
			return true
		}
	}
	return false
}

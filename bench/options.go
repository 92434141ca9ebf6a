package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
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

// Event kills a backend (--fail) or brings it back (--recover) at a time
// into each mode's run.
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
	d, err := time.ParseDuration(at)
	if err != nil {
		return Event{}, fmt.Errorf("%q: %q is not a duration (500ms, 5s)", s, at)
	}
	if d < 0 {
		return Event{}, fmt.Errorf("%q: the time must not be negative", s)
	}
	return Event{Backend: id, At: d}, nil
}

// String returns the event as ParseEvent reads it.
func (e Event) String() string { return e.Backend + "@" + e.At.String() }

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
		Backends:    4,
		Users:       2000,
		Gateways:    100,
		Skew:        Zipf,
		ZipfS:       1.1,
		Requests:    10,
		Modes:       []Mode{L4, L7},
		Seed:        1,
		Concurrency: 64,
		Rate:        2000,
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
	errs = append(errs, o.checkEvents()...)
	return errors.Join(errs...)
}

// checkEvents checks that every event names a backend, falls within the
// paced run, and that each backend's events alternate: a fail, then a
// recover, then a fail...
func (o *Options) checkEvents() []error {
	var errs []error
	type ev struct {
		Event
		flag string
	}
	var all []ev
	for _, e := range o.Failures {
		all = append(all, ev{e, "--fail"})
	}
	for _, e := range o.Recoveries {
		all = append(all, ev{e, "--recover"})
	}
	down := make(map[string]bool)
	slices.SortStableFunc(all, func(a, b ev) int { return cmp.Compare(a.At, b.At) })
	for _, e := range all {
		known := false
		for i := range o.Backends {
			known = known || backendID(i) == e.Backend
		}
		switch {
		case !known:
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
		down[e.Backend] = e.flag == "--fail"
	}
	return errs
}

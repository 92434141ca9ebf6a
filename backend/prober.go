package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Checker probes one backend. A nil error means the check passed. Check must
// return once ctx is done.
type Checker interface {
	Check(ctx context.Context, b *Backend) error
}

// CheckFunc adapts a function to the Checker interface.
type CheckFunc func(ctx context.Context, b *Backend) error

// Check calls f(ctx, b).
func (f CheckFunc) Check(ctx context.Context, b *Backend) error { return f(ctx, b) }

// NewChecker returns the Checker for a health check kind: "tcp" (connect,
// then close), "http" (GET path, 2xx or 3xx is healthy) or "none". For "none"
// it returns a nil Checker and a nil error: no prober should run, and every
// backend stays up (its admin state still decides who is sent there).
func NewChecker(kind, path string) (Checker, error) {
	switch kind {
	case "tcp":
		return &TCPCheck{}, nil
	case "http":
		return &HTTPCheck{Path: path}, nil
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown health check %q (want tcp, http or none)", kind)
}

// Prober runs active health checks over a Pool and folds every result into
// each backend's state with Backend.Observe. It follows reloads: backends
// that join are probed at once, backends that leave are no longer probed.
// It logs transitions only: "backend up" at Info, "backend down" at Warn
// with the reason.
//
// The fields give the initial settings: set them before the first call of
// any method; they are read once, then. SetSettings changes the check and
// its timing while Run runs (see there for what each change does). A Prober
// keeps no health state of its own (the health state is the backends'),
// which WithLogHandler relies on. A Prober must not be copied after first
// use.
type Prober struct {
	// Pool is the pool to probe. Nil means nothing to probe.
	Pool *Pool
	// Checker probes one backend. Nil means checks are off: Round and
	// ReportFailure do nothing, and Run probes nothing until SetSettings
	// gives it a Checker.
	Checker Checker
	// Interval is the time between two probes of one backend; zero or
	// negative means 2s.
	Interval time.Duration
	// Timeout bounds each probe; zero or negative means 1s.
	Timeout time.Duration
	// Rise is the number of consecutive passes that bring a down backend up;
	// zero or negative means 2.
	Rise int
	// Fall is the number of consecutive failures that take an up backend
	// down; zero or negative means 3.
	Fall int
	// Logger receives the transitions; nil means slog.Default().
	Logger *slog.Logger

	// state holds the settings in effect; it is made from the fields at
	// first use and shared with the copies WithLogHandler makes.
	state atomic.Pointer[proberState]
}

// ProbeSettings are what a Prober checks and how often: its Checker,
// Interval, Timeout, Rise and Fall, with the meaning and defaults of the
// Prober fields of the same names.
type ProbeSettings struct {
	Checker  Checker
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
}

// proberState is the part of a Prober that SetSettings changes.
type proberState struct {
	// mu is held for writing while the settings are replaced, and for
	// reading while a result is folded in, so that no result lands on a
	// backend once checks are off.
	mu  sync.RWMutex
	cur atomic.Pointer[probeSettings]
}

// probeSettings is one set of settings, defaults resolved, with the channel
// closed when SetSettings replaces it, which the probe loops wait on.
type probeSettings struct {
	ProbeSettings
	replaced chan struct{}
}

// resolve fills in the defaults of s.
func resolve(s ProbeSettings) *probeSettings {
	if s.Interval <= 0 {
		s.Interval = 2 * time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = time.Second
	}
	if s.Rise <= 0 {
		s.Rise = 2
	}
	if s.Fall <= 0 {
		s.Fall = 3
	}
	return &probeSettings{ProbeSettings: s, replaced: make(chan struct{})}
}

// shared returns p's state, making it from the fields at first use.
func (p *Prober) shared() *proberState {
	if st := p.state.Load(); st != nil {
		return st
	}
	st := &proberState{}
	st.cur.Store(resolve(ProbeSettings{
		Checker: p.Checker, Interval: p.Interval, Timeout: p.Timeout, Rise: p.Rise, Fall: p.Fall,
	}))
	if p.state.CompareAndSwap(nil, st) {
		return st
	}
	return p.state.Load()
}

// settings returns the settings in effect.
func (p *Prober) settings() *probeSettings { return p.shared().cur.Load() }

// Settings returns the settings in effect, defaults filled in.
func (p *Prober) Settings() ProbeSettings { return p.settings().ProbeSettings }

// SetSettings replaces the check and its timing, for Run, Round,
// ReportFailure and every copy made by WithLogHandler, while they run:
//
//   - A new Interval is taken up by each backend's probe loop at once: its
//     next probe comes one new interval after its last one, or, if that
//     instant has passed, at the next instant in step with it, so that the
//     probes stay staggered over the interval and do not come in a burst.
//   - A new Timeout applies from the next probe; new Rise and Fall from the
//     next result, with the consecutive counts kept.
//   - A new Checker (another kind, or another path) is used from the next
//     probe, and health states are kept.
//   - A nil Checker turns checks off: Run stops probing (probes in flight
//     are discarded), every backend is marked up at once (logged as "backend
//     up" for those that were down), and failures reported on the data path
//     are ignored, since nothing would bring a backend back up.
//   - A Checker after a nil one turns checks on: Run probes every backend,
//     staggered over the interval as when it starts. Backends stay up until
//     Fall failed checks take them down.
func (p *Prober) SetSettings(s ProbeSettings) {
	st := p.shared()
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.cur.Load()
	next := resolve(s)
	st.cur.Store(next)
	close(old.replaced)
	if old.Checker == nil || next.Checker != nil {
		return
	}
	for _, b := range p.Pool.Registry().All() {
		if b.Observe(true, 1, 1) == WentUp {
			p.logger().Info("backend up", "backend", b.ID, "address", b.Address(), "reason", "health checks turned off")
		}
	}
}

func (p *Prober) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// Round probes every backend once, concurrently, each probe bounded by
// Timeout, and returns when all results have been folded in. Results of
// probes cut short because ctx was done are discarded: shutting down says
// nothing about a backend's health.
func (p *Prober) Round(ctx context.Context) {
	set := p.settings()
	if set.Checker == nil {
		return
	}
	var wg sync.WaitGroup
	for _, b := range p.Pool.Registry().All() {
		wg.Go(func() { p.probe(ctx, set, b) })
	}
	wg.Wait()
}

// Run probes each backend every Interval until ctx is done, one goroutine per
// backend. Start times are staggered over the first Interval (backend i of n
// starts at i*Interval/n) so that probes do not arrive in bursts. Run follows
// the pool's reloads: a backend that joins is probed at once, then every
// Interval; the goroutine of one that leaves is stopped (a probe it had in
// flight is discarded). It follows SetSettings too: with checks off it probes
// nothing, and when they are turned on it starts again, staggered. Run
// returns ctx.Err() once every goroutine it started has exited.
func (p *Prober) Run(ctx context.Context) error {
	st := p.shared()
	var wg sync.WaitGroup
	probing := make(map[*Backend]context.CancelFunc)
	stopAll := func() {
		for b, stop := range probing {
			stop()
			delete(probing, b)
		}
	}
	defer func() {
		stopAll()
		wg.Wait()
	}()
	reg, changed := p.Pool.Watch()
	set := st.cur.Load()
	stagger := true // loops started by the next pass are spread over the interval
	for {
		if set.Checker == nil {
			stopAll()
			stagger = true
		} else {
			all := reg.All()
			for i, b := range all {
				if _, ok := probing[b]; ok {
					continue
				}
				var delay time.Duration
				if stagger {
					delay = time.Duration(int64(set.Interval) * int64(i) / int64(len(all)))
				}
				bctx, stop := context.WithCancel(ctx)
				probing[b] = stop
				wg.Go(func() { p.loop(bctx, st, b, delay) })
			}
			stagger = false
			for b, stop := range probing {
				if reg.Get(b.ID) != b {
					stop()
					delete(probing, b)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			reg, changed = p.Pool.Watch()
		case <-set.replaced:
			set = st.cur.Load()
		}
	}
}

// loop probes b after delay, then every interval of the settings in effect,
// until ctx is done.
func (p *Prober) loop(ctx context.Context, st *proberState, b *Backend, delay time.Duration) {
	set := st.cur.Load()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	// last is when b was last probed; before the first probe, the instant
	// one interval before it is due, so that a new interval moves the first
	// probe the same way as the others.
	last := time.Now().Add(delay - set.Interval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-set.replaced:
			prev := set.Interval
			set = st.cur.Load()
			if set.Interval != prev {
				timer.Reset(time.Until(nextProbe(last, set.Interval, time.Now())))
			}
			continue
		case <-timer.C:
		}
		last = time.Now()
		p.probe(ctx, set, b)
		timer.Reset(time.Until(last.Add(set.Interval)))
	}
}

// nextProbe returns the first instant last + k*interval (k >= 1) that is
// not before now.
func nextProbe(last time.Time, interval time.Duration, now time.Time) time.Time {
	next := last.Add(interval)
	if late := now.Sub(next); late > 0 {
		next = next.Add((late + interval - 1) / interval * interval)
	}
	return next
}

// probe checks b once with set's Checker within its Timeout and folds in
// the result.
func (p *Prober) probe(ctx context.Context, set *probeSettings, b *Backend) {
	cctx, cancel := context.WithTimeout(ctx, set.Timeout)
	err := set.Checker.Check(cctx, b)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timeout %v)", err, set.Timeout)
	}
	p.observe(b, err == nil, err)
}

// WithLogHandler returns a copy of p whose lines go through wrap(h), where
// h is the handler p logs to. The copy folds results into the same
// backends; only where its lines go differs. The L4 event loop reports
// through such a copy, so that a transition found on its data path is
// logged without blocking the loop. On a nil Prober it returns nil.
func (p *Prober) WithLogHandler(wrap func(slog.Handler) slog.Handler) *Prober {
	if p == nil {
		return nil
	}
	c := &Prober{
		Pool: p.Pool, Checker: p.Checker, Interval: p.Interval, Timeout: p.Timeout, Rise: p.Rise, Fall: p.Fall,
		Logger: slog.New(wrap(p.logger().Handler())),
	}
	c.state.Store(p.shared())
	return c
}

// errPassive stands in for a nil error passed to ReportFailure.
var errPassive = errors.New("passive check failed")

// ReportFailure records a failure seen on the data path, such as a dial
// error, as one failed check of b (passive health checking). It does nothing
// on a nil Prober or while checks are off (no Checker): without active
// checks nothing could bring the backend back up, so passive failures are
// ignored. Nor does
// it count an error for which LocalFault is true: running out of source
// ports, buffers or descriptors on this machine says nothing about b, and
// counting it would take every healthy backend down at once.
func (p *Prober) ReportFailure(b *Backend, err error) {
	if p == nil || b == nil {
		return
	}
	if err == nil {
		err = errPassive
	}
	p.observe(b, false, err)
}

// observe folds one result into b, with the Rise and Fall in effect, and
// logs the transition, if any. A failure for which LocalFault is true is not
// a result: it is logged at debug level and b's state is left as it was.
// With checks off, no result counts.
func (p *Prober) observe(b *Backend, pass bool, err error) {
	st := p.shared()
	st.mu.RLock()
	defer st.mu.RUnlock()
	set := st.cur.Load()
	if set.Checker == nil {
		return
	}
	if !pass && LocalFault(err) {
		p.logger().Debug("failure not counted against the backend: out of local resources",
			"backend", b.ID, "address", b.Address(), "error", err)
		return
	}
	switch b.Observe(pass, set.Rise, set.Fall) {
	case WentUp:
		p.logger().Info("backend up", "backend", b.ID, "address", b.Address())
	case WentDown:
		p.logger().Warn("backend down", "backend", b.ID, "address", b.Address(), "reason", err)
	}
}

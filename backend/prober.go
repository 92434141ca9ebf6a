package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
// Set the fields before the first call to Round, Run or ReportFailure; they
// are read concurrently afterwards. A Prober keeps no state of its own (the
// health state is the backends'), which WithLogHandler relies on.
type Prober struct {
	// Pool is the pool to probe. Nil means nothing to probe.
	Pool *Pool
	// Checker probes one backend. With a nil Checker, Round and ReportFailure
	// do nothing and Run returns an error.
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
}

func (p *Prober) interval() time.Duration {
	if p.Interval <= 0 {
		return 2 * time.Second
	}
	return p.Interval
}

func (p *Prober) timeout() time.Duration {
	if p.Timeout <= 0 {
		return time.Second
	}
	return p.Timeout
}

func (p *Prober) rise() int {
	if p.Rise <= 0 {
		return 2
	}
	return p.Rise
}

func (p *Prober) fall() int {
	if p.Fall <= 0 {
		return 3
	}
	return p.Fall
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
	if p.Checker == nil {
		return
	}
	var wg sync.WaitGroup
	for _, b := range p.Pool.Registry().All() {
		wg.Go(func() { p.probe(ctx, b) })
	}
	wg.Wait()
}

// Run probes each backend every Interval until ctx is done, one goroutine per
// backend. Start times are staggered over the first Interval (backend i of n
// starts at i*Interval/n) so that probes do not arrive in bursts. Run follows
// the pool's reloads: a backend that joins is probed at once, then every
// Interval; the goroutine of one that leaves is stopped (a probe it had in
// flight is discarded). Run returns ctx.Err() once every goroutine it started
// has exited, or at once an error if the Checker is nil.
func (p *Prober) Run(ctx context.Context) error {
	if p.Checker == nil {
		return errors.New("health prober has no checker")
	}
	interval := p.interval()
	var wg sync.WaitGroup
	probing := make(map[*Backend]context.CancelFunc)
	defer func() {
		for _, stop := range probing {
			stop()
		}
		wg.Wait()
	}()
	reg, changed := p.Pool.Watch()
	for first := true; ; first = false {
		all := reg.All()
		for i, b := range all {
			if _, ok := probing[b]; ok {
				continue
			}
			var delay time.Duration
			if first {
				delay = time.Duration(int64(interval) * int64(i) / int64(len(all)))
			}
			bctx, stop := context.WithCancel(ctx)
			probing[b] = stop
			wg.Go(func() { p.loop(bctx, b, delay, interval) })
		}
		for b, stop := range probing {
			if reg.Get(b.ID) != b {
				stop()
				delete(probing, b)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			reg, changed = p.Pool.Watch()
		}
	}
}

// loop probes b after delay, then every interval, until ctx is done.
func (p *Prober) loop(ctx context.Context, b *Backend, delay, interval time.Duration) {
	start := time.NewTimer(delay)
	defer start.Stop()
	select {
	case <-ctx.Done():
		return
	case <-start.C:
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		p.probe(ctx, b)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe checks b once within Timeout and folds in the result.
func (p *Prober) probe(ctx context.Context, b *Backend) {
	timeout := p.timeout()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := p.Checker.Check(cctx, b)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timeout %v)", err, timeout)
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
	c := *p
	c.Logger = slog.New(wrap(p.logger().Handler()))
	return &c
}

// errPassive stands in for a nil error passed to ReportFailure.
var errPassive = errors.New("passive check failed")

// ReportFailure records a failure seen on the data path, such as a dial
// error, as one failed check of b (passive health checking). It does nothing
// on a nil Prober or one without a Checker: without active checks nothing
// could bring the backend back up, so passive failures are ignored. Nor does
// it count an error for which LocalFault is true: running out of source
// ports, buffers or descriptors on this machine says nothing about b, and
// counting it would take every healthy backend down at once.
func (p *Prober) ReportFailure(b *Backend, err error) {
	if p == nil || p.Checker == nil || b == nil {
		return
	}
	if err == nil {
		err = errPassive
	}
	p.observe(b, false, err)
}

// observe folds one result into b and logs the transition, if any. A
// failure for which LocalFault is true is not a result: it is logged at
// debug level and b's state is left as it was.
func (p *Prober) observe(b *Backend, pass bool, err error) {
	if !pass && LocalFault(err) {
		p.logger().Debug("failure not counted against the backend: out of local resources",
			"backend", b.ID, "address", b.Address(), "error", err)
		return
	}
	switch b.Observe(pass, p.rise(), p.fall()) {
	case WentUp:
		p.logger().Info("backend up", "backend", b.ID, "address", b.Address())
	case WentDown:
		p.logger().Warn("backend down", "backend", b.ID, "address", b.Address(), "reason", err)
	}
}

package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/internal/logtest"
)

// probeLog records when each backend was probed, relative to start.
type probeLog struct {
	start time.Time
	mu    sync.Mutex
	times map[string][]time.Duration
}

func newProbeLog() *probeLog {
	return &probeLog{start: time.Now(), times: make(map[string][]time.Duration)}
}

// checker returns a Checker that records each probe and returns result().
func (l *probeLog) checker(result func() error) Checker {
	return CheckFunc(func(_ context.Context, b *Backend) error {
		l.mu.Lock()
		l.times[b.ID] = append(l.times[b.ID], time.Since(l.start))
		l.mu.Unlock()
		return result()
	})
}

func (l *probeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.times)
}

func (l *probeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ts := range l.times {
		n += len(ts)
	}
	return n
}

// runProber starts p.Run and returns a function that stops it and checks
// that it returned as it should.
func runProber(t *testing.T, p *Prober) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	}
}

func passing() error { return nil }

func TestSetSettingsIntervalKeepsLoopsAndStagger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := newPool(1, 1, 1, 1)
		probes := newProbeLog()
		p := &Prober{Pool: NewPool(mustRegistry(t, pool...)), Checker: probes.checker(passing), Interval: 4 * time.Second, Logger: discardLogger}
		stop := runProber(t, p)
		defer stop()

		time.Sleep(9500 * time.Millisecond)
		p.SetSettings(ProbeSettings{Checker: p.Checker, Interval: 2 * time.Second})
		if got := p.Settings().Interval; got != 2*time.Second {
			t.Errorf("Settings().Interval = %v, want 2s", got)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		// Each loop's next probe is one new interval after its last, or the
		// next instant in step with it: b2 (last at 6s) and b3 (7s) are
		// due at once at 9.5s, but probe at 10s and 11s.
		want := map[string][]time.Duration{
			"b0": {0, 4 * time.Second, 8 * time.Second, 10 * time.Second, 12 * time.Second, 14 * time.Second},
			"b1": {1 * time.Second, 5 * time.Second, 9 * time.Second, 11 * time.Second, 13 * time.Second},
			"b2": {2 * time.Second, 6 * time.Second, 10 * time.Second, 12 * time.Second, 14 * time.Second},
			"b3": {3 * time.Second, 7 * time.Second, 11 * time.Second, 13 * time.Second},
		}
		if got := probes.String(); got != fmt.Sprint(want) {
			t.Errorf("probe times %s, want %v", got, want)
		}
		if got := loopGoroutines(); got != len(pool) {
			t.Errorf("%d probe loops, want %d", got, len(pool))
		}

		// A longer interval: the next probe is one new interval after the
		// last.
		p.SetSettings(ProbeSettings{Checker: p.Checker, Interval: time.Minute})
		time.Sleep(time.Minute)
		synctest.Wait()
		for id, last := range map[string]time.Duration{"b0": 14 * time.Second, "b1": 13 * time.Second, "b2": 14 * time.Second, "b3": 13 * time.Second} {
			want[id] = append(want[id], last+time.Minute)
		}
		if got := probes.String(); got != fmt.Sprint(want) {
			t.Errorf("probe times with a 1m interval %s, want %v", got, want)
		}
	})
}

func TestSetSettingsIntervalBeforeFirstProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := newPool(1, 1, 1, 1)
		probes := newProbeLog()
		p := &Prober{Pool: NewPool(mustRegistry(t, pool...)), Checker: probes.checker(passing), Interval: time.Hour, Logger: discardLogger}
		stop := runProber(t, p)
		defer stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := probes.count(); got != 1 {
			t.Fatalf("%d probes in the first second, want b0's alone", got)
		}
		// The others were due at 15, 30 and 45 minutes; with a 4s interval
		// each probes within 4s.
		p.SetSettings(ProbeSettings{Checker: p.Checker, Interval: 4 * time.Second})
		time.Sleep(4 * time.Second)
		synctest.Wait()
		probes.mu.Lock()
		defer probes.mu.Unlock()
		for _, b := range pool {
			if len(probes.times[b.ID]) == 0 {
				t.Errorf("%s not probed within the new interval: %v", b.ID, probes.times)
			}
		}
	})
}

func TestSetSettingsCheckerAndThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New("app-01", "127.0.0.1:1", 1)
		first, second := newProbeLog(), newProbeLog()
		p := &Prober{Pool: NewPool(mustRegistry(t, b)), Checker: first.checker(passing), Interval: time.Second, Fall: 3, Logger: discardLogger}
		copied := p.WithLogHandler(func(h slog.Handler) slog.Handler { return h })
		stop := runProber(t, p)
		defer stop()
		time.Sleep(1500 * time.Millisecond)

		p.SetSettings(ProbeSettings{Checker: second.checker(func() error { return errors.New("refused") }), Interval: time.Second, Fall: 1})
		time.Sleep(time.Second)
		synctest.Wait()
		if got, want := first.count(), 2; got != want {
			t.Errorf("old checker ran %d times, want %d (none after the change)", got, want)
		}
		if got, want := second.count(), 1; got != want {
			t.Errorf("new checker ran %d times, want %d", got, want)
		}
		if b.Up() {
			t.Error("one failed check with the new fall 1 left the backend up")
		}
		// A copy made earlier by WithLogHandler follows the new settings.
		if got := copied.Settings(); got.Fall != 1 {
			t.Errorf("copy's Fall = %d, want 1", got.Fall)
		}
	})
}

func TestSetSettingsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := CheckFunc(func(ctx context.Context, _ *Backend) error {
			<-ctx.Done()
			return ctx.Err()
		})
		p := &Prober{Pool: NewPool(mustRegistry(t, newPool(1)...)), Checker: hang, Timeout: 3 * time.Second, Logger: discardLogger}
		p.SetSettings(ProbeSettings{Checker: hang, Timeout: time.Second})
		start := time.Now()
		p.Round(t.Context())
		if got := time.Since(start); got != time.Second {
			t.Errorf("Round took %v, want the new timeout, 1s", got)
		}
	})
}

func TestSetSettingsChecksOffAndOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := newPool(1, 1)
		probes := newProbeLog()
		var logs logtest.Buffer
		failing := probes.checker(func() error { return errors.New("refused") })
		p := &Prober{Pool: NewPool(mustRegistry(t, pool...)), Checker: failing, Interval: 2 * time.Second, Fall: 1, Logger: bufferLogger(&logs)}
		stop := runProber(t, p)
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		for _, b := range pool {
			if b.Up() {
				t.Fatalf("%s up after a failed check with fall 1", b.ID)
			}
		}

		// Off: every backend up at once, no probing, passive failures
		// ignored.
		p.SetSettings(ProbeSettings{Interval: 2 * time.Second, Fall: 1})
		for _, b := range pool {
			if !b.Up() {
				t.Errorf("%s down with checks off", b.ID)
			}
		}
		if got := countLines(logs.String(), "backend up"); got != len(pool) {
			t.Errorf("%d up lines, want %d:\n%s", got, len(pool), logs.String())
		}
		before := probes.count()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := loopGoroutines(); got != 0 {
			t.Errorf("%d probe loops with checks off, want 0", got)
		}
		if got := probes.count(); got != before {
			t.Errorf("%d probes with checks off, want none", got-before)
		}
		p.ReportFailure(pool[0], errors.New("refused"))
		if !pool[0].Up() || pool[0].ConsecutiveFailures() != 0 {
			t.Error("a passive failure counted with checks off")
		}

		// On again: probing resumes, staggered over the interval, and
		// the backends stay up until Fall failures.
		p.SetSettings(ProbeSettings{Checker: failing, Interval: 2 * time.Second, Fall: 2})
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if got := probes.count() - before; got != 2 || !pool[0].Up() || !pool[1].Up() {
			t.Errorf("%d probes in the first 1.5s of checks on (want 2, at 0s and 1s), up %v %v (want both, fall 2)",
				got, pool[0].Up(), pool[1].Up())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if pool[0].Up() || pool[1].Up() {
			t.Error("backends still up after two failed checks with fall 2")
		}
	})
}

// A probe in flight when checks are turned off must not take a backend down
// afterwards: nothing would bring it back up.
func TestSetSettingsOffDropsResultsInFlight(t *testing.T) {
	b := New("app-01", "127.0.0.1:1", 1)
	inFlight, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	blocking := CheckFunc(func(context.Context, *Backend) error {
		calls.Add(1)
		close(inFlight)
		<-release
		return errors.New("refused")
	})
	p := &Prober{Pool: NewPool(mustRegistry(t, b)), Checker: blocking, Timeout: time.Hour, Fall: 1, Logger: discardLogger}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Round(t.Context())
	}()
	<-inFlight
	p.SetSettings(ProbeSettings{Fall: 1})
	close(release)
	<-done
	if !b.Up() || b.ConsecutiveFailures() != 0 {
		t.Errorf("Up() = %v, ConsecutiveFailures() = %d after checks were turned off; want true, 0", b.Up(), b.ConsecutiveFailures())
	}
}

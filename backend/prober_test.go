package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/internal/logtest"
)

func mustRegistry(t *testing.T, backends ...*Backend) *Registry {
	t.Helper()
	r, err := NewRegistry(backends)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	return r
}

// bufferLogger returns a logger writing text lines to w, which the test
// may read while probes log.
func bufferLogger(w *logtest.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

var discardLogger = slog.New(slog.DiscardHandler)

// countLines counts the log lines with the given message.
func countLines(logs, msg string) int {
	return strings.Count(logs, fmt.Sprintf("msg=%q", msg))
}

func TestProberRiseAndFall(t *testing.T) {
	var code atomic.Int32
	srv := newHealthServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	})
	b := New("app-01", srv.address(), 1)
	healthy := newHealthServer(t, func(http.ResponseWriter, *http.Request) {})
	other := New("app-02", healthy.address(), 1)
	var logs logtest.Buffer
	p := &Prober{
		Pool:    NewPool(mustRegistry(t, b, other)),
		Checker: &HTTPCheck{Path: "/healthz"},
		Timeout: time.Second,
		Rise:    2,
		Fall:    3,
		Logger:  bufferLogger(&logs),
	}
	steps := []struct {
		code      int
		wantUp    bool
		wantDowns int
		wantUps   int
	}{
		{500, true, 0, 0},
		{500, true, 0, 0},
		{500, false, 1, 0}, // third failure
		{500, false, 1, 0}, // already down: no second line
		{200, false, 1, 0},
		{500, false, 1, 0}, // breaks the pass streak
		{200, false, 1, 0},
		{200, true, 1, 1}, // second consecutive pass
		{200, true, 1, 1},
		{500, true, 1, 1},
		{200, true, 1, 1}, // resets the failure streak
		{500, true, 1, 1},
		{500, true, 1, 1},
		{500, false, 2, 1},
	}
	for i, s := range steps {
		code.Store(int32(s.code))
		p.Round(t.Context())
		got := logs.String()
		if b.Up() != s.wantUp || countLines(got, "backend down") != s.wantDowns || countLines(got, "backend up") != s.wantUps {
			t.Fatalf("round %d (status %d): Up() = %v, down lines %d, up lines %d; want %v, %d, %d\nlog:\n%s",
				i+1, s.code, b.Up(), countLines(got, "backend down"), countLines(got, "backend up"),
				s.wantUp, s.wantDowns, s.wantUps, got)
		}
	}
	if !other.Up() {
		t.Errorf("the healthy app-02 went down")
	}
	got := logs.String()
	if strings.Contains(got, "app-02") {
		t.Errorf("log mentions the healthy app-02:\n%s", got)
	}
	for _, want := range []string{
		`level=WARN msg="backend down" backend=app-01 address=` + srv.address() + ` reason="http check app-01: GET /healthz: status 500 Internal Server Error"`,
		`level=INFO msg="backend up" backend=app-01 address=` + srv.address(),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

func TestProberDefaults(t *testing.T) {
	var p Prober
	want := ProbeSettings{Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	if got := p.Settings(); got != want || p.logger() != slog.Default() {
		t.Errorf("zero Prober resolves to %+v, want %+v and slog.Default()", got, want)
	}
	// A zero Prober has nothing to probe.
	p.Round(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run without a Checker = %v, want context.Canceled", err)
	}
}

func TestReportFailure(t *testing.T) {
	dialErr := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

	t.Run("nil prober", func(t *testing.T) {
		b := New("app-01", "127.0.0.1:1", 1)
		var p *Prober
		for range 10 {
			p.ReportFailure(b, dialErr)
		}
		if !b.Up() || b.ConsecutiveFailures() != 0 {
			t.Errorf("Up() = %v, ConsecutiveFailures() = %d; want true, 0", b.Up(), b.ConsecutiveFailures())
		}
	})

	t.Run("prober without checker", func(t *testing.T) {
		b := New("app-01", "127.0.0.1:1", 1)
		p := &Prober{Pool: NewPool(mustRegistry(t, b)), Fall: 1, Logger: discardLogger}
		p.ReportFailure(b, dialErr)
		if !b.Up() || b.ConsecutiveFailures() != 0 {
			t.Errorf("Up() = %v, ConsecutiveFailures() = %d; want true, 0", b.Up(), b.ConsecutiveFailures())
		}
	})

	t.Run("counts toward fall", func(t *testing.T) {
		b := New("app-01", "127.0.0.1:1", 1)
		var pass atomic.Bool
		var logs logtest.Buffer
		p := &Prober{
			Pool:    NewPool(mustRegistry(t, b)),
			Checker: CheckFunc(func(context.Context, *Backend) error { return check(pass.Load()) }),
			Rise:    2,
			Fall:    3,
			Logger:  bufferLogger(&logs),
		}
		p.ReportFailure(b, dialErr)
		p.Round(t.Context()) // an active failure adds to the passive ones
		if !b.Up() || b.ConsecutiveFailures() != 2 {
			t.Fatalf("after 2 failures Up() = %v, ConsecutiveFailures() = %d; want true, 2", b.Up(), b.ConsecutiveFailures())
		}
		p.ReportFailure(b, dialErr)
		p.ReportFailure(b, nil)
		if b.Up() {
			t.Fatalf("after 4 failures with fall 3 the backend is still up")
		}
		if got := countLines(logs.String(), "backend down"); got != 1 {
			t.Errorf("%d down lines, want 1:\n%s", got, logs.String())
		}
		if want := `reason="` + dialErr.Error() + `"`; !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}

		pass.Store(true)
		p.Round(t.Context())
		p.Round(t.Context())
		if !b.Up() || countLines(logs.String(), "backend up") != 1 {
			t.Errorf("after 2 passing rounds Up() = %v with %d up lines, want true and 1:\n%s",
				b.Up(), countLines(logs.String(), "backend up"), logs.String())
		}
	})
}

// check turns a wanted outcome into a check result.
func check(pass bool) error {
	if pass {
		return nil
	}
	return errors.New("check failed")
}

// TestRoundConcurrentAndBounded shows that a round probes all backends at
// once, that Timeout bounds each probe, and that results of probes cut short
// by the caller's cancellation are dropped.
func TestRoundConcurrentAndBounded(t *testing.T) {
	hang := CheckFunc(func(ctx context.Context, _ *Backend) error {
		<-ctx.Done()
		return ctx.Err()
	})

	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := newPool(1, 1, 1, 1)
			var logs logtest.Buffer
			p := &Prober{Pool: NewPool(mustRegistry(t, pool...)), Checker: hang, Timeout: 3 * time.Second, Fall: 1, Logger: bufferLogger(&logs)}
			start := time.Now()
			p.Round(t.Context())
			if got, want := time.Since(start), 3*time.Second; got != want {
				t.Errorf("Round took %v, want %v (probes run concurrently)", got, want)
			}
			for _, b := range pool {
				if b.Up() {
					t.Errorf("%s is up after a timed-out probe with fall 1", b.ID)
				}
			}
			if got, want := countLines(logs.String(), "backend down"), 4; got != want {
				t.Errorf("%d down lines, want %d", got, want)
			}
			if !strings.Contains(logs.String(), "context deadline exceeded (timeout 3s)") {
				t.Errorf("log does not give the timeout as reason:\n%s", logs.String())
			}
		})
	})

	t.Run("cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := newPool(1, 1)
			p := &Prober{Pool: NewPool(mustRegistry(t, pool...)), Checker: hang, Timeout: 3 * time.Second, Fall: 1, Logger: discardLogger}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			p.Round(ctx)
			for _, b := range pool {
				if !b.Up() || b.ConsecutiveFailures() != 0 {
					t.Errorf("%s: Up() = %v, ConsecutiveFailures() = %d after a cancelled round; want true, 0",
						b.ID, b.Up(), b.ConsecutiveFailures())
				}
			}
		})
	})
}

// loopGoroutines counts the goroutines running Prober.loop. The tests of this
// package do not run in parallel, so only the Run under test has any.
func loopGoroutines() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "backend.(*Prober).loop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := newPool(1, 1, 1, 1)
		var mu sync.Mutex
		probes := make(map[string][]time.Duration) // guarded by mu
		start := time.Now()
		p := &Prober{
			Pool: NewPool(mustRegistry(t, pool...)),
			Checker: CheckFunc(func(ctx context.Context, b *Backend) error {
				mu.Lock()
				defer mu.Unlock()
				probes[b.ID] = append(probes[b.ID], time.Since(start))
				return nil
			}),
			Interval: 4 * time.Second,
			Logger:   discardLogger,
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()

		time.Sleep(9500 * time.Millisecond)
		synctest.Wait()
		want := map[string][]time.Duration{
			"b0": {0, 4 * time.Second, 8 * time.Second},
			"b1": {1 * time.Second, 5 * time.Second, 9 * time.Second},
			"b2": {2 * time.Second, 6 * time.Second},
			"b3": {3 * time.Second, 7 * time.Second},
		}
		mu.Lock()
		if got := fmt.Sprint(probes); got != fmt.Sprint(want) {
			t.Errorf("probe times %s, want %v", got, want)
		}
		mu.Unlock()
		if got, want := loopGoroutines(), len(pool); got != want {
			t.Errorf("%d probe loops running, want %d", got, want)
		}

		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		// Run has returned: every loop it started must be gone already.
		if got := loopGoroutines(); got != 0 {
			t.Errorf("%d probe loops still running after Run returned, want 0", got)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		if got := fmt.Sprint(probes); got != fmt.Sprint(want) {
			t.Errorf("probes after cancel: %s, want none beyond %v", got, want)
		}
		mu.Unlock()
	})
}

func TestRunEmptyRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Prober{Pool: NewPool(mustRegistry(t)), Checker: CheckFunc(func(context.Context, *Backend) error { return nil })}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		if err := p.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want context.DeadlineExceeded", err)
		}
	})
}

// A copy made by WithLogHandler changes the health of the same backends,
// and its lines go through the wrapping handler to the prober's own.
func TestWithLogHandler(t *testing.T) {
	b := New("app-01", "127.0.0.1:1", 1)
	var logs logtest.Buffer
	p := &Prober{
		Pool:    NewPool(mustRegistry(t, b)),
		Checker: CheckFunc(func(context.Context, *Backend) error { return check(false) }),
		Fall:    1,
		Logger:  bufferLogger(&logs),
	}
	var wrapped atomic.Int32
	c := p.WithLogHandler(func(h slog.Handler) slog.Handler { return countingHandler{h, &wrapped} })
	c.ReportFailure(b, errors.New("connection refused"))
	if b.Up() {
		t.Error("a failure reported through the copy left the backend up")
	}
	if wrapped.Load() != 1 || countLines(logs.String(), "backend down") != 1 {
		t.Errorf("%d lines through the wrapper, log %q; want the down line once, through it", wrapped.Load(), logs.String())
	}
	if p.Logger == c.Logger {
		t.Error("WithLogHandler changed the original's logger")
	}
	var nilProber *Prober
	if got := nilProber.WithLogHandler(func(h slog.Handler) slog.Handler { return h }); got != nil {
		t.Errorf("WithLogHandler on nil = %v, want nil", got)
	}
}

// countingHandler counts the records it passes on.
type countingHandler struct {
	slog.Handler
	n *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

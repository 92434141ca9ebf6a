package backend

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestProberCost3000 measures what active TCP checks of 3,000 backends
// cost with interval = "2s": the process's CPU time per second and the
// memory the prober's goroutines hold, over two intervals. It is a
// measurement, not a check, and takes about 6 s: it runs only with
// LBCTL_MEASURE_PROBER=1.
func TestProberCost3000(t *testing.T) {
	if os.Getenv("LBCTL_MEASURE_PROBER") == "" {
		t.Skip("a measurement: set LBCTL_MEASURE_PROBER=1 to run it")
	}
	const n = 3000
	specs := make([]Spec, n)
	for i := range specs {
		// Listeners that never accept: the kernel completes each probe's
		// handshake, which is all a TCP check waits for.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		specs[i] = Spec{ID: fmt.Sprintf("app-%04d", i), Address: ln.Addr().String(), Weight: 1}
	}
	pool := NewPool(nil)
	if _, err := pool.Reload(specs); err != nil {
		t.Fatal(err)
	}
	// Probes are counted as they end: the measurement runs from the end
	// of the first n (every loop started, staggered over the first
	// interval) to the end of 2n more, two intervals later.
	var probes atomic.Int64
	first, last := make(chan struct{}), make(chan struct{})
	counted := CheckFunc(func(ctx context.Context, b *Backend) error {
		err := (&TCPCheck{}).Check(ctx, b)
		switch probes.Add(1) {
		case n:
			close(first)
		case 3 * n:
			close(last)
		}
		return err
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	p := &Prober{Pool: pool, Checker: counted, Interval: 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	wait := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(time.Minute):
			t.Fatalf("still waiting after a minute for %s (%d probes)", what, probes.Load())
		}
	}
	wait(first, "the first round")
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	wait(last, "two more rounds")
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	wall := time.Since(start)
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	extra := runtime.NumGoroutine() - goroutines
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	t.Logf("%d backends, tcp checks every 2s: CPU %.1f ms per second (%.1f%% of a core; user %v, system %v over %v); %d goroutines, stacks %.1f MiB, heap %+.1f MiB",
		n, float64(cpu.Milliseconds())/wall.Seconds(), 100*cpu.Seconds()/wall.Seconds(),
		time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()).Round(time.Millisecond), time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano()).Round(time.Millisecond), wall.Round(time.Millisecond),
		extra, float64(during.StackInuse)/(1<<20), (float64(during.HeapInuse)-float64(before.HeapInuse))/(1<<20))
	for _, b := range pool.Registry().All() {
		if !b.Up() {
			t.Errorf("%s is down", b.ID)
			break
		}
	}
}

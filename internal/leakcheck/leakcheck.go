// Package leakcheck lets tests show that no goroutine, file descriptor or
// pipe outlives the connections that used it: take a Baseline, run the
// connections, then Wait for the counts to come back.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// Baseline is the goroutine, descriptor and pipe count a test must return
// to.
type Baseline struct {
	goroutines, fds, pipes int
	gcPercent              int
}

// Take records the current counts. It also turns the garbage collector off
// until the test ends: the runtime closes a lost socket when its owner is
// collected, which would hide a missing Close.
func Take(t testing.TB) *Baseline {
	t.Helper()
	b := &Baseline{gcPercent: debug.SetGCPercent(-1)}
	t.Cleanup(func() { debug.SetGCPercent(b.gcPercent) })
	b.goroutines = runtime.NumGoroutine()
	b.fds, b.pipes = count(t)
	return b
}

// Wait fails the test unless goroutines, descriptors and pipe ends are back
// to the baseline within timeout, printing every goroutine's stack if not.
//
// Pipes come last. Linux splice borrows pipes from a pool in Go's runtime
// that keeps them across connections and closes them only when the garbage
// collector empties the pool. Once goroutines and the other descriptors
// are back, nothing is left that a collection could hide, so Wait then
// collects to empty that pool, and any pipe still open beyond the baseline
// is a leak. Pipes that the code under test keeps in a pool of its own
// must be released first (stop that code), or checked with
// WaitExceptPipes while it runs.
func (b *Baseline) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := b.settle(t, timeout, true); err != nil {
		t.Fatal(err)
	}
}

// WaitExceptPipes is Wait without the pipes, for code that keeps a pool of
// pipes while it runs (the L4 event loop).
func (b *Baseline) WaitExceptPipes(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := b.settle(t, timeout, false); err != nil {
		t.Fatal(err)
	}
}

// settle waits until the counts are back to the baseline, pipes included
// when asked, or returns what is still above it after timeout.
func (b *Baseline) settle(t testing.TB, timeout time.Duration, pipes bool) error {
	deadline := time.Now().Add(timeout)
	for {
		g := runtime.NumGoroutine()
		fd, p := count(t)
		rest := g <= b.goroutines && fd <= b.fds
		if rest && (!pipes || p <= b.pipes) {
			return nil
		}
		if rest {
			// Two collections: the first moves the runtime's pooled
			// pipes aside, the second drops them, and each is closed by
			// its cleanup soon after.
			runtime.GC()
			runtime.GC()
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("goroutines %d (baseline %d), fds %d (baseline %d), pipe ends %d (baseline %d) after all connections ended\n%s",
				g, b.goroutines, fd, b.fds, p, b.pipes, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FDs counts the process's open file descriptors other than pipes. Without
// /proc the test is skipped.
func FDs(t testing.TB) int {
	t.Helper()
	fds, _ := count(t)
	return fds
}

// count returns how many of the process's open file descriptors are pipe
// ends and how many are anything else. Without /proc the test is skipped.
func count(t testing.TB) (fds, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "pipe:") {
			pipes++
		} else {
			fds++
		}
	}
	return fds, pipes
}

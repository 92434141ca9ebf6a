// Package leakcheck lets tests show that no goroutine or file descriptor
// outlives the connections that used it: take a Baseline, run the
// connections, then Wait for the counts to come back.
package leakcheck

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// Baseline is the goroutine and descriptor count a test must return to.
type Baseline struct {
	goroutines, fds int
	gcPercent       int
}

// Take records the current counts. It also turns the garbage collector off
// until Wait: the runtime closes a lost socket when its owner is
// collected, which would hide a missing Close.
func Take(t testing.TB) *Baseline {
	t.Helper()
	b := &Baseline{gcPercent: debug.SetGCPercent(-1)}
	t.Cleanup(func() { debug.SetGCPercent(b.gcPercent) })
	b.goroutines, b.fds = runtime.NumGoroutine(), FDs(t)
	return b
}

// Wait fails the test unless goroutines and descriptors are back to the
// baseline within timeout, printing every goroutine's stack if not.
func (b *Baseline) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g, fd := runtime.NumGoroutine(), FDs(t)
		if g <= b.goroutines && fd <= b.fds {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d (baseline %d), fds %d (baseline %d) after all connections ended\n%s",
				g, b.goroutines, fd, b.fds, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FDs counts the process's open file descriptors other than pipes. Linux
// splice borrows pipe pairs from a pool in the runtime that keeps them
// across connections (closing them only when the pool is collected), so
// they are not per-connection state. Without /proc the test is skipped.
func FDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "pipe:") {
			continue
		}
		n++
	}
	return n
}

package leakcheck

import (
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/loopback"
)

// A pipe left open is a leak that Wait reports; WaitExceptPipes, for code
// that pools pipes while it runs, lets it pass.
func TestWaitCatchesALeakedPipe(t *testing.T) {
	b := Take(t)
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	err := b.settle(t, 100*time.Millisecond, true)
	if err == nil || !strings.Contains(err.Error(), "pipe ends") {
		t.Errorf("with a pipe left open: %v, want the pipe ends reported", err)
	}
	if err := b.settle(t, time.Second, false); err != nil {
		t.Errorf("except pipes, with a pipe left open: %v, want nil", err)
	}
	syscall.Close(p[0])
	syscall.Close(p[1])
	if err := b.settle(t, time.Second, true); err != nil {
		t.Errorf("after closing the pipe: %v", err)
	}
}

// The pipe that Go's runtime keeps pooled after splicing between two TCP
// connections is not a leak: Wait empties the pool.
func TestWaitEmptiesTheRuntimesPipePool(t *testing.T) {
	b := Take(t)
	in, from := loopback.Pair(t)
	to, out := loopback.Pair(t)
	go func() {
		in.Write(make([]byte, 1<<20))
		in.Close()
	}()
	// TCP to TCP: the runtime splices through a pooled pipe.
	if _, err := io.Copy(to, from); err != nil {
		t.Fatal(err)
	}
	to.Close()
	if _, err := io.Copy(io.Discard, out); err != nil {
		t.Fatal(err)
	}
	from.Close()
	out.Close()
	if _, pipes := count(t); pipes <= b.pipes {
		t.Fatalf("%d pipe ends after a splice, baseline %d: the runtime pooled no pipe, so this test shows nothing", pipes, b.pipes)
	}
	b.Wait(t, 5*time.Second)
}

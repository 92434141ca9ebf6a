package asynclog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/logtest"
)

// within fails the test unless f returns within 10 seconds.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

// While the output stalls, logging neither blocks nor grows memory: what
// the queue cannot hold is dropped, and counted once the output moves.
func TestStalledOutputDropsAndCounts(t *testing.T) {
	out := logtest.NewStalled()
	q := New(4, out)
	log := slog.New(q.Wrap(out))
	q.Start()
	log.Info("first")
	within(t, "the writer taking the first record", func() { <-out.Entered })
	within(t, "logging while the output stalls", func() {
		for i := range 10 {
			log.Info("next", "i", i)
		}
	})
	out.Unblock()
	q.Stop()
	within(t, "the writer exiting after Stop", func() { <-q.Done() })
	want := []string{
		"first",
		DroppedMessage + " dropped=6", // the queue of 4 held i=0..3
		"next i=0", "next i=1", "next i=2", "next i=3",
	}
	if got := out.Lines(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("written:\n%q\nwant\n%q", got, want)
	}
}

// syncBuffer serialises the writer's writes with the test's reads.
type syncBuffer = logtest.Buffer

// A wrapped handler keeps the level, attributes and groups of the handler
// it wraps, and a record keeps attributes beyond those slog stores inline
// after its caller has reused them.
func TestWrapKeepsTheHandlersBehaviour(t *testing.T) {
	var buf syncBuffer
	text := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level:       slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	})
	q := New(16, text)
	log := slog.New(q.Wrap(text)).With("proxy", "l4").WithGroup("g")
	if log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("debug enabled through a handler at level info")
	}
	q.Start()
	log.Debug("hidden")
	log.Info("shown", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6, "g", 7)
	q.Stop()
	within(t, "the writer exiting after Stop", func() { <-q.Done() })
	want := "level=INFO msg=shown proxy=l4 g.a=1 g.b=2 g.c=3 g.d=4 g.e=5 g.f=6 g.g=7\n"
	if got := buf.String(); got != want {
		t.Errorf("written %q, want %q", got, want)
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// A queue stopped before it started has no writer to wait for, and
// starting it afterwards starts none.
func TestStopBeforeStart(t *testing.T) {
	var buf syncBuffer
	q := New(4, slog.NewTextHandler(&buf, nil))
	q.Stop()
	within(t, "Done after Stop without Start", func() { <-q.Done() })
	q.Start()
	slog.New(q.Wrap(slog.NewTextHandler(&buf, nil))).Info("after stop")
	q.Stop()
	if got := buf.String(); strings.Contains(got, "after stop") {
		t.Errorf("a record handed over after Stop was written: %q", got)
	}
}

package accept

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first n accepts with EMFILE, as a process out of
// file descriptors would, then accepts for real.
type flakyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServeRetriesTemporaryErrors(t *testing.T) {
	ln := listen(t)
	fl := &flakyListener{Listener: ln}
	fl.n.Store(3)
	l := &Loop{Handle: func(c *Conn) { c.Write([]byte("hi")); c.Close() }}
	served := make(chan error, 1)
	go func() { served <- l.Serve(fl) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	c.Close()
	if string(got) != "hi" || err != nil {
		t.Errorf("after 3 failed accepts: read %q, %v; want hi", got, err)
	}
	l.Close()
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve = %v, want ErrClosed", err)
	}
}

func TestShutdownClosesIdleWaitsForBusy(t *testing.T) {
	ln := listen(t)
	release := make(chan struct{})
	settled := make(chan struct{}, 2) // a value once a handler is idle or busy
	l := &Loop{Handle: func(c *Conn) {
		defer c.Close()
		buf := make([]byte, 1)
		c.Read(buf)
		if buf[0] == 'i' {
			c.SetIdle(true) // waiting for a next request that never comes
			settled <- struct{}{}
			c.Read(buf)
			return
		}
		settled <- struct{}{}
		<-release // busy until released
		c.Write([]byte("done"))
	}}
	go l.Serve(ln)
	idle, busy := dial(t, ln), dial(t, ln)
	defer idle.Close()
	defer busy.Close()
	idle.Write([]byte("i"))
	busy.Write([]byte("b"))
	<-settled
	<-settled

	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(context.Background()) }()
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("idle connection still open after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a handler was busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(busy); string(got) != "done" {
		t.Errorf("busy connection got %q, want done", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := l.Serve(listen(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrClosed", err)
	}
}

func TestShutdownDeadlineClosesBusy(t *testing.T) {
	ln := listen(t)
	handling := make(chan struct{})
	l := &Loop{Handle: func(c *Conn) {
		defer c.Close()
		close(handling)
		io.Copy(io.Discard, c) // until closed
	}}
	go l.Serve(ln)
	c := dial(t, ln)
	defer c.Close()
	<-handling
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
}

func TestBackoffDoublesToOneSecondAndResets(t *testing.T) {
	var b Backoff
	log := slog.New(slog.DiscardHandler)
	var got []time.Duration
	for range 10 {
		got = append(got, b.Failed(log, "127.0.0.1:1", syscall.EMFILE))
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Failed(log, "127.0.0.1:1", syscall.EMFILE); d != 5*time.Millisecond {
		t.Errorf("first wait after Reset = %v, want 5ms", d)
	}
}

// stoppable is a Server that serves until stopped and records its calls.
type stoppable struct {
	stop     chan bool // what Stop was asked, once
	serving  chan struct{}
	released atomic.Bool
}

func newStoppable() *stoppable {
	return &stoppable{stop: make(chan bool, 1), serving: make(chan struct{})}
}

func (s *stoppable) Serve() error {
	close(s.serving)
	<-s.stop
	return ErrClosed
}

func (s *stoppable) Stop(abort bool) {
	select {
	case s.stop <- abort:
	default:
	}
}

func (s *stoppable) Release() { s.released.Store(true) }

func TestShutdownStopsAndWaitsForServers(t *testing.T) {
	var l Loop
	s := newStoppable()
	ran := make(chan error, 1)
	go func() { ran <- l.Run(s) }()
	<-s.serving
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if !s.released.Load() {
		t.Error("Shutdown returned before the server was released")
	}
	if err := <-ran; !errors.Is(err, ErrClosed) {
		t.Errorf("Run = %v, want ErrClosed", err)
	}
	late := newStoppable()
	if err := l.Run(late); !errors.Is(err, ErrClosed) || !late.released.Load() {
		t.Errorf("Run after Shutdown = %v (released %v), want ErrClosed and released", err, late.released.Load())
	}
	select {
	case <-late.serving:
		t.Error("a server run after Shutdown served")
	default:
	}
}

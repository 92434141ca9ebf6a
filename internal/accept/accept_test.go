package accept

import (
	"context"
	"errors"
	"io"
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

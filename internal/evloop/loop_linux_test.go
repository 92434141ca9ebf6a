//go:build linux

package evloop

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/leakcheck"
)

// echo is a handler that writes back what each connection sends, and
// closes a connection idle for idle nanoseconds.
type echo struct {
	l       *Loop[echoConn]
	idle    Queues[echoConn]
	d       int64
	open    int
	scratch [512]byte
}

type echoConn struct {
	ep    Endpoint[echoConn]
	timer Timer[echoConn]
}

func (h *echo) Accepted(fd int, _ netip.AddrPort) {
	c := &echoConn{}
	c.ep.Reset(fd, c)
	c.timer.Owner = c
	if h.l.Register(&c.ep) != 0 {
		Close(fd)
		return
	}
	h.open++
	h.idle.Of(h.d).Arm(&c.timer, h.l.Now())
}

func (h *echo) Event(ep *Endpoint[echoConn], _ uint32) {
	c := ep.Owner
	for ep.Readable {
		n, err := Read(ep.FD, h.scratch[:])
		switch {
		case err != 0:
			ep.Readable = false
		case n == 0:
			h.close(c)
			return
		default:
			Write(ep.FD, h.scratch[:n])
			c.timer.Queue().Touch(&c.timer, h.l.Now())
		}
	}
}

func (h *echo) close(c *echoConn) {
	c.timer.Stop()
	h.l.Forget(&c.ep)
	h.open--
}

func (h *echo) Work() {}

func (h *echo) Expire() (int64, bool) {
	for _, q := range h.idle {
		for c := q.Due(h.l.Now()); c != nil; c = q.Due(h.l.Now()) {
			h.close(c)
		}
	}
	return h.idle.Next(), false
}

func (h *echo) Open() int { return h.open }

func (h *echo) CloseAll() { h.idle.Each(h.close) }

// startEcho serves an echo handler with idle timeout idle on a loop of
// its own, and returns the loop, its address and what Serve returned.
func startEcho(t *testing.T, idle time.Duration) (*Loop[echoConn], string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	lnfd, err := TakeListener(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(lnfd)
	l, err := New[echoConn](lnfd, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SetHandler(&echo{l: l, d: int64(idle)})
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	return l, addr, served
}

// ended waits for Serve's result and releases the loop.
func ended(t *testing.T, l *Loop[echoConn], served <-chan error) error {
	t.Helper()
	defer l.Release()
	select {
	case err := <-served:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after it was asked to end")
		return nil
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// A handler on the loop serves its connections, a retired loop ends once
// they have (with net.ErrClosed), and nothing outlives it.
func TestRetiredLoopEndsWithItsConnections(t *testing.T) {
	base := leakcheck.Take(t)
	l, addr, served := startEcho(t, 0)
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	done := l.Retire()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the retired loop still accepts after 20s")
	}
	roundTrip(t, a, "still served")
	a.Close()
	b.Close()
	if err := ended(t, l, served); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve = %v, want net.ErrClosed", err)
	}
	base.Wait(t, 20*time.Second)
}

// Stop with abort closes every connection and ends the loop at once.
func TestAbortClosesConnections(t *testing.T) {
	base := leakcheck.Take(t)
	l, addr, served := startEcho(t, 0)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hello")
	l.Stop(true)
	if err := ended(t, l, served); !errors.Is(err, ErrStopped) {
		t.Errorf("Serve = %v, want ErrStopped", err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read after abort: %d, %v, want the connection closed", n, err)
	}
	c.Close()
	base.Wait(t, 20*time.Second)
}

// The loop wakes for the handler's timer: an idle connection is closed
// after its timeout while an active one is kept.
func TestHandlerTimersFire(t *testing.T) {
	l, addr, served := startEcho(t, 300*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hello")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on an idle connection: %v, want EOF from the idle timeout", err)
	}
	l.Stop(false)
	if err := ended(t, l, served); !errors.Is(err, ErrStopped) {
		t.Errorf("Serve = %v, want ErrStopped", err)
	}
}

// The loop's sleep is bounded even when no timer is due, so that an edge
// that never comes cannot park it forever; a timer due sooner shortens it.
func TestWaitIsBounded(t *testing.T) {
	l := &Loop[echoConn]{lnfd: -1, start: time.Now(), next: -1}
	if got := l.timeout(); got != MaxWait {
		t.Errorf("with no timer: wait %d ms, want %d", got, MaxWait)
	}
	l.next = int64(time.Hour)
	if got := l.timeout(); got != MaxWait {
		t.Errorf("with the next timer in an hour: wait %d ms, want %d", got, MaxWait)
	}
	l.next = int64(time.Since(l.start) + 200*time.Millisecond)
	if got := l.timeout(); got < 1 || got > 200 {
		t.Errorf("with a timer in 200 ms: wait %d ms, want 1..200", got)
	}
	l.busy = true
	if got := l.timeout(); got != 0 {
		t.Errorf("with work carried over: wait %d ms, want 0", got)
	}
}

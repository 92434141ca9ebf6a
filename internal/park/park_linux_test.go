//go:build linux

package park

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/leakcheck"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T, ln net.Listener) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s.(*net.TCPConn)
}

func fdOf(t *testing.T, c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

// woken is a connection the watcher handed to ready.
type woken struct {
	name string
	fd   int
}

// expectEOF fails unless c's peer has closed the connection.
func expectEOF(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("%s: read %d bytes, %v; want the watcher's close", what, n, err)
	}
}

// The watcher gives each parked connection back once: to ready, with its
// socket, when its peer sends, to expire, its socket closed, when its
// deadline passes (not before) and when it stops; a stopped watcher parks
// nothing, and nothing of it outlives Release.
func TestWatcher(t *testing.T) {
	base := leakcheck.Take(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ready, expired := make(chan woken, 4), make(chan string, 4)
	w, err := New(func(fd int, name string) { ready <- woken{name, fd} }, func(name string) { expired <- name })
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve() }()

	var conns []net.Conn
	park := func(name string, until time.Time) net.Conn {
		c, s := pair(t, ln)
		conns = append(conns, c)
		if !w.ParkConn(s, until, name) {
			t.Fatalf("ParkConn(%s) refused", name)
		}
		return c
	}
	start := time.Now()
	const idle = 300 * time.Millisecond
	talker := park("talker", time.Time{})
	sleeper := park("sleeper", start.Add(idle))
	stayer := park("stayer", time.Time{})
	if n := w.Parked(); n != 3 {
		t.Fatalf("Parked() = %d, want 3", n)
	}

	talker.Write([]byte("x"))
	got := <-ready
	if got.name != "talker" {
		t.Fatalf("ready got %s, want talker", got.name)
	}
	back, err := Attach(got.fd)
	if err != nil {
		t.Fatalf("Attach(talker): %v", err)
	}
	back.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b := make([]byte, 2); func() bool { n, _ := back.Read(b); return n != 1 || b[0] != 'x' }() {
		t.Error("the talker's byte did not come back with its socket")
	}
	back.Close()
	if got := <-expired; got != "sleeper" {
		t.Fatalf("expired got %s first, want sleeper", got)
	}
	if took := time.Since(start); took < idle {
		t.Errorf("sleeper expired after %v, before its deadline %v", took, idle)
	}
	expectEOF(t, sleeper, "an expired connection")
	w.Stop(false)
	if got := <-expired; got != "stayer" {
		t.Fatalf("Stop expired %s, want stayer", got)
	}
	expectEOF(t, stayer, "a connection parked at Stop")
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c, s := pair(t, ln)
	conns = append(conns, c, s)
	if w.Park(fdOf(t, s), time.Time{}, "late") {
		t.Error("a stopped watcher took a connection")
	}
	c2, s2 := pair(t, ln)
	conns = append(conns, c2)
	if w.ParkConn(s2, time.Time{}, "late") {
		t.Error("a stopped watcher took a connection through ParkConn")
	}
	expectEOF(t, c2, "a connection ParkConn refused after detaching it")
	w.Release()
	if len(ready)+len(expired) != 0 {
		t.Errorf("%d more hand-backs than connections", len(ready)+len(expired))
	}
	for _, c := range conns {
		c.Close()
	}
	ln.Close()
	base.Wait(t, 20*time.Second)
}

// Detach leaves the socket open and untouched on its raw descriptor, with
// the net.TCPConn closed: input that arrives meanwhile waits for Attach,
// whose connection reads it and writes back. Attach of a socket its client
// has reset fails and closes the descriptor all the same.
func TestDetachAttach(t *testing.T) {
	base := leakcheck.Take(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, s := pair(t, ln)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fd, err := Detach(s)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the detached net.TCPConn reads %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	back, err := Attach(fd)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	back.SetDeadline(time.Now().Add(20 * time.Second))
	if a, ok := back.RemoteAddr().(*net.TCPAddr); !ok || a.String() != c.LocalAddr().String() {
		t.Errorf("attached connection's peer %v, want %v", back.RemoteAddr(), c.LocalAddr())
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(back, got); err != nil || string(got) != "ping" {
		t.Errorf("read %q, %v from the attached connection; want the ping sent while detached", got, err)
	}
	if _, err := back.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "pong" {
		t.Errorf("the client read %q, %v; want pong", got, err)
	}
	back.Close()
	c.Close()

	c2, s2 := pair(t, ln)
	fd, err = Detach(s2)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	c2.(*net.TCPConn).SetLinger(0)
	c2.Close() // a reset
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 20000); err != nil || pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) == 0 {
		t.Fatalf("poll of the reset socket: %v, events %#x", err, pfd[0].Revents)
	}
	if c, err := Attach(fd); err == nil {
		c.Close()
		t.Error("Attach made a connection of a reset socket")
	}
	ln.Close()
	base.Wait(t, 20*time.Second)
}

// The heap keeps the earliest deadline in front through pushes and
// removals from its middle.
func TestHeapOrder(t *testing.T) {
	until := []int64{50, 10, 40, 30, 20, 60}
	pos := make([]int32, len(until))
	h := heap{until: func(i int32) int64 { return until[i] }, pos: func(i int32) *int32 { return &pos[i] }}
	for i := range until {
		h.push(int32(i))
	}
	h.remove(int(pos[4])) // 20 leaves early
	var got []int64
	for i := h.front(); i >= 0; i = h.front() {
		got = append(got, until[i])
		h.remove(0)
	}
	want := []int64{10, 30, 40, 50, 60}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// BenchmarkDetachAttach measures what parking by the raw descriptor adds
// to a connection's park and wake: a Detach and an Attach.
func BenchmarkDetachAttach(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	s := a.(*net.TCPConn)
	for b.Loop() {
		fd, err := Detach(s)
		if err != nil {
			b.Fatal(err)
		}
		if s, err = Attach(fd); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
}

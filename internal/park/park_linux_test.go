//go:build linux

package park

import (
	"net"
	"testing"
	"time"

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

// The watcher gives each parked connection back once: to ready when its
// peer sends, to expire when its deadline passes (not before) and when it
// stops; a stopped watcher parks nothing, and nothing of it outlives
// Release.
func TestWatcher(t *testing.T) {
	base := leakcheck.Take(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ready, expired := make(chan string, 4), make(chan string, 4)
	names := map[*net.TCPConn]string{}
	w, err := New(func(c *net.TCPConn) { ready <- names[c] }, func(c *net.TCPConn) { expired <- names[c] })
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- w.Serve() }()

	var conns []net.Conn
	park := func(name string, until time.Time) net.Conn {
		c, s := pair(t, ln)
		conns = append(conns, c, s)
		names[s] = name
		if !w.Park(fdOf(t, s), until, s) {
			t.Fatalf("Park(%s) refused", name)
		}
		return c
	}
	start := time.Now()
	const idle = 300 * time.Millisecond
	talker := park("talker", time.Time{})
	park("sleeper", start.Add(idle))
	park("stayer", time.Time{})
	if n := w.Parked(); n != 3 {
		t.Fatalf("Parked() = %d, want 3", n)
	}

	talker.Write([]byte("x"))
	if got := <-ready; got != "talker" {
		t.Fatalf("ready got %s, want talker", got)
	}
	if got := <-expired; got != "sleeper" {
		t.Fatalf("expired got %s first, want sleeper", got)
	}
	if took := time.Since(start); took < idle {
		t.Errorf("sleeper expired after %v, before its deadline %v", took, idle)
	}
	w.Stop(false)
	if got := <-expired; got != "stayer" {
		t.Fatalf("Stop expired %s, want stayer", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c, s := pair(t, ln)
	conns = append(conns, c, s)
	if w.Park(fdOf(t, s), time.Time{}, s) {
		t.Error("a stopped watcher took a connection")
	}
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

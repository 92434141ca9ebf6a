package l4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/asynclog"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/logtest"
)

// A pump that runs out of budget leaves bytes in the socket that no new
// event will announce (the backend has sent everything and waits); the
// loop must come back for them on its own.
func TestEventLoopFinishesWhatABudgetLeft(t *testing.T) {
	// Set before the proxy starts and restored after it stopped (cleanups
	// run last first).
	pumpSteps = 2
	t.Cleanup(func() { pumpSteps = 32 })
	reply := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	// The backend writes it all, then keeps the connection open and quiet.
	backendAddr := oneShotBackend(t, func(c net.Conn) { c.Write(reply) })
	c := dialFrom(t, "127.0.0.31", serveProxy(t, newRegistry(t, backendAddr), nil))
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(reply))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d of %d bytes: %v", n, len(reply), err)
	}
	if !bytes.Equal(got, reply) {
		t.Error("bytes differ from the backend's")
	}
}

// A log output that stalls must not stall traffic: the event loop's lines
// (a backend going down, refused clients) are handed to the proxy's log
// writer, and dropped once its queue is full. The proxy still shuts down,
// its writer writes what was queued and how much was dropped once the
// output moves again, and nothing is left behind.
func TestStalledLogOutputDoesNotStallTraffic(t *testing.T) {
	good := startBackend(t, "app-01")
	dead := startBackend(t, "app-02")
	dead.Kill() // its port refuses connections
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", good.addr, 1), backend.New("app-02", dead.addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	out := logtest.NewStalled()
	log := slog.New(out)
	base := leakcheck.Take(t)
	var p *Proxy
	addr := serveProxy(t, reg, func(proxy *Proxy) {
		p = proxy
		p.Logger = log
		p.Health = &backend.Prober{Pool: p.Pool, Checker: &backend.TCPCheck{}, Rise: 1, Fall: 1, Logger: log}
	})
	t.Cleanup(out.Unblock) // before the proxy is closed, should the test fail

	// Round robin offers app-02 to one of two new clients: its dial is
	// refused, it goes down (a line the output now stalls on), and that
	// client moves to app-01.
	for _, src := range []string{"127.0.0.50", "127.0.0.51"} {
		if got := greeting(t, src, addr); got != "app-01" {
			t.Fatalf("client %s reached %q, want app-01", src, got)
		}
	}
	select {
	case <-out.Entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no line reached the log output")
	}
	if reg.Get("app-02").Up() {
		t.Fatal("app-02 still up after a refused dial with fall 1")
	}
	// With no backend left, every client is refused and logged at debug
	// level: more lines than the queue holds.
	reg.Get("app-01").SetAdmin(backend.Maint, time.Time{})
	for i := range 2 * logQueue {
		c := dialFrom(t, fmt.Sprintf("127.0.3.%d", i%250+1), addr)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("refused client %d: read %d, %v; want EOF at once", i, n, err)
		}
		c.Close()
	}
	reg.Get("app-01").SetAdmin(backend.Ready, time.Time{})
	c := dialFrom(t, "127.0.0.52", addr)
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "app-01\n" {
		t.Fatalf("greeting while the log output stalls = %q, %v", line, err)
	}
	fmt.Fprintln(c, "ping")
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo while the log output stalls = %q, %v", line, err)
	}
	c.Close()

	// Shutdown returns while the output still stalls: every connection
	// has ended, and the log writer may take only as long as ctx allows.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	out.Unblock()
	select {
	case <-p.logq.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the log writer did not exit once the output moved")
	}
	logs := strings.Join(out.Lines(), "\n")
	for _, want := range []string{"backend down backend=app-02", "client refused", asynclog.DroppedMessage + " dropped="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	p.Table.Close()
	base.Wait(t, 5*time.Second)
}

// With GOMAXPROCS=2 and Loops left zero, two event loops serve the
// listener, and both take connections from its one socket. Clients
// connect one after another until each loop has accepted some; a loop
// that never woke for the listener would fail the wait.
func TestEveryLoopTakesConnections(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	testHookLoops = 0 // Loops' own default: GOMAXPROCS
	defer func() { testHookLoops = 2 }()
	tb := startBackend(t, "app-01")
	var p *Proxy
	addr := serveProxy(t, newRegistry(t, tb.addr), func(q *Proxy) { p = q })
	eventually.True(t, "two event loops serving", func() bool { return len(p.loopAccepts()) == 2 })
	clients := 0
	eventually.True(t, "every loop to accept connections", func() bool {
		clients++
		if got := greeting(t, fmt.Sprintf("127.0.%d.%d", 1+clients/250, 1+clients%250), addr); got != "app-01" {
			t.Fatalf("client %d: greeting %q, want app-01", clients, got)
		}
		accepts := p.loopAccepts()
		return len(accepts) == 2 && accepts[0] > 0 && accepts[1] > 0
	})
	t.Logf("accepts per loop after %d clients: %v", clients, p.loopAccepts())
}

// loopAccepts returns how many connections each event loop serving now
// has accepted.
func (p *Proxy) loopAccepts() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n []uint64
	for l := range p.loops {
		n = append(n, l.accepted())
	}
	return n
}

// twoLoops starts a proxy with two event loops over one backend and
// returns it once both serve, with its listener and what its Serve
// returned; the proxy closes when the test ends. before, when not nil,
// sees the listener before Serve takes it.
func twoLoops(t *testing.T, before func(net.Listener)) (*Proxy, net.Listener, <-chan error) {
	t.Helper()
	tb := startBackend(t, "app-01")
	table := affinity.New(affinity.Options{})
	t.Cleanup(table.Close)
	p := &Proxy{Pool: backend.NewPool(newRegistry(t, tb.addr)), Selector: &backend.RoundRobin{}, Table: table, Loops: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(ln)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() { p.Close() })
	eventually.True(t, "two event loops serving", func() bool { return len(p.loopAccepts()) == 2 })
	return p, ln, served
}

// A listener that fails under its loops ends Serve with the failure, not
// a hang: each loop's accept sees it (a loop the kernel did not wake looks
// at the listener within maxWait), and a loop that fails retires the
// others.
func TestFailedListenerEndsEveryLoop(t *testing.T) {
	// A descriptor of the listening socket of the test's own, to break it
	// with once the loops serve.
	fd := -1
	var derr error
	p, ln, served := twoLoops(t, func(ln net.Listener) {
		rc, _ := ln.(*net.TCPListener).SyscallConn()
		rc.Control(func(lfd uintptr) { fd, derr = unix.Dup(int(lfd)) })
	})
	if derr != nil {
		t.Fatal(derr)
	}
	defer unix.Close(fd)
	greeting(t, "127.0.0.51", ln.Addr().String())
	// shutdown(2) on a listening socket makes every accept on it fail
	// with EINVAL.
	if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err == nil || stopped(err) || !errors.Is(err, unix.EINVAL) {
			t.Errorf("Serve = %v, want the accept failure (EINVAL)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after its listener failed")
	}
	if n := len(p.loopAccepts()); n != 0 {
		t.Errorf("%d loops still registered after Serve returned", n)
	}
}

// When one loop of a listener fails and the others could serve on, Serve
// still returns the failure: the failing loop retires its siblings, which
// end once their connections have. The test breaks one loop alone by
// putting a pipe where its duplicate of the listener was.
func TestOneFailedLoopRetiresTheOthers(t *testing.T) {
	p, ln, served := twoLoops(t, nil)
	p.mu.Lock()
	var victim *eventLoop
	for l := range p.loops {
		victim = l
		break
	}
	lnfd := victim.core.ListenerFD() // set before the loop registered, under p.mu
	p.mu.Unlock()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := unix.Dup3(int(r.Fd()), lnfd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	// The victim's next accept fails: when a client wakes it, or at the
	// latest after maxWait. (The client may be served, or reset when the
	// listener closes with it in the queue.)
	if c, err := dialFromErr("127.0.0.52", ln.Addr().String()); err == nil {
		c.Close()
	}
	select {
	case err := <-served:
		if !errors.Is(err, unix.ENOTSOCK) {
			t.Errorf("Serve = %v, want the failed loop's accept error (ENOTSOCK)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after one of its loops failed")
	}
}

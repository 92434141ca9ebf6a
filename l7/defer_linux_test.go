package l7

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/eventually"
)

// Clients that connect and say nothing wait in the kernel, not in the
// proxy: they cost no goroutine until their first bytes arrive, and are
// then served as usual.
func TestSilentClientsWaitInTheKernel(t *testing.T) {
	if testHookEngine == EngineLoop {
		t.Skip("the test reads the option off the listener, which the event loops take over (they defer accepts too: see serveLoops)")
	}
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.HeaderTimeout = time.Minute }})
	// Serve sets the option in its own goroutine: a client that came
	// before would be handed over at once.
	eventually.True(t, "Serve to defer accepts", func() bool { return deferSeconds(t, f.ln) > 0 })
	const n = 20
	before := runtime.NumGoroutine()
	var cs []net.Conn
	for range n {
		cs = append(cs, dialProxy(t, f.addr))
	}
	// A client that speaks after them: once it has its answer the proxy
	// has accepted every connection the kernel queued before it, so a
	// silent one handed over would have its goroutine by now.
	speaker := dialProxy(t, f.addr)
	io.WriteString(speaker, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, _ := readResponse(t, bufio.NewReader(speaker), "GET"); resp.StatusCode != 200 {
		t.Fatalf("the client that spoke got %d, want 200", resp.StatusCode)
	}
	if g := runtime.NumGoroutine(); g >= before+n/2 {
		t.Errorf("%d goroutines with %d silent clients connected, %d before: their connections were handed to the proxy", g, n, before)
	}
	for i, c := range cs {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := readResponse(t, bufio.NewReader(c), "GET"); resp.StatusCode != 200 {
			t.Errorf("client %d: status %d once it spoke, want 200", i, resp.StatusCode)
		}
	}
}

// deferSeconds returns ln's TCP_DEFER_ACCEPT setting (0 when off).
func deferSeconds(t *testing.T, ln net.Listener) int {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if cerr := rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatalf("getsockopt TCP_DEFER_ACCEPT: %v", err)
	}
	return v
}

package l4

import (
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/backend"
)

// unansweredAddr returns a loopback address whose listener has an accept
// queue of one that is already full and never drained: the kernel drops
// further SYNs, so a connect to it hangs until the dialer gives up.
func unansweredAddr(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	// Fill the queue; these connections are never accepted.
	for range 2 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel answered past a full accept queue; cannot make a connect hang")
	}
	return addr
}

func TestConnectTimeoutMovesTheClientOn(t *testing.T) {
	hung := unansweredAddr(t)
	good := startBackend(t, "app-02")
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", hung, 1), backend.New("app-02", good.addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	const connect = 300 * time.Millisecond
	addr := serveProxy(t, reg, func(p *Proxy) { p.ConnectTimeout = connect })

	start := time.Now()
	// Round robin offers app-01 first: its dial hangs until the connect
	// timeout, then the client is moved to app-02 within the same
	// connection.
	if got := greeting(t, "127.0.0.40", addr); got != "app-02" {
		t.Fatalf("greeting from %q, want app-02 after app-01's connect timed out", got)
	}
	if took := time.Since(start); took < connect-50*time.Millisecond || took > 3*time.Second {
		t.Errorf("answered after %v, want about the connect timeout %v", took, connect)
	}
}

// When this machine cannot open a connection to a backend, the client
// moves on to the next backend and the first one stays up: the fault is
// the proxy's own, not the backend's. Here the source port every dial must
// use is already taken towards app-01 by another connection, so connect
// fails with EADDRNOTAVAIL, as it does when the ephemeral ports run out.
func TestLocalConnectFailureKeepsTheBackendUp(t *testing.T) {
	clash := startBackend(t, "app-01")
	good := startBackend(t, "app-02")
	reuse := func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) }
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		Control:   func(_, _ string, rc syscall.RawConn) error { return rc.Control(reuse) },
	}
	taken, err := d.Dial("tcp", clash.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.LocalAddr().(*net.TCPAddr).Port
	var dials atomic.Int32
	testHookDialing = func(fd uintptr) {
		dials.Add(1)
		reuse(fd)
		if err := unix.Bind(int(fd), &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Errorf("bind the dial to 127.0.0.1:%d: %v", port, err)
		}
	}
	t.Cleanup(func() { testHookDialing = nil })

	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", clash.addr, 1), backend.New("app-02", good.addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveProxy(t, reg, func(p *Proxy) {
		p.Health = &backend.Prober{Pool: p.Pool, Checker: &backend.TCPCheck{}, Rise: 1, Fall: 1, Logger: slog.New(slog.DiscardHandler)}
	})
	// Round robin offers app-01 first.
	if got := greeting(t, "127.0.0.41", addr); got != "app-02" {
		t.Fatalf("greeting from %q, want app-02 after the dial to app-01 failed", got)
	}
	// The portable engine's net.Dialer tries EADDRNOTAVAIL twice more.
	if n := dials.Load(); n < 2 {
		t.Fatalf("%d dials, want app-01's failed ones, then app-02's", n)
	}
	if b := reg.Get("app-01"); !b.Available() || b.ConsecutiveFailures() != 0 {
		t.Errorf("app-01 after a local connect failure: available %v, %d consecutive failures; want available, 0",
			b.Available(), b.ConsecutiveFailures())
	}
}

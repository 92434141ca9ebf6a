package l4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/logtest"
)

// TestMain runs the package's tests with two event loops per listener
// (Proxy.Loops zero), whatever GOMAXPROCS is, so that every L4 test holds
// with several loops; TestOneEventLoop runs the behaviour tests again with
// one.
func TestMain(m *testing.M) {
	testHookLoops = 2
	os.Exit(m.Run())
}

// TestOneEventLoop runs the behaviour tests again with one event loop per
// listener, the loop count of a single core.
func TestOneEventLoop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the event loop serves on Linux only")
	}
	testHookLoops = 1
	defer func() { testHookLoops = 2 }()
	for name, test := range behaviourTests() {
		t.Run(name, test)
	}
}

// TestPortableEngine runs the behaviour tests again on the goroutine per
// connection engine, which serves wherever the event loop cannot (other
// systems, backend names that need DNS).
func TestPortableEngine(t *testing.T) {
	testHookPortable = true
	defer func() { testHookPortable = false }()
	for name, test := range behaviourTests() {
		t.Run(name, test)
	}
}

// behaviourTests are the tests of what a client sees, which each engine
// and loop count must pass alike.
func behaviourTests() map[string]func(*testing.T) {
	return map[string]func(*testing.T){
		"OneSourceIPStaysOnOneBackend":          TestOneSourceIPStaysOnOneBackend,
		"NewSourceIPsSpreadByPolicy":            TestNewSourceIPsSpreadByPolicy,
		"FailoverRepinsWithoutFlapBack":         TestFailoverRepinsWithoutFlapBack,
		"UnavailablePinnedBackendIsSkipped":     TestUnavailablePinnedBackendIsSkipped,
		"NoBackendClosesAtOnceAndRecovers":      TestNoBackendClosesAtOnceAndRecovers,
		"HalfCloseDeliversWholeReply":           TestHalfCloseDeliversWholeReply,
		"64MiBArriveIntact":                     Test64MiBArriveIntact,
		"IdleTimeout":                           TestIdleTimeout,
		"ShutdownWaitsForOpenConnections":       TestShutdownWaitsForOpenConnections,
		"ShutdownGraceExpiresClosesConnections": TestShutdownGraceExpiresClosesConnections,
		"NoGoroutineOrFDOutlivesItsConnection":  TestNoGoroutineOrFDOutlivesItsConnection,
		"ConnectTimeoutMovesTheClientOn":        TestConnectTimeoutMovesTheClientOn,
		"ConcurrentFirstConnections":            TestConcurrentFirstConnectionsOfOneClientShareABackend,
		"ConcurrentFailover":                    TestConcurrentFailoverOfOneClientRepinsToOneBackend,
		"SlowClientGetsEveryByte":               TestSlowClientGetsEveryByte,
		"AccessLogLines":                        TestAccessLogLines,
		"CountsAddUpEveryConnection":            TestCountsAddUpEveryConnection,
		"BackendNameUsesPortableEngine":         TestBackendNamedByHostname,
		"SlowSteadyReaderIsNotIdle":             TestSlowSteadyReaderIsNotIdle,
		"StalledReaderIsIdle":                   TestStalledReaderIsIdle,
		"LocalConnectFailureKeepsBackendUp":     TestLocalConnectFailureKeepsTheBackendUp,
		"DrainKeepsPinnedClients":               TestDrainKeepsPinnedClients,
		"DrainDeadlineMovesPinnedClientsOnce":   TestDrainDeadlineMovesPinnedClientsOnce,
		"MaintMovesPinnedClients":               TestMaintMovesPinnedClientsAtNextConnection,
		"ReloadKeepsPinsAndMovesRemoved":        TestReloadKeepsPinsAndMovesRemovedClients,
		"ReloadMovesAddress":                    TestReloadMovesAddress,
		"ReloadsUnderLoad":                      TestReloadsUnderLoad,
		"CloseConnsEndsOnlyThatBackends":        TestCloseConnsEndsOnlyThatBackendsConnections,
		"ReconfigureIdleTimeout":                TestReconfigureIdleTimeoutAppliesToNewConnections,
		"ReconfigurePolicy":                     TestReconfigurePolicyTakesEffect,
		"ReconfigureUnderLoad":                  TestReconfigureUnderLoad,
		"StopAcceptingKeepsItsConnections":      TestStopAcceptingKeepsItsConnections,
	}
}

// A client that reads slowly, behind a small receive window, makes the
// proxy hold what the backend sent until the client takes it; every byte
// must still arrive, in order, and the backend's FIN after them.
func TestSlowClientGetsEveryByte(t *testing.T) {
	var want bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&want, "%05d %s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, 200))
	}
	// ahead is closed once the backend has sent more than the client's
	// window, the proxy's send buffer towards it and its pending buffer
	// can hold together: the proxy must be holding bytes back by then.
	ahead := make(chan struct{})
	const aheadBytes = 64 << 10
	backendAddr := oneShotBackend(t, func(c net.Conn) {
		// Lines of about 200 bytes, a few at a time with pauses, so that
		// most proxy reads are small ones and not a full buffer.
		msg := want.Bytes()
		for len(msg) > 0 {
			n := min(len(msg), 4*207)
			if _, err := c.Write(msg[:n]); err != nil {
				return
			}
			msg = msg[n:]
			if sent := want.Len() - len(msg); sent >= aheadBytes && sent-n < aheadBytes {
				close(ahead)
			}
			time.Sleep(50 * time.Microsecond)
		}
		c.(*net.TCPConn).CloseWrite()
	})
	shrinkSendBuffers(t)
	c := dialSlowClient(t, serveProxy(t, newRegistry(t, backendAddr), nil))
	c.SetDeadline(time.Now().Add(20 * time.Second))
	select {
	case <-ahead:
	case <-time.After(10 * time.Second):
		t.Fatalf("the backend did not get %d bytes ahead of a client that reads nothing", aheadBytes)
	}
	var got bytes.Buffer
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
		time.Sleep(10 * time.Microsecond)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("got %d bytes, want %d; first difference at %d", got.Len(), want.Len(), firstDiff(got.Bytes(), want.Bytes()))
	}
}

// shrinkSendBuffers makes the proxy's send buffer towards each client
// small, on either engine, so that a slow client makes the proxy hold
// bytes back; by default the kernel would take a whole reply at once. Call
// it before the proxy starts.
func shrinkSendBuffers(t *testing.T) {
	testHookAccepted = func(fd int) { syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) }
	t.Cleanup(func() { testHookAccepted = nil })
}

// dialSlowClient connects to the proxy at addr with a small receive window.
func dialSlowClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		// Set before connecting, so that the window stays small.
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A backend named by host name instead of IP literal is served (by the
// portable engine, which resolves it on every dial).
func TestBackendNamedByHostname(t *testing.T) {
	tb := startBackend(t, "app-01")
	_, port, _ := net.SplitHostPort(tb.addr)
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", net.JoinHostPort("localhost", port), 1)})
	if err != nil {
		t.Fatal(err)
	}
	if got := greeting(t, "127.0.0.30", serveProxy(t, reg, nil)); got != "app-01" {
		t.Errorf("greeting through a named backend = %q, want app-01", got)
	}
}

// slowIdle is the idle timeout of slowReaderSetup's proxy.
const slowIdle = 300 * time.Millisecond

// slowReaderSetup starts a proxy with a short idle timeout and small send
// buffers in front of a backend that sends 64 KiB at once and then
// nothing, and returns a client with a small receive window, and what the
// backend sends.
func slowReaderSetup(t *testing.T) (net.Conn, []byte) {
	t.Helper()
	reply := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	backendAddr := oneShotBackend(t, func(c net.Conn) { c.Write(reply) })
	shrinkSendBuffers(t)
	return dialSlowClient(t, serveProxy(t, newRegistry(t, backendAddr), func(p *Proxy) { p.IdleTimeout = slowIdle })), reply
}

// A client that reads slowly but steadily is not idle, even when the
// proxy, holding bytes for it, reads nothing from the backend for longer
// than the idle timeout.
func TestSlowSteadyReaderIsNotIdle(t *testing.T) {
	c, reply := slowReaderSetup(t)
	// 2 KiB every 50 ms: a 16 KiB buffer held for this client takes
	// longer than the idle timeout to drain.
	got := make([]byte, 0, len(reply))
	buf := make([]byte, 2048)
	start := time.Now()
	for len(got) < len(reply) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes and %v: %v", len(got), len(reply), time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !bytes.Equal(got, reply) {
		t.Error("bytes differ from the backend's")
	}
}

// A client that stops reading while the proxy holds bytes for it is idle:
// its acknowledgments of window probes are not bytes moving, so the idle
// timeout closes the connection on either engine.
func TestStalledReaderIsIdle(t *testing.T) {
	c, reply := slowReaderSetup(t)
	// Read nothing for well over the idle timeout, then drain: the
	// connection must have ended before the whole reply came.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	time.Sleep(4 * slowIdle) // the stall under test, not a wait for a condition
	n, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the stall: %v", err)
	}
	if got := int64(len(buf)) + n; got >= int64(len(reply)) {
		t.Errorf("a client that read nothing for %v got all %d bytes: the connection was not idle", 4*slowIdle, got)
	}
}

// The engine that serves a listener is said at start, with the reason when
// it is the portable one: a backend named by host name moves all traffic
// off the event loop, which an operator must be able to see.
func TestServeLogsWhichEngineServes(t *testing.T) {
	if testHookPortable || runtime.GOOS != "linux" {
		t.Skip("the event loop serves on Linux only")
	}
	tb := startBackend(t, "app-01")
	_, port, _ := net.SplitHostPort(tb.addr)
	for _, c := range []struct {
		name, address, want string
	}{
		{"ip literal", tb.addr, `msg="l4 engine: event loops serve the listener" listener=`},
		{"host name", net.JoinHostPort("localhost", port),
			`msg="l4 engine: a goroutine per connection serves the listener"`},
	} {
		reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", c.address, 1)})
		if err != nil {
			t.Fatal(err)
		}
		var out logtest.Buffer
		addr := serveProxy(t, reg, func(p *Proxy) {
			p.Logger = slog.New(slog.NewTextHandler(&out, nil))
			p.Loops = 3
		})
		greeting(t, "127.0.0.32", addr) // Serve has chosen by then
		// The loops' line goes through their log queue (see asynclog),
		// which a loaded machine may write after the greeting.
		eventually.True(t, c.name+": the engine's log line", func() bool { return strings.Contains(out.String(), c.want) })
		got := out.String()
		if c.name == "ip literal" && !strings.Contains(got, " loops=3\n") {
			t.Errorf("%s: log %q does not say how many loops serve", c.name, got)
		}
		if c.name == "host name" && !strings.Contains(got, `reason="backend app-01 has address \"localhost:`) {
			t.Errorf("%s: log %q does not say which backend needs the portable engine", c.name, got)
		}
	}
}

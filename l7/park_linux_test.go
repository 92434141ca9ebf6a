//go:build linux

package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/park"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// parkSoon makes idle connections park after 20ms instead of parkAfter.
func parkSoon(p *Proxy) { p.parks.after = 20 * time.Millisecond }

// parked returns how many connections p's watcher holds.
func parked(p *Proxy) int {
	p.parks.mu.Lock()
	w := p.parks.w
	p.parks.mu.Unlock()
	if w == nil {
		return 0
	}
	return w.Parked()
}

// expectEOF fails unless the proxy closes k's connection within the
// connection's deadline.
func expectEOF(t *testing.T, k *keptAlive, what string) {
	t.Helper()
	k.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := k.r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("%s: read %d bytes, %v; want the proxy's close", what, n, err)
	}
}

// Idle kept-alive connections park: no handler goroutine is left waiting
// for them, each is held by the watcher, and each is served again, on the
// same connection, when its client sends its next request; then parks
// again. The accept loop counts them open throughout.
func TestParkedConnectionsServeAgain(t *testing.T) {
	skipOnLoop(t)
	f := newFixture(t, fixtureOpts{n: 2, configure: parkSoon})
	const n = 20
	ks := make([]*keptAlive, n)
	for i := range ks {
		ks[i] = openKeptAlive(t, f.addr)
		ks[i].c.SetDeadline(time.Now().Add(60 * time.Second))
		if resp, _ := ks[i].get(t, "/", ""); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for round := range 2 {
		eventually.True(t, "every idle connection is parked", func() bool { return parked(f.proxy) == n })
		eventually.True(t, "no handler waits for an idle connection", func() bool { return !goroutineIn("(*connReader).waitByte") })
		if open := f.proxy.loop.Counts.Open(); open != n {
			t.Fatalf("round %d: %d connections counted open, want %d", round, open, n)
		}
		for i, k := range ks {
			resp, id := k.get(t, "/", "")
			if resp.StatusCode != 200 || !strings.HasPrefix(id, "app-") {
				t.Fatalf("round %d, connection %d: status %d from %q", round, i, resp.StatusCode, id)
			}
		}
	}
}

// A parked connection is closed by the watcher once the idle timeout has
// passed since its last response, not before, and counted closed.
func TestParkedConnectionIdleTimeout(t *testing.T) {
	skipOnLoop(t)
	const idle = 600 * time.Millisecond
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) {
		parkSoon(p)
		p.IdleTimeout = idle
	}})
	k := openKeptAlive(t, f.addr)
	start := time.Now() // before the response the idle timeout runs from
	k.get(t, "/", "")
	eventually.True(t, "the idle connection is parked", func() bool { return parked(f.proxy) == 1 })
	expectEOF(t, k, "a parked connection past its idle timeout")
	if took := time.Since(start); took < idle-50*time.Millisecond || took > idle+5*time.Second {
		t.Errorf("closed after %v, want about %v", took, idle)
	}
	eventually.True(t, "the closed connection is counted closed", func() bool { return f.proxy.loop.Counts.Open() == 0 })
	if n := parked(f.proxy); n != 0 {
		t.Errorf("the watcher still holds %d connections", n)
	}
}

// A request head that starts on a parked connection and stops halfway gets
// 408 after the header timeout, as on a connection that never parked.
func TestParkedConnectionHeaderTimeout(t *testing.T) {
	skipOnLoop(t)
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) {
		parkSoon(p)
		p.HeaderTimeout = 300 * time.Millisecond
	}})
	k := openKeptAlive(t, f.addr)
	k.get(t, "/", "")
	eventually.True(t, "the idle connection is parked", func() bool { return parked(f.proxy) == 1 })
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, _ := readResponse(t, k.r, "GET")
	if resp.StatusCode != 408 {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
}

// Shutdown and Close close parked connections at once, as they close idle
// ones, and leave no goroutine or descriptor behind, the watcher's
// included.
func TestStopClosesParkedConnections(t *testing.T) {
	skipOnLoop(t)
	for _, stop := range []string{"Shutdown", "Close"} {
		t.Run(stop, func(t *testing.T) {
			base := leakcheck.Take(t)
			f := newFixture(t, fixtureOpts{n: 1, configure: parkSoon})
			ks := make([]*keptAlive, 5)
			for i := range ks {
				ks[i] = openKeptAlive(t, f.addr)
				ks[i].get(t, "/", "")
			}
			eventually.True(t, "the idle connections are parked", func() bool { return parked(f.proxy) == len(ks) })
			start := time.Now()
			if stop == "Shutdown" {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := f.proxy.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			} else {
				f.proxy.Close()
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s took %v with parked connections only", stop, took)
			}
			for _, k := range ks {
				expectEOF(t, k, "a parked connection at "+stop)
				k.c.Close()
			}
			if open := f.proxy.loop.Counts.Open(); open != 0 {
				t.Errorf("%d connections counted open after %s", open, stop)
			}
			f.backends[0].Kill()
			f.proxy.closeIdleUpstreams()
			base.Wait(t, 20*time.Second)
		})
	}
}

// A client that closes its parked connection has it closed by the proxy
// too, and counted closed; nothing of it is left (see parkThenLeave).
func TestParkedConnectionClientCloses(t *testing.T) {
	parkThenLeave(t, func(c *net.TCPConn) { c.Close() })
}

// parkThenLeave parks a connection, lets its client leave it as leave
// does, and checks that the proxy closes it, counts it closed, and keeps
// no goroutine or descriptor of it: the watcher's duplicate and the
// socket made again to serve it are closed. A first connection, parked
// and closed, starts the watcher and the backend connection beforehand.
func parkThenLeave(t *testing.T, leave func(*net.TCPConn)) {
	t.Helper()
	skipOnLoop(t)
	f := newFixture(t, fixtureOpts{n: 1, configure: parkSoon})
	once := func() {
		c, err := dialDeadline(f.addr)
		if err != nil {
			t.Fatal(err)
		}
		k := &keptAlive{c: c, r: bufio.NewReader(c)}
		k.get(t, "/", "")
		eventually.True(t, "the idle connection is parked", func() bool { return parked(f.proxy) == 1 })
		leave(c.(*net.TCPConn))
		c.Close()
		eventually.True(t, "the connection is counted closed", func() bool { return f.proxy.loop.Counts.Open() == 0 })
		eventually.True(t, "the watcher lets it go", func() bool { return parked(f.proxy) == 0 })
	}
	once()
	base := leakcheck.Take(t)
	once()
	base.Wait(t, 20*time.Second)
}

// Empty lines alone after a request keep the connection on its goroutine,
// so that their count is not lost: the limit still answers 400.
func TestBlankLinesDoNotPark(t *testing.T) {
	skipOnLoop(t)
	f := newFixture(t, fixtureOpts{n: 1, configure: parkSoon})
	k := openKeptAlive(t, f.addr)
	k.get(t, "/", "")
	eventually.True(t, "the idle connection is parked", func() bool { return parked(f.proxy) == 1 })
	if _, err := io.WriteString(k.c, "\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	eventually.True(t, "the connection waits well past the parking delay, unparked", func() bool {
		return time.Since(sent) > 10*f.proxy.parks.after && parked(f.proxy) == 0 && goroutineIn("(*connReader).waitByte")
	})
	if _, err := io.WriteString(k.c, strings.Repeat("\r\n\r\n", maxBlankHeads)); err != nil {
		t.Fatal(err)
	}
	resp, _ := readResponse(t, k.r, "GET")
	if resp.StatusCode != 400 {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
}

// A TLS connection never parks: its session state lives in its tls.Conn,
// which a connection served anew from the watcher would not have. Idle
// well past the parking delay, it is still served on the same connection.
func TestTLSConnectionsDoNotPark(t *testing.T) {
	f, _ := tlsFixture(t, 1, TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}}, parkSoon)
	tc := tls.Client(dialProxy(t, f.addr), &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(60 * time.Second))
	k := &keptAlive{c: tc, r: bufio.NewReader(tc)}
	if resp, _ := k.get(t, "/", ""); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sent := time.Now()
	eventually.True(t, "the connection waits well past the parking delay", func() bool {
		return time.Since(sent) > 10*f.proxy.parks.after && goroutineIn("(*connReader).waitByte")
	})
	if n := parked(f.proxy); n != 0 {
		t.Errorf("%d TLS connections parked, want none", n)
	}
	if resp, _ := k.get(t, "/", ""); resp.StatusCode != 200 {
		t.Errorf("after the idle wait: status %d", resp.StatusCode)
	}
	if n := f.proxy.loop.Counts.Accepted(); n != 1 {
		t.Errorf("%d connections accepted, want the one kept alive", n)
	}
}

// A connection behind PROXY protocol parks and is served again as the
// client its header named, without a second header.
func TestParkedConnectionKeepsItsProxyClient(t *testing.T) {
	peers, err := proxyproto.ParsePeers([]string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) {
		parkSoon(p)
		p.ProxyProtocol = proxyproto.Policy{From: peers, Timeout: 10 * time.Second}
	}})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(proxyHeader(2, "203.0.113.7:5000")); err != nil {
		t.Fatal(err)
	}
	k := &keptAlive{c: c, r: bufio.NewReader(c)}
	for round := range 2 {
		if resp, _ := k.get(t, "/", ""); resp.StatusCode != 200 {
			t.Fatalf("round %d: status %d", round, resp.StatusCode)
		}
		if got := f.backends[0].lastHeader().Get("X-Forwarded-For"); got != "203.0.113.7" {
			t.Errorf("round %d: X-Forwarded-For %q, want the header's client 203.0.113.7", round, got)
		}
		eventually.True(t, "the idle connection is parked", func() bool { return parked(f.proxy) == 1 })
	}
}

// A parked connection is its socket and a watcher slot: the Go heap keeps
// no net.TCPConn, addresses, poller entry or accept record for it, where
// those took several hundred bytes a connection. A first round of
// connections, parked and closed, leaves what a burst costs once (the
// watcher's slots, goroutine records, the sets' room); the second round's
// must then add next to nothing. The clients' own sockets are detached
// too, so that the heap holds the proxy's side alone.
func TestParkedConnectionsHoldLittleHeap(t *testing.T) {
	skipOnLoop(t)
	f := newFixture(t, fixtureOpts{n: 1, configure: parkSoon})
	const n = 500
	fds := make([]int, 0, n)
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		fds = fds[:0]
	}
	t.Cleanup(closeAll)
	open := func() {
		for range n {
			c, err := dialDeadline(f.addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				c.Close()
				t.Fatal(err)
			}
			if resp, _ := readResponse(t, bufio.NewReader(c), "GET"); resp.StatusCode != 200 {
				c.Close()
				t.Fatalf("status %d", resp.StatusCode)
			}
			fd, err := park.Detach(c.(*net.TCPConn))
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
		eventually.True(t, "every connection is parked", func() bool {
			return parked(f.proxy) == n && !goroutineIn("(*connReader).waitByte")
		})
	}
	heap := func() int64 {
		// Three collections: pooled sessions survive two.
		for range 3 {
			runtime.GC()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	for range 2 {
		open()
		closeAll()
		eventually.True(t, "the closed connections are let go", func() bool {
			return parked(f.proxy) == 0 && f.proxy.loop.Counts.Open() == 0
		})
	}
	before := heap()
	open()
	per := (heap() - before) / n
	t.Logf("Go heap per parked connection: %d bytes", per)
	if per > 64 {
		t.Errorf("the Go heap holds %d bytes per parked connection, want at most 64", per)
	}
}

// A client that resets its parked connection has it closed by the proxy
// and counted closed: the socket cannot be served again, and nothing of
// it is left.
func TestParkedConnectionClientResets(t *testing.T) {
	parkThenLeave(t, func(c *net.TCPConn) { c.SetLinger(0) })
}

// A parked connection's record gives back the client its PROXY header
// named, of either family, or none.
func TestParkedConnPacksClient(t *testing.T) {
	for _, s := range []string{"203.0.113.7:5000", "[2001:db8::7]:443", "[::ffff:203.0.113.7]:80", "0.0.0.0:0"} {
		a := netip.MustParseAddrPort(s)
		if got := packClient(a).client(); got != a {
			t.Errorf("packed %v, got back %v", a, got)
		}
	}
	if got := packClient(netip.AddrPort{}).client(); got.IsValid() {
		t.Errorf("no client packed, got back %v", got)
	}
}

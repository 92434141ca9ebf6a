package l7

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/loopback"
)

// heldBackend serves raw HTTP/1.1 on loopback and counts the
// connections it accepted and those lbctl closed. A request for /held
// waits until release is called, so that a test can have several backend
// connections busy at once.
type heldBackend struct {
	addr             string
	accepted, closed atomic.Int64
	held             atomic.Int64 // requests for /held that arrived
	gate             chan struct{}
	once             sync.Once
}

func startHeldBackend(t *testing.T) *heldBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &heldBackend{addr: ln.Addr().String(), gate: make(chan struct{})}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cb.accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				cb.serve(c, stop)
			})
		}
	})
	return cb
}

// serve answers every request on c until lbctl closes it.
func (cb *heldBackend) serve(c net.Conn, stop chan struct{}) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		for err == nil {
			var l string
			if l, err = r.ReadString('\n'); l == "\r\n" {
				break
			}
		}
		if err != nil {
			cb.closed.Add(1)
			return
		}
		if strings.HasPrefix(line, "GET /held ") {
			cb.held.Add(1)
			select {
			case <-cb.gate:
			case <-stop:
				return
			}
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
			return
		}
	}
}

// release lets every held request, and those to come, be answered.
func (cb *heldBackend) release() { cb.once.Do(func() { close(cb.gate) }) }

// open is how many backend connections lbctl holds.
func (cb *heldBackend) open() int64 { return cb.accepted.Load() - cb.closed.Load() }

// ask sends a GET for target on c, without waiting for the response.
func ask(t *testing.T, c net.Conn, target string) {
	t.Helper()
	if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: app\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
}

// answered reads the response to a request sent with ask.
func answered(t *testing.T, r *bufio.Reader) {
	t.Helper()
	if resp, body := readResponse(t, r, "GET"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("response %d %q, want 200 ok", resp.StatusCode, body)
	}
}

// The pool keeps up to MaxIdlePerBackend connections to a backend and
// closes the rest once a burst that needed more is over; the ones kept
// carry the next requests without a dial; and Reconfigure changes the
// cap while the proxy serves, down to keeping none.
func TestPoolKeepsUpToItsCap(t *testing.T) {
	const limit, burst = 3, 6
	cb := startHeldBackend(t)
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", cb.addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{
		Pool:              backend.NewPool(reg),
		Selector:          &backend.RoundRobin{},
		Cookie:            defaultCookie(),
		IdleTimeout:       time.Minute,
		MaxIdlePerBackend: limit,
		Loops:             1, // the cap is per event loop on the loop engine
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, p, ln)

	clients := make([]net.Conn, burst)
	readers := make([]*bufio.Reader, burst)
	for i := range clients {
		clients[i] = dialProxy(t, ln.Addr().String())
		clients[i].SetDeadline(time.Now().Add(60 * time.Second))
		readers[i] = bufio.NewReader(clients[i])
		ask(t, clients[i], "/held")
	}
	eventually.True(t, "every request of the burst to reach the backend", func() bool { return cb.held.Load() == burst })
	cb.release()
	for _, r := range readers {
		answered(t, r)
	}
	eventually.True(t, "the connections beyond the cap to be closed", func() bool { return cb.closed.Load() == burst-limit })
	if n := cb.accepted.Load(); n != burst {
		t.Fatalf("the backend accepted %d connections for a burst of %d requests", n, burst)
	}

	// As many requests at once as were kept take the kept connections.
	for i := range limit {
		ask(t, clients[i], "/")
	}
	for i := range limit {
		answered(t, readers[i])
	}
	if n := cb.accepted.Load(); n != burst {
		t.Errorf("after %d more requests the backend accepted %d connections, want %d: the kept ones serve them", limit, n, burst)
	}
	if n := cb.open(); n != limit {
		t.Errorf("lbctl holds %d backend connections, want %d", n, limit)
	}

	// A lower cap closes the connections beyond it as they come back.
	s := p.fields()
	s.MaxIdlePerBackend = 1
	if err := p.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	for range limit {
		ask(t, clients[0], "/")
		answered(t, readers[0])
	}
	eventually.True(t, "the pool to shrink to the new cap", func() bool { return cb.open() == 1 })
	if n := cb.accepted.Load(); n != burst {
		t.Errorf("after the cap went down the backend accepted %d connections, want still %d", n, burst)
	}

	// A negative cap keeps none: every request dials, and its connection
	// is closed after it.
	s.MaxIdlePerBackend = -1
	if err := p.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ask(t, clients[0], "/")
		answered(t, readers[0])
	}
	eventually.True(t, "no backend connection to be kept", func() bool { return cb.open() == 0 })
	if n := cb.accepted.Load(); n != burst+1 {
		t.Errorf("with no connection kept, two requests made the backend accept %d connections in all, want %d (the last kept one, then a dial)", n, burst+1)
	}
}

// Package config gives limits.backend_idle_conns the proxy's default
// (config imports no other lbctl package): the two agree.
func TestConfigAgreesOnIdleConns(t *testing.T) {
	if got := config.Default().Limits.BackendIdleConns; got != DefaultMaxIdlePerBackend {
		t.Errorf("config's default limits.backend_idle_conns is %d, the proxy's DefaultMaxIdlePerBackend %d", got, DefaultMaxIdlePerBackend)
	}
}

// Once traffic stops, the connections kept for it are closed when they
// have idled past the idle timeout, with no request to trigger it; while
// some are younger, the sweep comes back for them.
func TestPoolSweepsWhenTrafficStops(t *testing.T) {
	conns := make([]*net.TCPConn, 3)
	for i := range conns {
		conns[i], _ = loopback.Pair(t)
	}
	synctest.Test(t, func(t *testing.T) {
		var u upstreamPool
		defer u.closeIdle(true)
		u.put(conns[0], 10, time.Minute, time.Time{})
		u.put(conns[1], 10, time.Minute, time.Time{})
		time.Sleep(30 * time.Second)
		u.put(conns[2], 10, time.Minute, time.Time{})
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if n := u.kept(); n != 1 {
			t.Fatalf("a minute and a second after the first two came back, %d connections are kept, want the 30 s younger one", n)
		}
		for _, c := range conns[:2] {
			if _, err := c.Write([]byte("x")); err == nil {
				t.Error("a connection that idled past the timeout is still open")
			}
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := u.kept(); n != 0 {
			t.Fatalf("after the last one idled past the timeout, %d connections are kept, want none", n)
		}
		if _, err := conns[2].Write([]byte("x")); err == nil {
			t.Error("the last connection is still open")
		}
	})
}

// A pool with no idle timeout keeps its connections however long they
// wait.
func TestPoolWithoutIdleTimeoutKeeps(t *testing.T) {
	c, _ := loopback.Pair(t)
	synctest.Test(t, func(t *testing.T) {
		var u upstreamPool
		defer u.closeIdle(true)
		u.put(c, 10, 0, time.Time{})
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := u.kept(); n != 1 {
			t.Fatalf("%d connections kept after an hour with no idle timeout, want 1", n)
		}
	})
}

// kept is how many connections u holds.
func (u *upstreamPool) kept() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.idle)
}

// armUp moves a backend connection's deadline only when the one it
// carries is less than seven eighths of timeouts.server ahead or further
// than timeouts.server, and the deadline it keeps is in force.
func TestArmUpMovesTheDeadlineOnlyWhenDue(t *testing.T) {
	up, _ := loopback.Pair(t)
	var io upIO
	var w timedWriter
	const server = time.Hour
	armUp(&w, &io, up, server)
	first := io.until
	if d := time.Until(first); d <= server-server/8 || d > server {
		t.Fatalf("a connection without a deadline got one %v ahead, want about %v", d, server)
	}
	if armUp(&w, &io, up, server); !io.until.Equal(first) || !w.until.Equal(first) {
		t.Fatalf("the deadline moved from %v to %v (writer: %v) although it was far enough", first, io.until, w.until)
	}
	io.until = time.Now().Add(server / 2)
	if armUp(&w, &io, up, server); !io.until.After(first) {
		t.Fatalf("a deadline half the timeout ahead stayed at %v", io.until)
	}
	// A reload that shortens the timeout brings a deadline set under the
	// longer one back within it.
	if armUp(&w, &io, up, time.Minute); time.Until(io.until) > time.Minute {
		t.Fatalf("under a one-minute timeout the deadline stayed %v ahead", time.Until(io.until))
	}

	io.until = time.Time{}
	armUp(&w, &io, up, 50*time.Millisecond)
	short := io.until
	armUp(&w, &io, up, 50*time.Millisecond)
	if !io.until.Equal(short) {
		t.Fatalf("the deadline moved again at once")
	}
	if _, err := io.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read of a silent connection past its deadline returned %v, want a timeout", err)
	}
}

// upIO.send writes the request and returns once the answer can be read,
// whether it comes before or after send has begun to wait (many rounds
// take both turns), or never: then the deadline ends the read that
// follows. The bytes read are the answer's.
func TestUpIOSendWaitsForTheAnswer(t *testing.T) {
	up, peer := loopback.Pair(t)
	var io upIO
	var w timedWriter
	answered := make(chan error, 1)
	for range 200 {
		armUp(&w, &io, up, 10*time.Second)
		go func() {
			buf := make([]byte, 64)
			n, err := peer.Read(buf)
			if err == nil && string(buf[:n]) != "GET / HTTP/1.1\r\n\r\n" {
				err = fmt.Errorf("the backend read %q", buf[:n])
			}
			if err == nil {
				_, err = peer.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
			}
			answered <- err
		}()
		if n, err := io.send([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil || n != 18 {
			t.Fatalf("send wrote %d bytes, %v", n, err)
		}
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := io.Read(buf)
		if err != nil || string(buf[:n]) != "HTTP/1.1 204 No Content\r\n\r\n" {
			t.Fatalf("read %q, %v after send, want the answer", buf[:n], err)
		}
	}

	io.until = time.Time{}
	armUp(&w, &io, up, 50*time.Millisecond)
	if _, err := io.send([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatalf("send to a silent backend: %v, want the write to succeed", err)
	}
	if _, err := io.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the read after send to a silent backend returned %v, want a timeout", err)
	}
}

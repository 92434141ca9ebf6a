package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// testBackend is a TCP backend on loopback that greets every connection
// with its id on one line, then echoes until the client half-closes (see
// testbackend.StartTCP); Kill and Revive crash it and bring it back on
// the same address. id and addr are its ID and Addr.
type testBackend struct {
	*testbackend.Backend
	id, addr string
}

// startBackend starts a testBackend, killed when the test ends.
func startBackend(t testing.TB, id string) *testBackend {
	t.Helper()
	b, err := testbackend.StartTCP(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return &testBackend{Backend: b, id: id, addr: b.Addr()}
}

// revive listens again on tb's address.
func (tb *testBackend) revive(t *testing.T) {
	t.Helper()
	if err := tb.Revive(); err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	addr     string
	proxy    *Proxy
	table    *affinity.Table
	registry *backend.Registry // the pool the fixture started with
	pool     *backend.Pool
	backends []*testBackend
	served   chan error
}

type fixtureOpts struct {
	n      int
	policy string
	idle   time.Duration
	prober bool
	// beforeProxy, when set, runs once the backends are up and before the
	// affinity table and the proxy start (to take a leak baseline).
	beforeProxy func()
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	if o.policy == "" {
		o.policy = "roundrobin"
	}
	f := &fixture{served: make(chan error, 1)}
	var bs []*backend.Backend
	for i := range o.n {
		tb := startBackend(t, fmt.Sprintf("app-%02d", i+1))
		f.backends = append(f.backends, tb)
		bs = append(bs, backend.New(tb.id, tb.addr, 1))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		t.Fatal(err)
	}
	if o.beforeProxy != nil {
		o.beforeProxy()
	}
	sel, err := backend.NewSelector(o.policy)
	if err != nil {
		t.Fatal(err)
	}
	f.registry = reg
	f.pool = backend.NewPool(reg)
	f.table = affinity.New(affinity.Options{})
	t.Cleanup(f.table.Close)
	f.proxy = &Proxy{Pool: f.pool, Selector: sel, Table: f.table, IdleTimeout: o.idle, ConnectTimeout: time.Second}
	if o.prober {
		f.proxy.Health = &backend.Prober{Pool: f.pool, Checker: &backend.TCPCheck{}, Rise: 1, Fall: 1, Timeout: time.Second}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	go func() { f.served <- f.proxy.Serve(ln) }()
	t.Cleanup(func() {
		f.proxy.Close()
		if err := <-f.served; !errors.Is(err, ErrProxyClosed) {
			t.Errorf("Serve returned %v, want ErrProxyClosed", err)
		}
	})
	return f
}

// serveProxy starts a proxy over a pool of reg, with a fresh affinity table, on the
// engine the tests are running (see testHookPortable); configure, when not
// nil, adjusts it first. It returns the proxy's address and closes it when
// the test ends.
func serveProxy(t testing.TB, reg *backend.Registry, configure func(p *Proxy)) string {
	t.Helper()
	table := affinity.New(affinity.Options{})
	t.Cleanup(table.Close)
	p := &Proxy{Pool: backend.NewPool(reg), Selector: &backend.RoundRobin{}, Table: table}
	if configure != nil {
		configure(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		<-served
	})
	return ln.Addr().String()
}

// connBackend starts a backend that serves each connection with serve (see
// testbackend.StartTCPFunc), killed when the test ends; it returns the
// address.
func connBackend(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	b, err := testbackend.StartTCPFunc("app-01", serve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b.Addr()
}

// oneShotBackend accepts one connection, writes reply, then waits until
// the test ends (or the client closes) before closing; it returns its
// address.
func oneShotBackend(t testing.TB, reply func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
	})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		reply(c)
		go func() {
			<-done
			c.Close()
		}()
		io.Copy(io.Discard, c)
	}()
	return ln.Addr().String()
}

// newRegistry returns a registry of one backend "app-01" at addr.
func newRegistry(t testing.TB, addr string) *backend.Registry {
	t.Helper()
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// dialFrom connects to the proxy from the given loopback source address.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	c, err := dialFromErr(src, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialFromErr is dialFrom for goroutines other than the test's: it returns
// the error.
func dialFromErr(src, addr string) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, src, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn), nil
}

// greeting connects from src and returns the id of the backend that
// answered, failing the test on any error the client sees.
func greeting(t *testing.T, src, addr string) string {
	t.Helper()
	c := dialFrom(t, src, addr)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("client %s: reading greeting: %v", src, err)
	}
	return strings.TrimSpace(line)
}

func TestOneSourceIPStaysOnOneBackend(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	first := greeting(t, "127.0.0.2", f.addr)
	for i := range 19 {
		if got := greeting(t, "127.0.0.2", f.addr); got != first {
			t.Fatalf("connection %d from 127.0.0.2 went to %s, want %s", i+2, got, first)
		}
	}
	st := f.table.Stats()
	if st.Hits != 19 || st.Misses != 1 || st.Size != 1 {
		t.Errorf("table stats = %+v, want 19 hits, 1 miss, size 1", st)
	}
}

func TestNewSourceIPsSpreadByPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy   string
		min, max int // clients per backend, of 30 over 3
	}{
		{"roundrobin", 10, 10},
		{"leastconn", 10, 10}, // connections stay open, so counts differ
		{"random2", 6, 14},    // two random choices, the less loaded wins
	} {
		t.Run(tt.policy, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{n: 3, policy: tt.policy})
			count := map[string]int{}
			for i := range 30 {
				// Each client holds its connection open until the end,
				// so load-aware policies see every earlier placement.
				c := dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), f.addr)
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					t.Fatalf("client %d: %v", i, err)
				}
				count[strings.TrimSpace(line)]++
			}
			for _, b := range f.backends {
				if n := count[b.id]; n < tt.min || n > tt.max {
					t.Errorf("%s got %d of 30 clients, want %d..%d: %v", b.id, n, tt.min, tt.max, count)
				}
			}
			if st := f.table.Stats(); st.Size != 30 || st.Misses != 30 {
				t.Errorf("table stats = %+v, want 30 pins from 30 misses", st)
			}
		})
	}
}

func TestFailoverRepinsWithoutFlapBack(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3, prober: true})
	const client = "127.0.0.7"
	first := greeting(t, client, f.addr)
	var dead *testBackend
	for _, b := range f.backends {
		if b.id == first {
			dead = b
		}
	}
	dead.Kill()

	// The proxy has not noticed yet: the dial fails, and the client is
	// moved within the same connection without seeing an error.
	second := greeting(t, client, f.addr)
	if second == first {
		t.Fatalf("after killing %s the client still reached it", first)
	}
	if st := f.table.Stats(); st.Repins != 1 {
		t.Errorf("repins = %d, want 1", st.Repins)
	}
	if b := f.registry.Get(first); b.Available() {
		t.Errorf("%s still available after a failed dial with fall=1", first)
	}

	dead.revive(t)
	f.proxy.Health.Round(context.Background())
	if b := f.registry.Get(first); !b.Available() {
		t.Fatalf("%s not available after reviving and a passing check", first)
	}
	for i := range 5 {
		if got := greeting(t, client, f.addr); got != second {
			t.Fatalf("connection %d after %s returned went to %s, want %s (no flap back)", i, first, got, second)
		}
	}
}

func TestUnavailablePinnedBackendIsSkipped(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	const client = "127.0.0.8"
	first := greeting(t, client, f.addr)
	f.registry.Get(first).SetAdmin(backend.Maint, time.Time{})
	second := greeting(t, client, f.addr)
	if second == first {
		t.Fatalf("client reached %s in maintenance", first)
	}
	f.registry.Get(first).SetAdmin(backend.Ready, time.Time{})
	if got := greeting(t, client, f.addr); got != second {
		t.Errorf("after %[3]s was ready again client went to %[1]s, want %[2]s (no flap back)", got, second, first)
	}
}

func TestNoBackendClosesAtOnceAndRecovers(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	b := f.registry.Get("app-01")
	b.SetAdmin(backend.Maint, time.Time{})
	c := dialFrom(t, "127.0.0.9", f.addr)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with no backend = %d, %v; want the connection closed at once", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("connection closed after %v, want at once", d)
	}
	c.Close()
	b.SetAdmin(backend.Ready, time.Time{})
	if got := greeting(t, "127.0.0.9", f.addr); got != "app-01" {
		t.Errorf("after backend returned: %q, want app-01", got)
	}
}

func TestHalfCloseDeliversWholeReply(t *testing.T) {
	// A backend that reads the whole request, then answers with a large
	// reply derived from it: the answer only starts after the client's FIN.
	reply := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	addr := serveProxy(t, newRegistry(t, connBackend(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes\n", len(req))
		c.Write(reply)
	})), nil)

	c := dialFrom(t, "127.0.0.10", addr)
	defer c.Close()
	if _, err := c.Write([]byte("hello, half-closed world")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading reply after CloseWrite: %v", err)
	}
	want := append([]byte("got 24 bytes\n"), reply...)
	if !bytes.Equal(got, want) {
		t.Errorf("reply: %d bytes, want %d (prefix %q)", len(got), len(want), got[:min(len(got), 20)])
	}
}

func Test64MiBArriveIntact(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := dialFrom(t, "127.0.0.11", f.addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	const size = 64 << 20
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		src := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1<<16)
		for written := 0; written < size; written += len(buf) {
			for i := range buf {
				buf[i] = byte(src.Uint32())
			}
			sent.Write(buf)
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, r)
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if n != size {
		t.Fatalf("echoed %d bytes, want %d", n, size)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Error("echoed bytes differ from the bytes sent")
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	f := newFixture(t, fixtureOpts{n: 1, idle: idle})

	t.Run("silent connection is closed", func(t *testing.T) {
		// The idle timeout runs from the greeting, which the proxy relays
		// before this goroutine reads it: the time is taken before.
		start := time.Now()
		c := dialFrom(t, "127.0.0.12", f.addr)
		defer c.Close()
		r := bufio.NewReader(c)
		r.ReadString('\n')
		_, err := r.ReadByte()
		took := time.Since(start)
		if err != io.EOF {
			t.Errorf("read on idle connection: %v, want EOF from the proxy", err)
		}
		if took < idle-50*time.Millisecond || took > idle+time.Second {
			t.Errorf("closed after %v, want about %v", took, idle)
		}
	})

	t.Run("traffic one way keeps both open", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.13", f.addr)
		defer c.Close()
		r := bufio.NewReader(c)
		r.ReadString('\n')
		// The client keeps sending a byte and reading its echo, a tenth
		// of the idle timeout apart (so that a busy machine delaying a
		// few of them does not make a pause as long as the timeout), for
		// three idle periods: the connection must stay open throughout.
		tick := time.NewTicker(idle / 10)
		defer tick.Stop()
		start := time.Now()
		for i := 0; time.Since(start) < 3*idle; i++ {
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			if _, err := r.ReadByte(); err != nil {
				t.Fatalf("read %d after %v: %v", i, time.Since(start), err)
			}
			<-tick.C
		}
	})
}

func TestShutdownWaitsForOpenConnections(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := dialFrom(t, "127.0.0.14", f.addr)
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')

	shut := make(chan error, 1)
	go func() { shut <- f.proxy.Shutdown(context.Background()) }()
	// New connections are refused once the listener is closed.
	eventually.True(t, "the proxy to refuse clients after Shutdown", func() bool {
		nc, err := net.DialTimeout("tcp", f.addr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	// The open connection still works.
	c.Write([]byte("x"))
	if b, err := r.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo during shutdown = %q, %v", b, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a connection was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.CloseWrite()
	io.Copy(io.Discard, r)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestShutdownGraceExpiresClosesConnections(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := dialFrom(t, "127.0.0.15", f.addr)
	defer c.Close()
	bufio.NewReader(c).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := f.proxy.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection after forced shutdown: read err %v, want closed", err)
	}
}

// No goroutine, descriptor or pipe outlives the connections that used it:
// while the proxy runs, goroutines and sockets come back to what they were
// before the connections (the event loop keeps a pool of empty pipes for
// the next ones); once it is closed, everything, pipes included, comes
// back to what it was before the proxy started.
func TestNoGoroutineOrFDOutlivesItsConnection(t *testing.T) {
	var beforeProxy *leakcheck.Baseline
	f := newFixture(t, fixtureOpts{n: 2, idle: 200 * time.Millisecond,
		beforeProxy: func() { beforeProxy = leakcheck.Take(t) }})
	// The proxy serves once a client is answered; its own goroutines and
	// descriptors are running then, and this client's are gone once the
	// backends have seen it leave and released it.
	greeting(t, "127.0.0.20", f.addr)
	eventually.True(t, "the first client's connection to end", func() bool {
		for _, b := range f.backends {
			if b.OpenConns() != 0 || f.registry.Get(b.id).Active() != 0 {
				return false
			}
		}
		return true
	})
	base := leakcheck.Take(t)

	var wg sync.WaitGroup
	for i := range 25 {
		wg.Go(func() {
			src := fmt.Sprintf("127.0.2.%d", i+1)
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).Dial("tcp", f.addr)
			if err != nil {
				t.Errorf("dial from %s: %v", src, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			switch i % 5 {
			case 0: // clean half-close
				c.Write([]byte("ping"))
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			case 4: // bulk both ways, which the event loop splices
				go func() {
					c.Write(bytes.Repeat([]byte("x"), 1<<20))
					c.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(io.Discard, c)
			case 1: // client vanishes mid-stream
				c.Write(bytes.Repeat([]byte("x"), 1<<20))
			case 2: // idle until the proxy cuts it
				io.Copy(io.Discard, c)
			case 3: // reset
				c.(*net.TCPConn).SetLinger(0)
			}
		})
	}
	wg.Wait()
	// A backend killed under open connections, and a refused client.
	c := dialFrom(t, "127.0.0.21", f.addr)
	bufio.NewReader(c).ReadString('\n')
	for _, b := range f.backends {
		b.Kill()
	}
	io.Copy(io.Discard, c)
	c.Close()
	nc, err := net.Dial("tcp", f.addr)
	if err == nil {
		io.Copy(io.Discard, nc)
		nc.Close()
	}
	for _, b := range f.backends {
		b.revive(t) // listeners are part of the baseline
	}
	base.WaitExceptPipes(t, 5*time.Second)

	f.proxy.Close()
	f.table.Close()
	beforeProxy.Wait(t, 5*time.Second)
}

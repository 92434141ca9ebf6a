package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := dialProxy(t, f.addr)
	var all strings.Builder
	for i := range 5 {
		fmt.Fprintf(&all, "GET /p%d HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-01\r\n\r\n", i)
	}
	all.WriteString("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	all.WriteString("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	all.WriteString("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	io.WriteString(c, all.String())
	r := bufio.NewReader(c)
	for i := range 5 {
		resp, body := readResponse(t, r, "GET")
		if resp.StatusCode != 200 || body != "app-01\n" {
			t.Fatalf("pipelined %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if resp, body := readResponse(t, r, "POST"); body != "hello" {
		t.Errorf("pipelined POST: %d %q, want the echoed body", resp.StatusCode, body)
	}
	if resp, body := readResponse(t, r, "HEAD"); body != "" || resp.StatusCode != 200 {
		t.Errorf("pipelined HEAD: %d %q, want no body", resp.StatusCode, body)
	}
	if _, body := readResponse(t, r, "GET"); body != "app-01\n" {
		t.Errorf("last: %q", body)
	}
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Errorf("bytes after the last response: %q", rest)
	}
}

func TestBodilessResponses(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := f.client(t)
	for _, path := range []string{"/204", "/304"} {
		_, resp := get(t, c, f.url(path))
		if resp.ContentLength > 0 {
			t.Errorf("%s: Content-Length %d", path, resp.ContentLength)
		}
	}
	// The connection is still in step: a normal request follows.
	if id, _ := get(t, c, f.url("/")); id != "app-01" {
		t.Errorf("after 204/304: %q", id)
	}
}

func TestChunkedBothWays(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	raw := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	got := rawExchange(t, f.addr, raw)
	r := bufio.NewReader(strings.NewReader(got))
	if resp, body := readResponse(t, r, "POST"); body != "hello, world" {
		t.Errorf("chunked upload echoed %q (status %d)", body, resp.StatusCode)
	}
	resp, body := readResponse(t, r, "GET")
	if want := "app-01 part 0\napp-01 part 1\napp-01 part 2\n"; body != want {
		t.Errorf("chunked download %q, want %q", body, want)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("download framing %v, want chunked", resp.TransferEncoding)
	}
}

func TestHTTP10ClientGetsUnchunkedBody(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	got := rawExchange(t, f.addr, "GET /chunked HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || strings.Contains(got, "Transfer-Encoding") {
		t.Fatalf("answer %q, want 200 without chunked framing", got)
	}
	if !strings.HasSuffix(got, "\r\n\r\napp-01 part 0\napp-01 part 1\napp-01 part 2\n") {
		t.Errorf("answer %q, want the parts as a plain body", got)
	}
}

func TestExpectContinue(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := dialProxy(t, f.addr)
	io.WriteString(c, "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("first line %q, %v; want 100 Continue before the body is sent", line, err)
	}
	for line != "\r\n" {
		line, _ = r.ReadString('\n')
	}
	io.WriteString(c, "hello")
	resp, body := readResponse(t, r, "POST")
	if resp.StatusCode != 200 || body != "app-01 5 <nil>\n" {
		t.Errorf("final answer %d %q", resp.StatusCode, body)
	}
}

func TestBackendConnectionsAreReused(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	c := f.client(t)
	for range 50 {
		get(t, c, f.url("/"))
	}
	if n := f.backends[0].Accepted(); n > 2 {
		t.Errorf("50 sequential requests opened %d backend connections, want them kept alive", n)
	}
}

// wsBackend completes an Upgrade handshake and then echoes bytes until the
// client half-closes, then sends "bye" and closes.
func wsBackend(t *testing.T) string {
	t.Helper()
	return scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, c)
		io.WriteString(c, "bye")
	})
}

func TestUpgradeBecomesTunnel(t *testing.T) {
	addr := newRawFixture(t, wsBackend(t), nil)
	c := dialProxy(t, addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if resp.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Errorf("101 header %v lacks Upgrade/Connection", resp.Header)
	}
	if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SERVERID=app-01;") {
		t.Errorf("101 without persistence cookie: %v", resp.Header)
	}
	for i := range 3 {
		msg := fmt.Sprintf("frame %d", i)
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %d = %q, %v", i, buf, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "bye" {
		t.Errorf("after half-close got %q, %v; want bye", rest, err)
	}
}

// memWatch samples the heap in use until stopped and reports its peak.
func memWatch() (stop func() uint64) {
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse+ms.StackInuse)
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// countingReader counts the bytes read through it into moved.
type countingReader struct {
	r     io.Reader
	moved *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.moved.Add(int64(n))
	return n, err
}

// stallWatch returns a context that is cancelled, with the reason as its
// cause, once moved has stood still for stall: a transfer watched this way
// fails when it stops, however slowly a busy machine runs it.
func stallWatch(t *testing.T, moved *atomic.Int64, stall time.Duration) context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait(); cancel(nil) })
	wg.Go(func() {
		tick := time.NewTicker(stall / 20)
		defer tick.Stop()
		last, since := moved.Load(), time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				if n := moved.Load(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= stall {
					cancel(fmt.Errorf("no byte moved for %v, after %d bytes", stall, n))
					return
				}
			}
		}
	})
	return ctx
}

// TestOneGiBStreamsBothWaysInBoundedMemory streams 1 GiB up, then 1 GiB
// through an echo both ways at once, and holds the proxy's memory to a
// bound. A slow machine may take as long as it needs: the transfer fails
// only when no byte has moved for 30 s (longer than the proxy's own idle
// timeout, which would end a stalled exchange first).
func TestOneGiBStreamsBothWaysInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB")
	}
	size := int64(1 << 30)
	if raceEnabled {
		size = 256 << 20 // the race detector slows copying tenfold
	}
	f := newFixture(t, fixtureOpts{n: 1})
	client := f.client(t)
	client.Timeout = 0 // stallWatch bounds the transfers instead
	var moved atomic.Int64
	ctx := stallWatch(t, &moved, 30*time.Second)
	fail := func(what string, err error) {
		t.Helper()
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		t.Fatalf("%s: %v", what, err)
	}
	// What the echo must return, computed before the exchange: the
	// echo stalls while the client is not reading.
	want := sha256.New()
	io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{3}), size))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse + ms.StackInuse
	stop := memWatch()

	// Upload: the backend counts what it receives.
	body := countingReader{io.LimitReader(rand.NewChaCha8([32]byte{1}), size), &moved}
	req, _ := http.NewRequestWithContext(ctx, "POST", f.url("/sink"), body)
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		fail("upload", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		fail("upload answer", err)
	}
	if want := fmt.Sprintf("app-01 %d <nil>\n", size); string(got) != want {
		t.Fatalf("upload answer %q, want %q", got, want)
	}

	// Download through /echo of a chunked upload: both directions at once.
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() {
		_, err := io.Copy(pw, countingReader{io.LimitReader(rand.NewChaCha8([32]byte{3}), size), &moved})
		pw.CloseWithError(err)
	}()
	req, _ = http.NewRequestWithContext(ctx, "POST", f.url("/echo"), pr)
	resp, err = client.Do(req)
	if err != nil {
		fail("echo", err)
	}
	have := sha256.New()
	n, err := io.Copy(have, countingReader{resp.Body, &moved})
	resp.Body.Close()
	if err != nil {
		fail(fmt.Sprintf("echo after %d bytes", n), err)
	}
	if n != size || !bytes.Equal(have.Sum(nil), want.Sum(nil)) {
		t.Fatalf("echo: %d bytes, hash match %v", n, bytes.Equal(have.Sum(nil), want.Sum(nil)))
	}
	peak := stop()
	t.Logf("streamed %d MiB each way; heap and stacks grew by %.1f MiB at the peak", size>>20, float64(int64(peak)-int64(base))/(1<<20))
	if grew := int64(peak) - int64(base); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB while streaming, want under 64 MiB", grew>>20)
	}
}

func TestShutdownClosesIdleAndFinishesInFlight(t *testing.T) {
	base := baselineBeforeFixture(t)
	f := newFixture(t, fixtureOpts{n: 1})
	idle := dialProxy(t, f.addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	readResponse(t, bufio.NewReader(idle), "GET")

	busy := dialProxy(t, f.addr)
	io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	// In flight once the backend has it; it answers when released.
	if err := f.backends[0].awaitArrivals("/hold", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- f.proxy.Shutdown(context.Background()) }()
	if got, _ := io.ReadAll(idle); len(got) != 0 {
		t.Errorf("idle connection got %q at shutdown, want a plain close", got)
	}
	// The idle connection closed: the shutdown is under way, and only now
	// does the request in flight get its answer.
	f.backends[0].releaseHeld()
	resp, body := readResponse(t, bufio.NewReader(busy), "GET")
	if body != "app-01\n" || !resp.Close {
		t.Errorf("in-flight request: %q, close=%v; want its answer with Connection: close", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	// Shut down, the proxy holds nothing more: once the clients and the
	// backend are gone too, so is everything the test started.
	idle.Close()
	busy.Close()
	f.backends[0].Kill()
	base.Wait(t, 5*time.Second)
}

// baselineBeforeFixture is leakcheck.Take for a test that shuts its proxy
// down: taken before the fixture starts, it does not count the proxy's
// listener and accept loop, which Shutdown ends and which would otherwise
// hide as much of a leak. The network poller, which lives as long as the
// process, is started first.
func baselineBeforeFixture(t *testing.T) *leakcheck.Baseline {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return leakcheck.Take(t)
}

// answerIs sends raw to addr on a new connection and checks that the answer
// starts with prefix; it returns an error rather than failing the test, so
// that any goroutine may call it.
func answerIs(addr, raw, prefix string) error {
	got, err := tryRawExchange(addr, raw)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(got, prefix) {
		return fmt.Errorf("answer %.60q, want %q", got, prefix)
	}
	return nil
}

func TestNoGoroutineOrFDOutlivesItsConnection(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.MaxIdlePerBackend = -1 }})
	ws := newRawFixture(t, wsBackend(t), nil)
	// Short limits over a backend that never answers, for the paths that
	// end in a timeout or a rejection.
	strict := newRawFixture(t, scriptedBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) }), func(p *Proxy) {
		p.ServerTimeout = 100 * time.Millisecond
		p.HeaderTimeout = 200 * time.Millisecond
		p.MaxHeaderBytes = 4096
	})
	// The baseline is taken once a first exchange on each proxy has
	// come and gone, so that what a proxy sets up once is in it.
	warm := leakcheck.Take(t)
	for _, addr := range []string{f.addr, ws, strict} {
		rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	}
	warm.Wait(t, 5*time.Second)
	base := leakcheck.Take(t)

	var vanished atomic.Int64
	cases := []struct {
		name string
		run  func() error
	}{
		{"closed by the proxy", func() error {
			return answerIs(f.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 ")
		}},
		{"chunked echo", func() error {
			return answerIs(f.addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 200 ")
		}},
		{"ambiguous framing", func() error {
			return answerIs(f.addr, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "HTTP/1.1 400 ")
		}},
		{"bad first chunk line", func() error {
			return answerIs(f.addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 400 ")
		}},
		{"client vanishes mid-upload", func() error {
			c, err := dialDeadline(f.addr)
			if err != nil {
				return err
			}
			defer c.Close()
			target := fmt.Sprintf("/sink?vanished=%d", vanished.Add(1))
			io.WriteString(c, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
			// Gone once the backend is reading the body.
			return f.backends[0].awaitArrivals(target, 1, 10*time.Second)
		}},
		{"tunnel half-closed by the client", func() error {
			c, err := dialDeadline(ws)
			if err != nil {
				return err
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil || resp.StatusCode != 101 {
				return fmt.Errorf("handshake: %v, %v", resp, err)
			}
			c.(*net.TCPConn).CloseWrite()
			if rest, err := io.ReadAll(r); err != nil || string(rest) != "bye" {
				return fmt.Errorf("after the half-close: %q, %v; want bye", rest, err)
			}
			return nil
		}},
		{"kept alive, then closed by the client", func() error {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			_, _, err := tryGet(&http.Client{Transport: tr, Timeout: 5 * time.Second}, f.url("/"))
			return err
		}},
		{"backend never answers", func() error {
			return answerIs(strict, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 504 ")
		}},
		{"head too slow", func() error {
			return answerIs(strict, "GET / HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 408 ")
		}},
		{"head too large", func() error {
			return answerIs(strict, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 5000)+"\r\n\r\n", "HTTP/1.1 431 ")
		}},
	}
	var wg sync.WaitGroup
	for i := range 2 * len(cases) {
		tc := cases[i%len(cases)]
		wg.Go(func() {
			if err := tc.run(); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		})
	}
	wg.Wait()
	base.Wait(t, 5*time.Second)
}

func TestUpstreamPoolDropsStaleConnections(t *testing.T) {
	var u upstreamPool
	conns := make([]*net.TCPConn, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.TCPConn)
		defer c.Close()
	}
	u.put(conns[0], 10, time.Hour, time.Time{})
	u.idle[0].since = time.Now().Add(-2 * time.Hour) // idled past the limit
	u.put(conns[1], 10, time.Hour, time.Time{})
	if len(u.idle) != 1 || u.idle[0].c != conns[1] {
		t.Fatalf("pool holds %d connections, want only the fresh one", len(u.idle))
	}
	if _, err := conns[0].Write([]byte("x")); err == nil {
		t.Error("stale connection was not closed")
	}
	if !u.put(conns[2], 2, time.Hour, time.Time{}) || u.put(conns[0], 2, time.Hour, time.Time{}) {
		t.Error("limit of 2 not enforced")
	}
	if got, _ := u.get(time.Hour); got != conns[2] {
		t.Error("get did not return the most recently used connection")
	}
}

func TestClientThatStopsReadingIsCutAtIdleTimeout(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.IdleTimeout = 300 * time.Millisecond }})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// The client reads nothing: the proxy's writes block, its write
	// deadline passes, and it drops both connections, which the backend
	// sees as a failed write.
	select {
	case err := <-f.backends[0].bigDone:
		if err == nil {
			t.Error("the backend wrote all 256 MiB to a client that read nothing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy kept a client that stopped reading past 5s with a 300ms idle timeout")
	}
}

func TestLargeHeadThenSmallOnOneConnection(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	big := strings.Repeat("v", 20000) // past a session's own 4 KiB buffer
	got := rawExchange(t, f.addr, "GET /1 HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n"+
		"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r := bufio.NewReader(strings.NewReader(got))
	for i := range 2 {
		if resp, body := readResponse(t, r, "GET"); resp.StatusCode != 200 || body != "app-01\n" {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if h := f.backends[0].lastHeader(); h.Get("X-Big") != "" {
		t.Errorf("the second request carried X-Big")
	}
	// The first request's large field arrived whole: ask for it again.
	got = rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || f.backends[0].lastHeader().Get("X-Big") != big {
		t.Errorf("a 20 KB field did not reach the backend whole")
	}
}

// TestIdleKeptAliveConnectionsAreCheap holds 200 kept-alive client
// connections between requests: each must cost the proxy a few KiB (its
// small input buffer, output buffer and goroutine stack), not the largest
// head and a response buffer.
func TestIdleKeptAliveConnectionsAreCheap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector inflates memory")
	}
	f := newFixture(t, fixtureOpts{n: 1})
	const n = 200
	inUse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	// Warm up pools and the backend connection.
	rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	before := inUse()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-01\r\n\r\n")
		readResponse(t, bufio.NewReader(c), "GET")
	}
	per := (int64(inUse()) - int64(before)) / n
	t.Logf("%d idle kept-alive connections: %.1f KiB each, client side included", n, float64(per)/1024)
	if per > 32<<10 {
		t.Errorf("each idle kept-alive connection costs %d KiB, want under 32", per>>10)
	}
}

func TestShutdownClosesAConnectionThatSentNothing(t *testing.T) {
	base := baselineBeforeFixture(t)
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.HeaderTimeout = time.Minute }})
	c := dialProxy(t, f.addr)
	// The kernel hands the connection over after deferAcceptSeconds; its
	// handler then waits for a first request.
	eventually.True(t, "a handler waiting for its connection's first request", func() bool {
		return waitingForRequest(f.proxy)
	})
	start := time.Now()
	if err := f.proxy.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown waited %v for a client that never sent a byte", took)
	}
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Errorf("after Shutdown the client read %q, %v; want the connection closed with nothing", got, err)
	}
	c.Close()
	f.backends[0].Kill()
	base.Wait(t, 5*time.Second)
}

func TestKeptAliveClientIsClosedAfterIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.IdleTimeout = idle }})
	c := dialProxy(t, f.addr)
	// The idle timeout runs from the response, which the proxy writes
	// before this goroutine reads it, however late it runs: the time is
	// taken before the request.
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(c)
	if resp, _ := readResponse(t, r, "GET"); resp.Close {
		t.Fatal("the first response closed the connection")
	}
	if b, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("waiting on the idle connection: %q, %v; want the proxy to close it", b, err)
	}
	if took := time.Since(start); took < idle-50*time.Millisecond || took > 2*time.Second {
		t.Errorf("closed after %v, want about %v", took, idle)
	}
}

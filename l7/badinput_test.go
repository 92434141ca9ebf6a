package l7

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// countingBackend accepts connections and records every byte each one
// carries, answering nothing: a request that reaches it at all shows up as
// bytes. The one request it answers is a marker (see forwarded), which
// lets a test know when lbctl has passed on everything it was sent before.
type countingBackend struct {
	addr  string
	bytes atomic.Int64 // received so far, on connections that carried no marker

	markers atomic.Int64 // markers sent, to name each
	mu      sync.Mutex
	conns   []*countedConn // in the order they were accepted
	byConn  map[net.Conn]*countedConn
}

// countedConn is what one connection to a countingBackend carried.
type countedConn struct {
	bytes  atomic.Int64
	marker string        // the marker's target, if it carried one; under mu
	done   chan struct{} // closed once the connection has ended
}

// markerPath starts the target of every marker request.
const markerPath = "/lbctl-test-marker/"

func startCountingBackend(t *testing.T) *countingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBackend{addr: ln.Addr().String(), byConn: map[net.Conn]*countedConn{}}
	serveRaw(t, countedListener{ln, cb}, cb.serve)
	return cb
}

// countedListener registers each connection as it is accepted, in the
// order the connections were opened.
type countedListener struct {
	net.Listener
	cb *countingBackend
}

func (l countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.cb.mu.Lock()
	rec := &countedConn{done: make(chan struct{})}
	l.cb.conns = append(l.cb.conns, rec)
	l.cb.byConn[c] = rec
	l.cb.mu.Unlock()
	return c, nil
}

// serve counts what c carries, as it arrives, until c ends; a connection
// that starts with a marker request gets 204 and is closed instead.
func (cb *countingBackend) serve(c net.Conn) {
	cb.mu.Lock()
	rec := cb.byConn[c]
	cb.mu.Unlock()
	defer close(rec.done)
	marker := "GET " + markerPath
	var head []byte
	buf := make([]byte, 4096)
	for len(head) < len(marker) && strings.HasPrefix(marker, string(head)) {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	if strings.HasPrefix(string(head), marker) {
		for !strings.Contains(string(head), "\r\n\r\n") {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			head = append(head, buf[:n]...)
		}
		target, _, _ := strings.Cut(string(head[len("GET "):]), " ")
		cb.mu.Lock()
		rec.marker = target
		cb.mu.Unlock()
		io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
		return
	}
	rec.bytes.Add(int64(len(head)))
	cb.bytes.Add(int64(len(head)))
	for {
		n, err := c.Read(buf)
		rec.bytes.Add(int64(n))
		cb.bytes.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// forwarded sends a marker request through the proxy at proxyAddr on a new
// connection and, once the backend has answered it, waits for every
// connection accepted before the marker's to end (lbctl closes it, or its
// 5 s deadline passes); it returns how many bytes those connections
// carried. lbctl handles a request before it answers it, and connections
// are accepted in the order they were opened, so bytes sent for any
// request answered before the call are counted, however late they arrive.
// Only the test's goroutine may call it.
func (cb *countingBackend) forwarded(t *testing.T, proxyAddr string) int64 {
	t.Helper()
	target := fmt.Sprintf("%s%d", markerPath, cb.markers.Add(1))
	got := rawExchange(t, proxyAddr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 204 ") {
		t.Fatalf("marker %s: answer %.80q, want the backend's 204", target, got)
	}
	cb.mu.Lock()
	var before []*countedConn
	found := false
	for _, rec := range cb.conns {
		if rec.marker == target {
			found = true
			break
		}
		before = append(before, rec)
	}
	cb.mu.Unlock()
	if !found {
		t.Fatalf("marker %s was answered but the backend has no record of it", target)
	}
	var n int64
	for _, rec := range before {
		<-rec.done
		cb.mu.Lock()
		if rec.marker == "" {
			n += rec.bytes.Load()
		}
		cb.mu.Unlock()
	}
	return n
}

func newRawFixture(t *testing.T, addr string, configure func(*Proxy)) string {
	t.Helper()
	return startProxy(t, addr, func(p *Proxy) {
		p.ConnectTimeout, p.ServerTimeout = time.Second, 2*time.Second
		if configure != nil {
			configure(p)
		}
	})
}

func TestAmbiguousFramingIsRejectedBeforeTheBackend(t *testing.T) {
	const h = "POST / HTTP/1.1\r\nHost: x\r\n"
	tests := []struct{ name, raw, status string }{
		{"CL and TE", h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"two different CL", h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "400"},
		{"TE chunked twice", h + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE gzip, chunked", h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "400"},
		{"two TE fields", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"empty CL", h + "Content-Length: \r\n\r\n", "400"},
		{"signed CL", h + "Content-Length: +5\r\n\r\nhello", "400"},
		{"non-numeric CL", h + "Content-Length: 5a\r\n\r\nhello", "400"},
		{"space before colon", h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "400"},
		{"NUL in value", h + "X-A: a\x00b\r\n\r\n", "400"},
		{"control byte in value", h + "X-A: a\x01b\r\n\r\n", "400"},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", "400"},
		{"bare CR in value", h + "X-A: a\rb\r\n\r\n", "400"},
		{"obs-fold", h + "X-A: a\r\n b\r\n\r\n", "400"},
		{"bad chunk size", h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size overflow", h + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", "400"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
		{"HTTP/2 version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := startCountingBackend(t)
			addr := newRawFixture(t, cb.addr, nil)
			got := rawExchange(t, addr, tt.raw)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tt.status+" ") {
				t.Errorf("answer %.60q, want status %s", got, tt.status)
			}
			if !strings.Contains(got, "Connection: close") {
				t.Errorf("answer %.200q does not close the connection", got)
			}
			if n := cb.forwarded(t, addr); n != 0 {
				t.Errorf("%d bytes reached the backend", n)
			}
		})
	}
}

func TestOversizedHeadGets431(t *testing.T) {
	cb := startCountingBackend(t)
	addr := newRawFixture(t, cb.addr, func(p *Proxy) { p.MaxHeaderBytes = 4096 })
	got := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 5000)+"\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("answer %.60q, want 431", got)
	}
	if n := cb.forwarded(t, addr); n != 0 {
		t.Errorf("%d bytes reached the backend", n)
	}
}

func TestSlowHeadIsCutAtHeaderTimeout(t *testing.T) {
	cb := startCountingBackend(t)
	addr := newRawFixture(t, cb.addr, func(p *Proxy) { p.HeaderTimeout = 200 * time.Millisecond })
	c := dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	got, _ := io.ReadAll(c)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cut after %v, want about 200ms", took)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
		t.Errorf("answer %.60q, want 408", got)
	}

	// A connection that sends nothing is closed silently at the same limit
	// (counted from when the kernel hands it over: see deferAccept),
	// well before the client's own 5 s deadline.
	c2 := dialProxy(t, addr)
	got, err := io.ReadAll(c2)
	if err != nil || len(got) != 0 {
		t.Errorf("silent client got %q, %v; want the connection closed with nothing", got, err)
	}
	if n := cb.forwarded(t, addr); n != 0 {
		t.Errorf("%d bytes reached the backend", n)
	}
}

func TestNoBackendGets503AtOnce(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	for _, b := range f.registry.All() {
		b.SetAdmin(backend.Maint, time.Time{})
	}
	start := time.Now()
	got := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Errorf("answer %.60q, want 503", got)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("503 after %v, want at once", took)
	}
	f.registry.Get("app-02").SetAdmin(backend.Ready, time.Time{})
	if id, _ := get(t, f.client(t), f.url("/")); id != "app-02" {
		t.Errorf("after app-02 returned: answered by %q", id)
	}
}

func TestAllBackendsDownGets503(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	for _, b := range f.backends {
		b.Kill()
	}
	got := rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") {
		t.Errorf("answer %.60q, want 503 when every connect fails", got)
	}
}

// scriptedBackend runs fn on every connection it accepts, after reading the
// request head.
func scriptedBackend(t *testing.T, fn func(c net.Conn)) string {
	t.Helper()
	return rawBackend(t, func(c net.Conn) {
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for !strings.Contains(string(buf), "\r\n\r\n") {
			n, err := c.Read(tmp)
			if err != nil {
				return
			}
			buf = append(buf, tmp[:n]...)
		}
		fn(c)
	})
}

func TestBackendFailingAfterRequestGets502(t *testing.T) {
	addr := scriptedBackend(t, func(c net.Conn) {}) // reads the head, closes
	proxy := newRawFixture(t, addr, nil)
	got := rawExchange(t, proxy, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Errorf("answer %.60q, want 502", got)
	}
}

func TestIdempotentRequestIsRetriedOnAnotherBackend(t *testing.T) {
	var broken atomic.Int64
	bad := scriptedBackend(t, func(c net.Conn) { broken.Add(1) })
	good := scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ngood\n")
	})
	reg, _ := backend.NewRegistry([]*backend.Backend{backend.New("bad", bad, 1), backend.New("good", good, 1)})
	// With fall=1 the failure marks "bad" down, so only the first GET
	// meets it.
	pool := backend.NewPool(reg)
	health := &backend.Prober{Pool: pool, Checker: &backend.TCPCheck{}, Rise: 1, Fall: 1}
	p := &Proxy{Pool: pool, Selector: &backend.RoundRobin{}, Cookie: defaultCookie(), Health: health}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(ln)
	defer p.Close()
	for i := range 2 { // the first goes to "bad" (round robin) and is retried
		got := rawExchange(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "Set-Cookie: SERVERID=good;") {
			t.Errorf("GET %d: answer %q, want 200 from good with its cookie", i, got)
		}
	}
	if broken.Load() != 1 {
		t.Errorf("bad backend saw %d requests, want 1", broken.Load())
	}
	if reg.Get("bad").Available() {
		t.Error("bad backend still available after failing an exchange with fall=1")
	}
	// A POST is not replayed: it gets 502.
	reg.Get("bad").Observe(true, 1, 1)
	p2 := &Proxy{Pool: pool, Selector: &backend.RoundRobin{}, Cookie: defaultCookie()}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go p2.Serve(ln2)
	defer p2.Close()
	got := rawExchange(t, ln2.Addr().String(), "POST / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=bad\r\nContent-Length: 2\r\n\r\nhi")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Errorf("POST to a failing backend: %.60q, want 502", got)
	}
}

func TestSlowBackendGets504(t *testing.T) {
	// The backend reads the request and answers nothing until the proxy
	// gives up and closes the connection.
	addr := scriptedBackend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	proxy := newRawFixture(t, addr, func(p *Proxy) { p.ServerTimeout = 200 * time.Millisecond })
	start := time.Now()
	got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 504 ") {
		t.Errorf("answer %.60q, want 504", got)
	}
	// The backend never ends the exchange itself (its deadline is 5 s):
	// an answer within 2 s is the proxy's timeout.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("504 after %v, want about 200ms", took)
	}
}

func TestBadResponseFromBackendGets502(t *testing.T) {
	for name, resp := range map[string]string{
		"garbage":  "NOT HTTP\r\n\r\n",
		"CL+TE":    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"two CL":   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"too long": "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			addr := scriptedBackend(t, func(c net.Conn) { io.WriteString(c, resp) })
			proxy := newRawFixture(t, addr, nil)
			got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
				t.Errorf("answer %.60q, want 502", got)
			}
		})
	}
}

func TestFirstChunkLineIsCheckedWithoutDisturbingTheHead(t *testing.T) {
	accepted := make(chan *net.TCPConn, 1)
	f := newFixture(t, fixtureOpts{n: 1, accepted: accepted, configure: func(p *Proxy) { p.MaxHeaderBytes = 4096 }})
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("p", n) + "\r\n" }
	head := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"

	// The body follows once the proxy has read the head: the size line is
	// read into the free end of the buffer and the request goes through
	// intact.
	c := dialProxy(t, f.addr)
	io.WriteString(c, head+pad(3000)+"\r\n")
	waitReadByProxy(t, c, <-accepted)
	io.WriteString(c, "5\r\nhello\r\n0\r\n\r\n")
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "HTTP/1.1 200 ") || !strings.HasSuffix(string(got), "hello") {
		t.Errorf("answer %q, want 200 echoing hello", got)
	}
	if h := f.backends[0].lastHeader(); len(h.Get("X-Pad")) != 3000 {
		t.Errorf("X-Pad reached the backend with %d bytes, want 3000", len(h.Get("X-Pad")))
	}

	// A size line that cannot fit behind a head that fills the buffer is
	// refused rather than moved over the head: not one byte is forwarded.
	cb := startCountingBackend(t)
	addr := newRawFixture(t, cb.addr, func(p *Proxy) { p.MaxHeaderBytes = 4096 })
	big := head + pad(4096-len(head)-len("X-Pad: \r\n")-2-1) + "\r\n"
	got2 := rawExchange(t, addr, big+"5\r\nhello\r\n0\r\n\r\n")
	if !strings.HasPrefix(got2, "HTTP/1.1 400 ") {
		t.Errorf("answer %.60q, want 400", got2)
	}
	if n := cb.forwarded(t, addr); n != 0 {
		t.Errorf("%d bytes reached the backend", n)
	}
}

package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// httpBackend is a killable HTTP backend on loopback (see
// testbackend.StartHTTP) that answers with its id and remembers the last
// request's header, so tests can see what lbctl forwarded; its paths
// below give the framings the tests need.
type httpBackend struct {
	*testbackend.Backend
	id, addr string
	bigDone  chan error // how the last /big response ended

	mu       sync.Mutex
	last     http.Header
	arrivals map[string]int // requests that reached the handler, by target
	arrival  chan struct{}  // closed and replaced on every arrival

	held        chan struct{} // closed by releaseHeld: /hold answers then
	releaseHeld func()
}

// startHTTPBackend starts an httpBackend, killed when the test ends.
func startHTTPBackend(t testing.TB, id string) *httpBackend {
	t.Helper()
	hb := &httpBackend{id: id, bigDone: make(chan error, 1), arrivals: map[string]int{}, arrival: make(chan struct{}), held: make(chan struct{})}
	hb.releaseHeld = sync.OnceFunc(func() { close(hb.held) })
	b, err := testbackend.StartHTTP(id, hb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hb.releaseHeld()
		b.Kill()
	})
	hb.Backend, hb.addr = b, b.Addr()
	return hb
}

// revive listens again on hb's address.
func (hb *httpBackend) revive(t testing.TB) {
	t.Helper()
	if err := hb.Revive(); err != nil {
		t.Fatal(err)
	}
}

func (hb *httpBackend) lastHeader() http.Header {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.last
}

// awaitArrivals waits until n requests for target (path and query as
// sent) have reached the handler, which is when lbctl has forwarded their
// heads. It returns an error after within, and never fails the test
// itself, so any goroutine may call it.
func (hb *httpBackend) awaitArrivals(target string, n int, within time.Duration) error {
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for {
		hb.mu.Lock()
		got, next := hb.arrivals[target], hb.arrival
		hb.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-next:
		case <-timeout.C:
			return fmt.Errorf("%s: %d requests for %s arrived within %v, want %d", hb.id, got, target, within, n)
		}
	}
}

// ServeHTTP serves every request but health checks, which testbackend
// answers.
func (hb *httpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hb.mu.Lock()
	hb.last = r.Header.Clone()
	hb.arrivals[r.RequestURI]++
	close(hb.arrival)
	hb.arrival = make(chan struct{})
	hb.mu.Unlock()
	w.Header().Set("X-Backend", hb.id)
	switch r.URL.Path {
	case "/echo":
		// Echo while the body still arrives; net/http needs to be told.
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	case "/sink":
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d %v\n", hb.id, n, err)
	case "/204":
		w.WriteHeader(http.StatusNoContent)
	case "/304":
		w.WriteHeader(http.StatusNotModified)
	case "/chunked":
		for i := range 3 {
			fmt.Fprintf(w, "%s part %d\n", hb.id, i)
			w.(http.Flusher).Flush()
		}
	case "/cached":
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintln(w, hb.id)
	case "/big":
		// 256 MiB, far more than socket buffers hold; reports how the
		// write ended.
		chunk := make([]byte, 1<<20)
		var err error
		for i := 0; i < 256 && err == nil; i++ {
			_, err = w.Write(chunk)
		}
		select {
		case hb.bigDone <- err:
		default:
		}
	case "/trailers":
		// A response with a trailer, which reports the body and the
		// trailer of the request.
		w.Header().Set("Trailer", "X-Checksum")
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d %v %s\n", hb.id, n, err, r.Trailer.Get("X-Request-Sum"))
		w.Header().Set("X-Checksum", "sum-"+hb.id)
	case "/early":
		// 103 Early Hints before the response.
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		fmt.Fprintln(w, hb.id)
	case "/page":
		// A page for a browser, whose icon is inline: a browser asks for
		// /favicon.ico only when the page names none.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><link rel=\"icon\" href=\"data:,\"><body>%s</body>\n", hb.id)
	case "/hold":
		// A request that stays in flight until the test calls
		// releaseHeld, or the client goes.
		select {
		case <-hb.held:
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, hb.id)
	case "/slow":
		// A backend that takes its time, on purpose: the request stays
		// in flight while a test acts on the proxy.
		time.Sleep(2 * time.Second)
		fmt.Fprintln(w, hb.id)
	default:
		fmt.Fprintln(w, hb.id)
	}
}

// fixture is an L7 proxy over n httpBackends.
type fixture struct {
	addr     string
	ln       net.Listener // the listener the proxy serves
	proxy    *Proxy
	registry *backend.Registry // the pool the fixture started with
	pool     *backend.Pool
	backends []*httpBackend
	byID     map[string]*httpBackend
}

type fixtureOpts struct {
	n         int
	cookie    CookieOptions
	prober    bool
	configure func(p *Proxy)
	// accepted, when not nil, receives the proxy's side of every
	// connection it accepts (see acceptWatch).
	accepted chan *net.TCPConn
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{byID: map[string]*httpBackend{}}
	var bs []*backend.Backend
	for i := range o.n {
		hb := startHTTPBackend(t, fmt.Sprintf("app-%02d", i+1))
		f.backends = append(f.backends, hb)
		f.byID[hb.id] = hb
		bs = append(bs, backend.New(hb.id, hb.addr, 1))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		t.Fatal(err)
	}
	f.registry = reg
	f.pool = backend.NewPool(reg)
	if o.cookie.Name == "" {
		o.cookie = defaultCookie()
	}
	f.proxy = &Proxy{
		Pool:           f.pool,
		Selector:       &backend.RoundRobin{},
		Cookie:         o.cookie,
		ConnectTimeout: time.Second,
		IdleTimeout:    10 * time.Second,
	}
	if o.prober {
		f.proxy.Health = &backend.Prober{Pool: f.pool, Checker: &backend.HTTPCheck{Path: "/healthz"}, Rise: 1, Fall: 1, Timeout: time.Second}
	}
	if o.configure != nil {
		o.configure(f.proxy)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	if o.accepted != nil {
		ln = acceptWatch{ln.(*net.TCPListener), o.accepted}
	}
	f.ln = ln
	serveOn(t, f.proxy, ln)
	return f
}

// serveOn runs p on ln until the test ends; then it closes p and checks
// that Serve ended as a close ends it.
func serveOn(t testing.TB, p *Proxy, ln net.Listener) {
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	awaitLoops(t, p, ln)
	t.Cleanup(func() {
		p.Close()
		if err := <-served; !errors.Is(err, ErrProxyClosed) {
			t.Errorf("Serve returned %v, want ErrProxyClosed", err)
		}
	})
}

func defaultCookie() CookieOptions {
	return CookieOptions{Name: "SERVERID", MaxAge: time.Hour, Path: "/", HTTPOnly: true, SameSite: "lax"}
}

// client returns an HTTP client with its own cookie jar and keep-alive
// connections, as a browser would be.
func (f *fixture) client(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}
}

func (f *fixture) url(path string) string { return "http://" + f.addr + path }

// get performs a GET and returns the backend id that answered, and the
// response (body read and closed). It fails the test on an error, so only
// the test's goroutine may call it; others call tryGet.
func get(t testing.TB, c *http.Client, url string, hdr ...string) (string, *http.Response) {
	t.Helper()
	id, resp, err := tryGet(c, url, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return id, resp
}

// tryGet is get returning its error instead of failing the test.
func tryGet(c *http.Client, url string, hdr ...string) (string, *http.Response, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("GET %s: %w", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", nil, fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	return strings.TrimSpace(string(body)), resp, nil
}

// okGet is tryGet for a request that must be answered 200.
func okGet(c *http.Client, url string, hdr ...string) error {
	_, resp, err := tryGet(c, url, hdr...)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// rawExchange writes raw to a new connection and returns everything the
// proxy sends back until it closes the connection (or 5s pass). It fails
// the test on an error, so only the test's goroutine may call it; others
// call tryRawExchange.
func rawExchange(t testing.TB, addr, raw string) string {
	t.Helper()
	got, err := tryRawExchange(addr, raw)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// tryRawExchange is rawExchange returning its error instead of failing the
// test. Like rawExchange, it takes a connection still open after 5 s as
// the end of the answer.
func tryRawExchange(addr, raw string) (string, error) {
	c, err := dialDeadline(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		return "", fmt.Errorf("writing to the proxy: %w", err)
	}
	b, _ := io.ReadAll(c)
	return string(b), nil
}

// readResponse reads one response from r, for raw pipelined tests.
func readResponse(t testing.TB, r *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(b)
}

// rawBackend accepts connections on loopback and serves each with fn, under
// a 5 s deadline, until the test ends; it returns the address.
func rawBackend(t testing.TB, fn func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveRaw(t, ln, fn)
	return ln.Addr().String()
}

// serveRaw is rawBackend on a listener of the caller's; it closes ln when
// the test ends.
func serveRaw(t testing.TB, ln net.Listener, fn func(c net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fn(c)
			})
		}
	})
}

// dialProxy connects to addr with a 5 s deadline on everything; the
// connection is closed when the test ends. It fails the test on an error,
// so only the test's goroutine may call it; others call dialDeadline.
func dialProxy(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := dialDeadline(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialDeadline connects to addr with a 5 s deadline on everything; the
// caller closes the connection.
func dialDeadline(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

// acceptWatch is a listener that hands every connection to the proxy
// unchanged and also sends it on accepted (dropping it when the channel is
// full), so that a test can look at the proxy's side of a connection. Not
// being a *net.TCPListener, it also keeps the proxy from deferring accepts:
// a client that sends nothing is accepted at once.
type acceptWatch struct {
	*net.TCPListener
	accepted chan<- *net.TCPConn
}

func (l acceptWatch) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	select {
	case l.accepted <- c:
	default:
	}
	return c, nil
}

// goroutineIn reports whether some goroutine's stack has a frame whose
// function name contains fn, such as "(*connReader).waitByte": the only way
// to see from outside that a connection's handler has reached a given wait.
// It sees every proxy in the process; tests in this package do not run in
// parallel, and each closes its proxies when it ends.
func goroutineIn(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}

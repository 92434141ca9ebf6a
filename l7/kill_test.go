package l7

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// streamBackend is a backend that answers each request on a kept-alive
// connection: /stream with a chunked body that never ends (a chunk naming
// it every 2 ms), /hold with nothing at all, anything else with its id.
// It counts its open connections and the requests that arrived.
type streamBackend struct {
	id       string
	addr     string
	open     atomic.Int64
	requests atomic.Int64
}

func startStreamBackend(t *testing.T, id string) *streamBackend {
	t.Helper()
	sb := &streamBackend{id: id}
	sb.addr = rawBackend(t, func(c net.Conn) {
		sb.open.Add(1)
		defer sb.open.Add(-1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			sb.requests.Add(1)
			switch req.URL.Path {
			case "/stream":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				for range tick.C {
					if _, err := fmt.Fprintf(c, "%x\r\n%s\n\r\n", len(id)+1, id); err != nil {
						return
					}
				}
			case "/hold":
				// Until the proxy closes the connection.
				io.Copy(io.Discard, br)
				return
			default:
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s\n", len(id)+1, id)
			}
		}
	})
	return sb
}

// killFixture is a proxy over two streamBackends, with passive health
// checks that take a backend down at its first failure, so that any
// failure counted against a backend shows.
func killFixture(t *testing.T) (*Proxy, string, map[string]*streamBackend, *backend.Registry) {
	t.Helper()
	sbs := map[string]*streamBackend{}
	var bs []*backend.Backend
	for _, id := range []string{"app-01", "app-02"} {
		sbs[id] = startStreamBackend(t, id)
		bs = append(bs, backend.New(id, sbs[id].addr, 1))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		t.Fatal(err)
	}
	pool := backend.NewPool(reg)
	p := &Proxy{
		Pool: pool, Selector: &backend.RoundRobin{}, Cookie: defaultCookie(),
		Health: &backend.Prober{Pool: pool, Checker: &backend.HTTPCheck{Path: "/"}, Rise: 1, Fall: 1, Timeout: time.Second},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, p, ln)
	return p, ln.Addr().String(), sbs, reg
}

// openStream sends a GET of path with a cookie for id and, for /stream,
// reads the response head and the first chunk.
func openStream(t *testing.T, addr, path, id string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialProxy(t, addr)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=%s\r\n\r\n", path, id)
	br := bufio.NewReader(c)
	if path != "/stream" {
		return c, br
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("stream from %s: %v", id, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("stream from %s: status %d, Set-Cookie %q: not pinned there", id, resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	var chunk string
	for range 3 { // size, data, CRLF
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream from %s: first chunk: %v", id, err)
		}
		chunk += line
	}
	if want := fmt.Sprintf("%x\r\n%s\n\r\n", len(id)+1, id); chunk != want {
		t.Fatalf("stream from %s: first chunk %q, want %q", id, chunk, want)
	}
	return c, br
}

// TestCloseConnsCutsOnlyThatBackend puts app-02 into maintenance and
// closes its connections while a long response streams from each backend,
// a request waits for app-02's answer, and a kept-alive connection to
// app-02 idles: app-02's stream and the waiting request end with their
// client connections closed, app-02 has no connection left, app-01's
// stream keeps flowing, and app-02 is still up (the cut is not its fault)
// with the waiting request not tried on app-01.
func TestCloseConnsCutsOnlyThatBackend(t *testing.T) {
	p, addr, sbs, reg := killFixture(t)
	app01, app02 := reg.Get("app-01"), reg.Get("app-02")

	stream01, br01 := openStream(t, addr, "/stream", "app-01")
	stream02, br02 := openStream(t, addr, "/stream", "app-02")
	held, heldR := openStream(t, addr, "/hold", "app-02")
	eventually.True(t, "the held request to reach app-02", func() bool { return sbs["app-02"].requests.Load() == 2 })

	// A kept-alive connection to app-02, idle in the proxy's pool once
	// its response is read (the proxy releases it before it reads the
	// client's next request).
	c := dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-02\r\n\r\n")
	if resp, body := readResponse(t, bufio.NewReader(c), "GET"); strings.TrimSpace(body) != "app-02" {
		t.Fatalf("warm-up answered %d %q, want app-02", resp.StatusCode, body)
	}
	c.Close()
	if n := sbs["app-02"].open.Load(); n != 3 {
		t.Fatalf("app-02 has %d connections before the kill, want 3 (stream, held, idle)", n)
	}

	app02.SetAdmin(backend.Maint, time.Time{})
	p.CloseConns("app-02")

	// app-02's stream ends without its last chunk, and its client
	// connection closes.
	rest, err := io.ReadAll(br02)
	if err != nil && !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("app-02's stream after the kill: %v, want the connection closed", err)
	}
	if bytes.Contains(rest, []byte("\r\n0\r\n")) {
		t.Errorf("app-02's stream ended with its last chunk: %q", rest)
	}
	// The held request gets no answer: the connection closes.
	if got, err := io.ReadAll(heldR); len(got) != 0 || err != nil && !isReset(err) {
		t.Errorf("held request after the kill: %q, %v; want the connection closed with no answer", got, err)
	}
	eventually.True(t, "app-02 to have no connection", func() bool { return sbs["app-02"].open.Load() == 0 })

	// app-01's stream flows on: 50 more chunks.
	for i := range 50 {
		size, err := br01.ReadString('\n')
		if err != nil {
			t.Fatalf("app-01's stream after app-02's kill, chunk %d: %v", i, err)
		}
		data, err := br01.ReadString('\n')
		if err != nil || size != "7\r\n" || data != "app-01\n" {
			t.Fatalf("app-01's stream, chunk %d: %q %q %v", i, size, data, err)
		}
		br01.ReadString('\n')
	}
	stream01.Close()
	stream02.Close()
	held.Close()

	if !app02.Up() {
		t.Errorf("app-02 is down after the kill: the cut was counted against its health")
	}
	if n := sbs["app-01"].requests.Load(); n != 1 {
		t.Errorf("app-01 had %d requests, want 1 (the held request must not be retried there)", n)
	}
	if !app01.Up() {
		t.Errorf("app-01 is down")
	}

	// Back in service, app-02 answers its browsers again.
	app02.SetAdmin(backend.Ready, time.Time{})
	c = dialProxy(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-02\r\n\r\n")
	if resp, body := readResponse(t, bufio.NewReader(c), "GET"); strings.TrimSpace(body) != "app-02" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("app-02 ready again: answered %q with Set-Cookie %q, want app-02 and none", body, resp.Header.Get("Set-Cookie"))
	}
}

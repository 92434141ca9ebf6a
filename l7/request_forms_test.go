package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is one request as a backend parsed it.
type seenRequest struct {
	line   string // "METHOD target"
	header http.Header
	host   string
	body   string
}

// requestLog is a backend that parses what it receives with net/http's
// server-side parser, one request after another on each connection, records
// every request, and answers each with "ok". Whatever lbctl sends that a
// backend would take for a second request shows up as one.
type requestLog struct {
	addr string
	mu   sync.Mutex
	seen []seenRequest
	cond *sync.Cond
}

func startRequestLog(t *testing.T) *requestLog {
	t.Helper()
	rl := &requestLog{}
	rl.cond = sync.NewCond(&rl.mu)
	rl.addr = rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			rl.mu.Lock()
			rl.seen = append(rl.seen, seenRequest{line: req.Method + " " + req.RequestURI, header: req.Header, host: req.Host, body: string(body)})
			rl.cond.Broadcast()
			rl.mu.Unlock()
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return rl
}

// requests returns what the backend has parsed so far.
func (rl *requestLog) requests() []seenRequest {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return slices.Clone(rl.seen)
}

// waitMarker sends a marker request through the proxy on a connection of
// its own and waits until the backend has parsed it; everything sent before
// it on other connections that was going to arrive has arrived by then
// (each connection is served in order, and the marker's own connection is
// fresh). It returns the requests seen before the marker.
func (rl *requestLog) waitMarker(t *testing.T, proxy string) []seenRequest {
	t.Helper()
	marker := fmt.Sprintf("/marker-%d", time.Now().UnixNano())
	got := rawExchange(t, proxy, "GET "+marker+" HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("marker request: %.80q, want 200", got)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for i, r := range rl.seen {
		if r.line == "GET "+marker {
			before := slices.Clone(rl.seen[:i])
			rl.seen = rl.seen[:0]
			return before
		}
	}
	t.Fatalf("the backend answered the marker but did not record it")
	return nil
}

func requestLines(rs []seenRequest) []string {
	lines := make([]string, len(rs))
	for i, r := range rs {
		lines[i] = r.line
	}
	return lines
}

// TestConnectionCannotUnframeARequest is the smuggling of issue 9: a client
// that names Content-Length (or Transfer-Encoding, or Host) in Connection
// must not make lbctl drop the framing while it still sends the body, or
// the backend reads the body as a second request.
func TestConnectionCannotUnframeARequest(t *testing.T) {
	rl := startRequestLog(t)
	proxy := newRawFixture(t, rl.addr, nil)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name, raw string
		want      []string
		body      string
	}{
		{"POST, Connection: Content-Length",
			"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nConnection: close\r\nContent-Length: 35\r\n\r\n" + smuggled,
			[]string{"POST /"}, smuggled},
		{"POST, Connection: close, Content-Length",
			"POST / HTTP/1.1\r\nHost: a\r\nConnection: close, Content-Length\r\nContent-Length: 35\r\n\r\n" + smuggled,
			[]string{"POST /"}, smuggled},
		{"GET, Connection: Content-Length",
			"GET / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nConnection: close\r\nContent-Length: 35\r\n\r\n" + smuggled,
			[]string{"GET /"}, smuggled},
		{"chunked, Connection: Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding, close\r\nTransfer-Encoding: chunked\r\n\r\n23\r\n" + smuggled + "\r\n0\r\n\r\n",
			[]string{"POST /"}, smuggled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, proxy, tt.raw)
			if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
				t.Errorf("answer %.80q, want 200", got)
			}
			seen := rl.waitMarker(t, proxy)
			if lines := requestLines(seen); !slices.Equal(lines, tt.want) {
				t.Fatalf("the backend parsed %q, want %q", lines, tt.want)
			}
			if seen[0].body != tt.body {
				t.Errorf("the backend read the body %q, want %q", seen[0].body, tt.body)
			}
		})
	}

	t.Run("Connection: Host", func(t *testing.T) {
		got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Host, close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Errorf("answer %.80q, want 200", got)
		}
		seen := rl.waitMarker(t, proxy)
		if len(seen) != 1 || seen[0].host != "a" {
			t.Errorf("the backend saw %+v, want one request with Host a", seen)
		}
	})
}

// TestConnectionCannotUnframeAResponse: a response naming Content-Length in
// Connection still reaches the client framed, on a connection that stays
// usable.
func TestConnectionCannotUnframeAResponse(t *testing.T) {
	addr := scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: Content-Length, X-Hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello")
	})
	proxy := newRawFixture(t, addr, nil)
	c := dialProxy(t, proxy)
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, body := readResponse(t, br, "GET")
		if resp.ContentLength != 5 || body != "hello" || resp.Close {
			t.Fatalf("response %d: Content-Length %d, body %q, close %v; want 5, hello, kept alive", i, resp.ContentLength, body, resp.Close)
		}
		if resp.Header.Get("X-Hop") != "" {
			t.Errorf("response %d: X-Hop, named in Connection, reached the client", i)
		}
	}
}

// TestRequestTargetAndHostAreForwardedAsChecked covers the routing half of
// issue 9: the authority of an absolute-form target replaces Host and the
// backend gets origin-form; malformed targets and Hosts never leave lbctl.
func TestRequestTargetAndHostAreForwardedAsChecked(t *testing.T) {
	rl := startRequestLog(t)
	proxy := newRawFixture(t, rl.addr, nil)
	accepted := []struct {
		name, raw        string
		wantLine, wantHo string
	}{
		{"absolute-form with a conflicting Host", "GET http://b/x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /x?y=1", "b"},
		{"absolute-form with an empty path", "GET HTTP://b:8080 HTTP/1.1\r\nHost: b:8080\r\nConnection: close\r\n\r\n", "GET /", "b:8080"},
		{"absolute-form OPTIONS", "OPTIONS http://b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", "OPTIONS *", "b"},
		{"leading empty lines", "\r\n\r\n\r\nGET /after-blank HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /after-blank", "a"},
		{"HTTP/1.2 is served as HTTP/1.1", "GET /v12 HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /v12", "a"},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, proxy, tt.raw)
			if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
				t.Errorf("answer %.80q, want 200", got)
			}
			seen := rl.waitMarker(t, proxy)
			if len(seen) != 1 || seen[0].line != tt.wantLine || seen[0].host != tt.wantHo {
				t.Errorf("the backend saw %q (Host %v), want %q with Host %q", requestLines(seen), hosts(seen), tt.wantLine, tt.wantHo)
			}
		})
	}

	refused := []struct{ name, raw, status string }{
		{"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "400"},
		{"Host with a path", "GET / HTTP/1.1\r\nHost: a/../admin\r\n\r\n", "400"},
		{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", "400"},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "400"},
		{"GET !", "GET ! HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"GET admin", "GET admin HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"dot-dot target", "GET ../../../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"fragment", "GET http://hostname#frag HTTP/1.1\r\nHost: hostname\r\n\r\n", "400"},
		{"userinfo", "GET http://u:p@b/ HTTP/1.1\r\nHost: b\r\n\r\n", "400"},
		{"asterisk on GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"CONNECT hostname", "CONNECT hostname HTTP/1.1\r\nHost: hostname\r\n\r\n", "501"},
		{"CONNECT /", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", "501"},
		{"CONNECT authority", "CONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: b\r\n\r\n", "501"},
		{"too many empty lines", strings.Repeat("\r\n", 2*(maxBlankHeads+1)) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, proxy, tt.raw)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tt.status+" ") || !strings.Contains(got, "Connection: close") {
				t.Errorf("answer %.80q, want %s and the connection closed", got, tt.status)
			}
			if seen := rl.waitMarker(t, proxy); len(seen) != 0 {
				t.Errorf("the backend saw %q, want nothing", requestLines(seen))
			}
		})
	}
}

func hosts(rs []seenRequest) []string {
	hs := make([]string, len(rs))
	for i, r := range rs {
		hs[i] = r.host
	}
	return hs
}

// TestClientForwardingFieldsAreNotTrusted: a client's Forwarded and
// X-Forwarded-Host never reach the backend, as a client's X-Forwarded-For
// never does.
func TestClientForwardingFieldsAreNotTrusted(t *testing.T) {
	rl := startRequestLog(t)
	proxy := newRawFixture(t, rl.addr, nil)
	got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6;host=evil\r\n"+
		"X-Forwarded-Host: evil\r\nX-Forwarded-For: 6.6.6.6\r\nX-Kept: yes\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("answer %.80q, want 200", got)
	}
	seen := rl.waitMarker(t, proxy)
	if len(seen) != 1 {
		t.Fatalf("the backend saw %q, want one request", requestLines(seen))
	}
	h := seen[0].header
	for _, name := range []string{"Forwarded", "X-Forwarded-Host"} {
		if v := h.Values(name); len(v) > 0 {
			t.Errorf("client's %s reached the backend: %q", name, v)
		}
	}
	if got := h.Values("X-Forwarded-For"); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got)
	}
	if h.Get("X-Kept") != "yes" {
		t.Errorf("an end-to-end field was lost: %v", h)
	}
}

// TestResponseTransferCodingsAreKept: a backend's gzip coding under chunked
// reaches the client as sent, and chunked applied twice is refused.
func TestResponseTransferCodingsAreKept(t *testing.T) {
	const body = "5\r\nhello\r\n0\r\n\r\n"
	gz := scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"+body)
	})
	got := rawExchange(t, newRawFixture(t, gz, nil), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.Contains(got, "\r\nTransfer-Encoding: gzip, chunked\r\n") || !strings.HasSuffix(got, body) {
		t.Errorf("answer %q, want Transfer-Encoding: gzip, chunked and the chunks", got)
	}

	twice := scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"+body)
	})
	got = rawExchange(t, newRawFixture(t, twice, nil), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
		t.Errorf("answer %.80q, want 502", got)
	}
}

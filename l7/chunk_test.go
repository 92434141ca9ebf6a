package l7

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// bodyRecorder is a raw backend that reads one request with a chunked
// body (whose data holds no CRLF), hands the body's bytes as received to
// got, and answers 200 "ok".
func bodyRecorder(t *testing.T, got chan<- string) string {
	t.Helper()
	return rawBackend(t, func(c net.Conn) {
		var buf []byte
		tmp := make([]byte, 4096)
		for {
			_, body, ok := bytes.Cut(buf, []byte("\r\n\r\n"))
			// The body is whole after the last chunk and the empty line
			// that ends its trailers.
			if ok && bytes.Contains(body, []byte("\n0\r\n")) && bytes.HasSuffix(body, []byte("\r\n\r\n")) {
				got <- string(body)
				break
			}
			n, err := c.Read(tmp)
			if err != nil {
				got <- "read: " + err.Error()
				return
			}
			buf = append(buf, tmp[:n]...)
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
}

// TestChunkSizeLinesAreLbctlsOwn: extensions are dropped and sizes written
// in lower-case hex without leading zeros, so a backend never has to parse
// the client's own spelling of a chunk-size line.
func TestChunkSizeLinesAreLbctlsOwn(t *testing.T) {
	got := make(chan string, 1)
	proxy := newRawFixture(t, bodyRecorder(t, got), nil)
	answer := rawExchange(t, proxy, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"00A ; name = \"quoted \\\" value\"\r\n0123456789\r\n5;a;b=c\r\nhello\r\n0;last=1\r\nX-T: 1\r\n\r\n")
	if !strings.HasPrefix(answer, "HTTP/1.1 200 ") {
		t.Fatalf("answer %.60q, want 200", answer)
	}
	if body, want := <-got, "a\r\n0123456789\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"; body != want {
		t.Errorf("backend got body %q, want %q", body, want)
	}
}

// TestMalformedFirstChunkExtensionReachesNoBackend: the first chunk-size
// line, extensions included, is checked before a backend is chosen.
func TestMalformedFirstChunkExtensionReachesNoBackend(t *testing.T) {
	var conns atomic.Int64
	addr := requestBackend(t, func(c net.Conn, conn int, method, target string) {
		conns.Store(int64(conn))
		io.WriteString(c, ownResponse(target, conn))
	})
	proxy := newRawFixture(t, addr, nil)
	for _, ext := range []string{";", ";a=", ";a=\"b", "; =b", ";a b", " x"} {
		got := rawExchange(t, proxy, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5"+ext+"\r\nhello\r\n0\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
			t.Errorf("extension %q: answer %.60q, want 400", ext, got)
		}
	}
	// A request that is forwarded reaches the backend after any that
	// would have been: it must be the first the backend sees.
	got := rawExchange(t, proxy, "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasSuffix(got, "own /after on 1") {
		t.Errorf("answer %q, want the backend's first connection to carry it", got)
	}
}

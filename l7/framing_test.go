package l7

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

// untilCloseBackend answers every request with a body that ends when it
// closes the connection: no Content-Length, no Transfer-Encoding (as PHP's
// built-in server does), or with the given Transfer-Encoding.
func untilCloseBackend(t *testing.T, te, body string) string {
	t.Helper()
	return scriptedBackend(t, func(c net.Conn) {
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
		if te != "" {
			head += "Transfer-Encoding: " + te + "\r\n"
		}
		io.WriteString(c, head+"\r\n"+body)
	})
}

// TestUntilCloseBodyIsRechunkedForHTTP11: the body is re-framed as chunked,
// so the client's kept-alive connection carries the next request.
func TestUntilCloseBodyIsRechunkedForHTTP11(t *testing.T) {
	body := strings.Repeat("delimited by close\n", 1000)
	proxy := newRawFixture(t, untilCloseBackend(t, "", body), nil)
	c := dialProxy(t, proxy)
	r := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, got := readResponse(t, r, "GET")
		if resp.StatusCode != 200 || got != body {
			t.Fatalf("request %d: %d, %d bytes of body; want 200 and the %d bytes", i, resp.StatusCode, len(got), len(body))
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.Close {
			t.Errorf("request %d: Transfer-Encoding %v, close %v; want chunked on a kept-alive connection", i, resp.TransferEncoding, resp.Close)
		}
	}
}

// TestUntilCloseBodyIsRelayedUntilCloseForHTTP10: an HTTP/1.0 client has no
// chunked framing, so the body runs until lbctl closes its connection.
func TestUntilCloseBodyIsRelayedUntilCloseForHTTP10(t *testing.T) {
	body := strings.Repeat("delimited by close\n", 1000)
	proxy := newRawFixture(t, untilCloseBackend(t, "", body), nil)
	got := rawExchange(t, proxy, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	head, gotBody, _ := strings.Cut(got, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") || strings.Contains(head, "Transfer-Encoding") || !strings.Contains(head, "Connection: close") {
		t.Errorf("head %q, want 200 without framing, closing", head)
	}
	if gotBody != body {
		t.Errorf("body of %d bytes, want the %d the backend sent", len(gotBody), len(body))
	}
}

// TestChunkedNotFinalIsRelayedUntilClose: with chunked not the final
// coding, the body runs until the backend closes; the client gets the
// backend's Transfer-Encoding as it was, the bytes as they came, and the
// end of its connection as the end of the body.
func TestChunkedNotFinalIsRelayedUntilClose(t *testing.T) {
	body := "5\r\nhello\r\n0\r\n\r\n then gzip bytes"
	proxy := newRawFixture(t, untilCloseBackend(t, "chunked, gzip", body), nil)
	got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	head, gotBody, _ := strings.Cut(got, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") || !strings.Contains(head, "\r\nTransfer-Encoding: chunked, gzip") || !strings.Contains(head, "Connection: close") {
		t.Errorf("head %q, want 200 with the backend's Transfer-Encoding, closing", head)
	}
	if gotBody != body {
		t.Errorf("body %q, want %q", gotBody, body)
	}
}

// TestChunkedFinalKeepsItsCodings: "gzip, chunked" reaches the client with
// its codings, and the chunks as lbctl checked them.
func TestChunkedFinalKeepsItsCodings(t *testing.T) {
	proxy := newRawFixture(t, untilCloseBackend(t, "gzip, chunked", "5;x=y\r\nhello\r\n0\r\n\r\n"), nil)
	got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	head, gotBody, _ := strings.Cut(got, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") || !strings.Contains(head, "\r\nTransfer-Encoding: gzip, chunked") {
		t.Errorf("head %q, want 200 with Transfer-Encoding: gzip, chunked", head)
	}
	if want := "5\r\nhello\r\n0\r\n\r\n"; gotBody != want {
		t.Errorf("body %q, want %q", gotBody, want)
	}
}

package l7

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2BenchClient is an HTTP/2 client connection that sends one request
// head again and again and reads each answer to its end, allocating
// little, so that what a benchmark counts is mostly the proxy's.
type h2BenchClient struct {
	c     *tls.Conn
	fr    *http2.Framer
	block []byte // the request's header block, fields never indexed
	next  uint32 // the next stream id
}

func dialH2Bench(b testing.TB, addr string, fields ...string) *h2BenchClient {
	b.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		b.Fatal(err)
	}
	h := &h2BenchClient{c: c, fr: http2.NewFramer(c, c), next: 1}
	h.fr.SetReuseFrames()
	// A large window: the client never has to send WINDOW_UPDATE.
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	if err := h.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		// Never indexed: every copy of the block decodes alike whatever
		// the decoder's table holds.
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	h.block = buf.Bytes()
	return h
}

// roundTrip sends the request on a new stream and reads frames until its
// response ends, and returns the response's DATA bytes.
func (h *h2BenchClient) roundTrip(b testing.TB) int {
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block, EndStream: true, EndHeaders: true}); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return n
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				n += len(f.Data())
				if f.StreamEnded() {
					return n
				}
			}
		case *http2.RSTStreamFrame:
			b.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			b.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
}

// BenchmarkH2RawStickyRequest is BenchmarkTLSStickyRequest over HTTP/2: a
// browser's request with a valid persistence cookie, one stream after
// another on one connection. The client's TLS work is in the figures, and
// its frame reads allocate a little.
func BenchmarkH2RawStickyRequest(b *testing.B) {
	addr := tlsBenchProxy(b, benchResponse, h2Options(b))
	h := dialH2Bench(b, addr,
		":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/index.html",
		"user-agent", "Mozilla/5.0 (X11; Linux x86_64)", "accept", "text/html,application/xhtml+xml",
		"accept-language", "en-US,en;q=0.5", "accept-encoding", "gzip, deflate",
		"cookie", "theme=dark", "cookie", "SERVERID=app-01", "cookie", "session=0123456789abcdef")
	for range 20 {
		if n := h.roundTrip(b); n != 12 {
			b.Fatalf("%d body bytes, want 12", n)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.roundTrip(b)
	}
}

package l7

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// rawHeaders sends a header block of exactly fields (name, value pairs,
// pseudo-fields included) on stream id.
func (h *h2Raw) rawHeaders(id uint32, end bool, fields ...string) error {
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: end, EndHeaders: true})
}

// TestH2MalformedHeadsAreStreamErrors: request heads that RFC 9113 8.3
// calls malformed (pseudo-fields missing, repeated, unknown, after a
// regular field; a :path that is no path; Host differing from
// :authority; a content-length that DATA does not match) reset their
// stream with PROTOCOL_ERROR, reach no backend, and leave the connection
// serving.
func TestH2MalformedHeadsAreStreamErrors(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	get := []string{":method", "GET", ":scheme", "https", ":authority", "lb.test"}
	id := uint32(1)
	for _, fields := range [][]string{
		{":method", "GET", ":scheme", "https", ":authority", "lb.test"},                                   // no :path
		{":scheme", "https", ":authority", "lb.test", ":path", "/"},                                       // no :method
		{":method", "GET", ":authority", "lb.test", ":path", "/"},                                         // no :scheme
		append(append([]string{}, get...), ":path", "/", ":path", "/"),                                    // twice
		append(append([]string{}, get...), ":path", "/", ":status", "200"),                                // unknown
		append(append([]string{}, get...), "accept", "*/*", ":path", "/"),                                 // after a field
		append(append([]string{}, get...), ":path", "index.html"),                                         // not a path
		append(append([]string{}, get...), ":path", "/", "host", "other.test"),                            // Host differs
		append(append([]string{}, get...), ":path", "/", "x-value", " padded"),                            // whitespace
		{":method", "CONNECT", ":scheme", "https", ":authority", "lb.test", ":path", "/"},                 // CONNECT with a path
		append(append([]string{}, get...), ":path", "/", "content-length", "1", "content-length", "2"),    // two lengths
		append(append([]string{}, get...), ":path", "/", "content-length", "-1"),                          // not a length
		append(append([]string{}, get...), ":path", "/", "proxy-connection", "keep-alive", "accept", "*"), // hop-by-hop
		append(append([]string{}, get...), ":path", "/", "content-length", "5"),                           // ended, no body
	} {
		if err := h.rawHeaders(id, true, fields...); err != nil {
			t.Fatal(err)
		}
		if status, code := h.streamEnd(t, id); code != http2.ErrCodeProtocol {
			t.Errorf("%v: status %q, reset %v; want a reset with PROTOCOL_ERROR", fields, status, code)
		}
		id += 2
	}
	// A body shorter than its content-length.
	if err := h.rawHeaders(id, false, ":method", "POST", ":scheme", "https", ":authority", "lb.test", ":path", "/sink", "content-length", "10"); err != nil {
		t.Fatal(err)
	}
	h.fr.WriteData(id, true, []byte("12345"))
	if status, code := h.streamEnd(t, id); code != http2.ErrCodeProtocol {
		t.Errorf("5 bytes of a body of 10: status %q, reset %v; want a reset with PROTOCOL_ERROR", status, code)
	}
	id += 2
	if n := f.backends[0].arrived("/"); n != 0 {
		t.Errorf("backend served %d malformed requests", n)
	}
	if err := h.headers(id, "/", true, "host", "lb.test"); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, id); status != "200" {
		t.Errorf("a good request after them: status %q, reset %v", status, code)
	}
}

// TestH2FlowControlHonoursTheClientsWindow: a client that gives a window
// of 1000 bytes for each stream and for the connection gets a 60 KB body
// in frames that never pass what it granted, and all of it once it grants
// more, piece by piece.
func TestH2FlowControlHonoursTheClientsWindow(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	const window = 1000
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 60000)
	rand.Read(body)
	if err := h.rawHeaders(1, false, ":method", "POST", ":scheme", "https", ":authority", "lb.test", ":path", "/echo",
		"content-length", fmt.Sprint(len(body))); err != nil {
		t.Fatal(err)
	}
	// The connection's window starts at 65535, the stream's at what lbctl
	// announced: the whole body fits both.
	for b := body; len(b) > 0; b = b[min(len(b), 16384):] {
		if err := h.fr.WriteData(1, len(b) <= 16384, b[:min(len(b), 16384)]); err != nil {
			t.Fatal(err)
		}
	}
	// The connection's window for lbctl is 65535 less what it sends;
	// the client holds it at window by granting only what it consumed.
	connWin, streamWin := int64(65535), int64(window)
	var got bytes.Buffer
	granted := false
	for {
		fr, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames after %d bytes: %v", got.Len(), err)
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			n := int64(len(fr.Data()))
			connWin -= n
			streamWin -= n
			if connWin < 0 || streamWin < 0 {
				t.Fatalf("a DATA frame of %d bytes passes the windows granted (connection %d, stream %d)", n, connWin+n, streamWin+n)
			}
			got.Write(fr.Data())
			if fr.StreamEnded() {
				if !bytes.Equal(got.Bytes(), body) {
					t.Fatalf("echoed %d bytes, not the %d sent", got.Len(), len(body))
				}
				if !granted {
					t.Error("the body came whole without the client granting more than its first window")
				}
				return
			}
			if streamWin == 0 {
				// Give back what was read, in one grant per window.
				granted = true
				h.fr.WriteWindowUpdate(1, window)
				h.fr.WriteWindowUpdate(0, window)
				streamWin += window
				connWin += window
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset: %v", fr.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v", fr.ErrCode)
		}
	}
}

// TestH2RapidResetGetsGoAway: a client that opens streams and resets them
// at once beyond the allowance gets GOAWAY ENHANCE_YOUR_CALM
// (CVE-2023-44487), while one that resets a few streams goes on being
// served on its connection.
func TestH2RapidResetGetsGoAway(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	few := dialH2Raw(t, f.addr)
	for i := range 50 {
		id := uint32(2*i + 1)
		if err := few.headers(id, "/", true); err != nil {
			t.Fatal(err)
		}
		if err := few.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	if err := few.headers(101, "/", true); err != nil {
		t.Fatal(err)
	}
	if status, code := few.streamEnd(t, 101); status != "200" {
		t.Errorf("after 50 resets: status %q, reset %v; want 200", status, code)
	}

	h := dialH2Raw(t, f.addr)
	goAway := make(chan http2.ErrCode, 1)
	go func() {
		defer close(goAway)
		for {
			fr, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			if g, ok := fr.(*http2.GoAwayFrame); ok {
				goAway <- g.ErrCode
				return
			}
		}
	}()
	for i := range 5000 {
		id := uint32(2*i + 1)
		if h.headers(id, "/", true) != nil || h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	code, ok := <-goAway
	if !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("rapid reset: GOAWAY %v (received: %v), want ENHANCE_YOUR_CALM", code, ok)
	}
}

// TestH2Trailers: a chunked response's trailer reaches an HTTP/2 client as
// trailers, and a request's trailers reach the backend after its chunked
// body.
func TestH2Trailers(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, _ := h2Client(t)
	body := strings.NewReader(strings.Repeat("x", 100000))
	req, _ := http.NewRequest("POST", "https://"+f.addr+"/trailers", io.NopCloser(body))
	req.Trailer = http.Header{"X-Request-Sum": nil}
	req.ContentLength = -1
	pr, pw := io.Pipe()
	req.Body = pr
	go func() {
		io.Copy(pw, body)
		req.Trailer.Set("X-Request-Sum", "req-42")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := "app-01 100000 <nil> req-42\n"; string(got) != want {
		t.Errorf("backend answered %q, want %q: the request's body and trailer", got, want)
	}
	if resp.ProtoMajor != 2 || resp.Trailer.Get("X-Checksum") != "sum-app-01" {
		t.Errorf("over %s, trailers %v; want X-Checksum: sum-app-01 over HTTP/2", resp.Proto, resp.Trailer)
	}
}

// TestH2InterimResponses: a 103 Early Hints from the backend reaches the
// HTTP/2 client before the final response, with its fields.
func TestH2InterimResponses(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, _ := h2Client(t)
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, http.Header(h).Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://"+f.addr+"/early", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "app-01\n" {
		t.Errorf("final response %d %q", resp.StatusCode, got)
	}
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
		t.Errorf("interim responses %q, want one 103 with its Link", hints)
	}
}

// TestH2SendProxy: a backend with send_proxy gets its PROXY header naming
// the client for an HTTP/2 stream too, on a connection of its own for
// each stream, as for an HTTP/1.1 request.
func TestH2SendProxy(t *testing.T) {
	addr := proxyHeaderBackend(t)
	reg, err := backend.NewRegistry([]*backend.Backend{backend.NewFromSpec(backend.Spec{ID: "app-01", Address: addr, Weight: 1, SendProxy: 2})})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tlsFixture(t, 0, h2Options(t), func(p *Proxy) { p.Pool = backend.NewPool(reg) })
	c, _ := h2Client(t)
	for range 3 {
		resp, err := c.Get("https://" + f.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "127.0.0.1 <nil>" {
			t.Errorf("over %s the backend saw %q, want a PROXY header naming 127.0.0.1", resp.Proto, body)
		}
	}
}

// TestH2StreamLimits: a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS is
// refused (REFUSED_STREAM: the client may try it again), and a stream that
// lbctl resets leaves the connection serving, even when the client goes on
// sending on it.
func TestH2StreamLimits(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	// 100 streams held by the backend, then one more.
	for i := range h2MaxStreams {
		if err := h.headers(uint32(2*i+1), "/slow", true); err != nil {
			t.Fatal(err)
		}
	}
	over := uint32(2*h2MaxStreams + 1)
	if err := h.headers(over, "/", true); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, over); code != http2.ErrCodeRefusedStream {
		t.Errorf("stream %d of %d: status %q, reset %v; want REFUSED_STREAM", h2MaxStreams+1, h2MaxStreams, status, code)
	}
	if status, code := h.streamEnd(t, 1); status != "200" {
		t.Errorf("a held stream: status %q, reset %v", status, code)
	}

	// A body longer than its content-length resets its stream; what the
	// client had sent on it before it learnt of that, more of the body
	// and trailers, is ignored.
	g := dialH2Raw(t, f.addr)
	if err := g.rawHeaders(1, false, ":method", "POST", ":scheme", "https", ":authority", "lb.test", ":path", "/sink", "content-length", "10"); err != nil {
		t.Fatal(err)
	}
	if err := g.fr.WriteData(1, false, make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if status, code := g.streamEnd(t, 1); code != http2.ErrCodeProtocol {
		t.Errorf("20 bytes of a body of 10: status %q, reset %v; want PROTOCOL_ERROR", status, code)
	}
	if err := g.fr.WriteData(1, false, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := g.rawHeaders(1, true, "x-sum", "1"); err != nil {
		t.Fatal(err)
	}
	if err := g.headers(3, "/", true); err != nil {
		t.Fatal(err)
	}
	if status, code := g.streamEnd(t, 3); status != "200" {
		t.Errorf("a request after it: status %q, reset %v", status, code)
	}
}

// TestH2EmptyContinuationFloodIsBounded: CONTINUATION frames without a
// byte in them (CVE-2024-27316 at no cost to the client) end the
// connection too, after at most h2MaxBlockFrames of them.
func TestH2EmptyContinuationFloodIsBounded(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	closed := make(chan http2.ErrCode, 1)
	go func() {
		defer close(closed)
		for {
			fr, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			if g, ok := fr.(*http2.GoAwayFrame); ok {
				closed <- g.ErrCode
				return
			}
		}
	}()
	h.buf.Reset()
	h.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.buf.Bytes(), EndStream: true})
	sent := 0
	for ; err == nil && sent < 100000; sent++ {
		err = h.fr.WriteContinuation(1, false, nil)
	}
	code, ok := <-closed
	if !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("after %d empty CONTINUATION frames (last write: %v): GOAWAY %v (received: %v), want ENHANCE_YOUR_CALM", sent, err, code, ok)
	}
	if n := f.backends[0].Served(); n != 0 {
		t.Errorf("backend served %d requests", n)
	}
}

// TestH2StreamWindowIsEnforced: DATA past the window lbctl gave a stream
// is a FLOW_CONTROL_ERROR, and so the ring a request body flows through
// can never overflow. (Over a socket, whether the client passed the window
// depends on how fast lbctl gives it back; here it is not given back.)
func TestH2StreamWindowIsEnforced(t *testing.T) {
	s := newH2Stream(&h2conn{}, 1)
	defer s.recycle()
	data := make([]byte, 16384)
	for range h2StreamWindow / len(data) {
		if code := s.takeData(data, 0, false); code != http2.ErrCodeNo {
			t.Fatalf("DATA within the window: %v", code)
		}
	}
	if code := s.takeData(data[:1], 0, false); code != http2.ErrCodeFlowControl {
		t.Errorf("one byte past the window: %v, want FLOW_CONTROL_ERROR", code)
	}
	if s.bodyN != h2StreamWindow {
		t.Errorf("%d bytes in the ring, want the window's %d", s.bodyN, h2StreamWindow)
	}
}

// TestH2ShutdownReachesASilentConnection: a client that negotiated h2 but
// has sent nothing yet gets lbctl's SETTINGS and, at Shutdown, GOAWAY, and
// its connection closes without holding Shutdown up.
func TestH2ShutdownReachesASilentConnection(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fr := http2.NewFramer(c, c)
	if first, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if s, ok := first.(*http2.SettingsFrame); !ok || s.IsAck() {
		t.Fatalf("first frame %v, want lbctl's SETTINGS", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.proxy.Shutdown(ctx) }()
	var goAway bool
	for {
		fr2, err := fr.ReadFrame()
		if err != nil {
			break // closed
		}
		if _, ok := fr2.(*http2.GoAwayFrame); ok {
			goAway = true
		}
	}
	if !goAway {
		t.Error("the connection closed without GOAWAY")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestH2ClientFromProxyHeader: over HTTP/2 too, the client a trusted
// balancer's PROXY header names is the one X-Forwarded-For gives the
// backend.
func TestH2ClientFromProxyHeader(t *testing.T) {
	peers, _ := proxyproto.ParsePeers([]string{"127.0.0.2"})
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.ProxyProtocol = proxyproto.Policy{From: peers} })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	raw, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := raw.Write(proxyHeader(2, "203.0.113.7:5000")); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, http2.ClientPreface)
	h := &h2Raw{c: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	h.dec = hpack.NewDecoder(4096, nil)
	h.fr.WriteSettings()
	if err := h.headers(1, "/", true); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, 1); status != "200" {
		t.Fatalf("status %q, reset %v", status, code)
	}
	if got := f.backends[0].lastHeader().Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For %q, want the PROXY header's client 203.0.113.7", got)
	}
}

// TestH2AnswerBeforeTheBodyEnds: a backend that answers while the client
// still owes it the rest of the body (and sends nothing more) gets its
// answer relayed whole; the exchange then stops waiting for the body and
// tells the client to send no more of it (RST_STREAM NO_ERROR), rather
// than holding the stream open for as long as the client keeps silent.
func TestH2AnswerBeforeTheBodyEnds(t *testing.T) {
	// A backend that answers as soon as it has the head.
	addr := rawBackend(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		io.Copy(io.Discard, r)
	})
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New("app-01", addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tlsFixture(t, 0, h2Options(t), func(p *Proxy) { p.Pool = backend.NewPool(reg) })
	h := dialH2Raw(t, f.addr)
	if err := h.rawHeaders(1, false, ":method", "POST", ":scheme", "https", ":authority", "lb.test", ":path", "/", "content-length", "1000"); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteData(1, false, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, 1); status != "200" {
		t.Fatalf("status %q, reset %v; want the backend's 200", status, code)
	}
	for {
		fr, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the stream to be reset: %v", err)
		}
		if r, ok := fr.(*http2.RSTStreamFrame); ok && r.StreamID == 1 {
			if r.ErrCode != http2.ErrCodeNo {
				t.Errorf("stream reset with %v, want NO_ERROR", r.ErrCode)
			}
			return
		}
	}
}

// TestH2ClientWithoutWindowIsCutOff: a client that gives no window gets
// its response head, and after timeouts.idle without a window the stream
// is reset and its backend connection let go, as an HTTP/1.1 client that
// reads nothing is cut off.
func TestH2ClientWithoutWindowIsCutOff(t *testing.T) {
	const idle = 300 * time.Millisecond
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.IdleTimeout = idle })
	h := dialH2Raw(t, f.addr)
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.headers(1, "/chunked", true); err != nil {
		t.Fatal(err)
	}
	status, code := h.streamEnd(t, 1)
	if status != "200" || code != http2.ErrCodeInternal {
		t.Errorf("status %q, reset %v; want the head, then a reset", status, code)
	}
	if took := time.Since(start); took < idle {
		t.Errorf("reset after %v, before the idle timeout of %v", took, idle)
	}
	b := f.pool.Registry().Get("app-01")
	eventually.True(t, "the backend connection let go", func() bool { return b.Active() == 0 })
}

// TestH2StalledBodyIsGivenUp: a client that stops sending in the middle
// of a request body is given up on after timeouts.idle, as an HTTP/1.1
// client is: its stream is reset without an answer, and the backend
// connection is let go.
func TestH2StalledBodyIsGivenUp(t *testing.T) {
	const idle = 300 * time.Millisecond
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.IdleTimeout = idle })
	h := dialH2Raw(t, f.addr)
	if err := h.rawHeaders(1, false, ":method", "POST", ":scheme", "https", ":authority", "lb.test", ":path", "/sink", "content-length", "1000"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.fr.WriteData(1, false, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, 1); status != "" || code == http2.ErrCodeNo {
		t.Errorf("status %q, reset %v; want a reset without an answer", status, code)
	}
	if took := time.Since(start); took < idle {
		t.Errorf("reset after %v, before the idle timeout of %v", took, idle)
	}
	b := f.pool.Registry().Get("app-01")
	eventually.True(t, "the backend connection let go", func() bool { return b.Active() == 0 })
}

// TestH2NoIdleTimeoutNeverCutsAtStart: with timeouts.idle = 0 a
// connection has no idle timer. A timer made for a zero duration and then
// stopped fires now and then before the stop, which cut about one new
// connection in a hundred as if it had been idle.
func TestH2NoIdleTimeoutNeverCutsAtStart(t *testing.T) {
	cfg := Settings{Selector: &backend.RoundRobin{}, IdleTimeout: 0}.resolve(nil)
	for i := range 1000 {
		_, server := loopback.Pair(t)
		c := &h2conn{cfg: cfg, nc: server}
		c.start()
		c.teardown()
		c.mu.Lock()
		fired := c.idleFired
		c.mu.Unlock()
		if fired {
			t.Fatalf("connection %d: the idle timeout fired with timeouts.idle = 0", i)
		}
	}
}

// TestH2HeadersAfterTheRequestEnded: HEADERS on a stream whose request has
// ended (half-closed, remote) is the stream error STREAM_CLOSED (RFC 9113
// 5.1), as DATA there is.
func TestH2HeadersAfterTheRequestEnded(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	// /big outlasts the client's window: its answer waits for more, and
	// the stream stays open on lbctl's side.
	if err := h.headers(1, "/big", true); err != nil {
		t.Fatal(err)
	}
	for answered := false; !answered; {
		fr, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the answer's head: %v", err)
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if !fr.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if _, err := h.dec.DecodeFull(fr.HeaderBlockFragment()); err != nil {
				t.Fatal(err)
			}
			answered = fr.StreamID == 1
		}
	}
	if err := h.headers(1, "/", true); err != nil {
		t.Fatal(err)
	}
	if _, code := h.streamEnd(t, 1); code != http2.ErrCodeStreamClosed {
		t.Errorf("HEADERS after the request ended: reset %v, want STREAM_CLOSED", code)
	}
}

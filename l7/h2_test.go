package l7

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// h2Options are TLS options that offer HTTP/2 first.
func h2Options(t testing.TB) TLSOptions {
	return TLSOptions{Certificates: []tls.Certificate{testCert(t, "lb.test")}, ALPN: []string{"h2", "http/1.1"}}
}

// h2Client is an HTTP/2 client (Go's, over real TLS, with HTTP/1.1 turned
// off) with a cookie jar: one connection carries all its requests.
func h2Client(t testing.TB) (*http.Client, *http.Transport) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}, tr
}

func TestH2StickyAndRepinOnFailure(t *testing.T) {
	f, _ := tlsFixture(t, 3, h2Options(t), nil)
	c, _ := h2Client(t)
	url := "https://" + f.addr + "/"
	first, resp := get(t, c, url, "Cookie", "theme=dark")
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "SERVERID="+first) {
		t.Fatalf("Set-Cookie %q, want SERVERID=%s", sc, first)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private" {
		t.Errorf("Cache-Control %q with a new cookie, want private", cc)
	}
	h := f.byID[first].lastHeader()
	if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("Cookie") != "theme=dark" {
		t.Errorf("backend saw X-Forwarded-Proto %q, X-Forwarded-For %q, Cookie %q", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-For"), h.Get("Cookie"))
	}
	for range 10 {
		id, resp := get(t, c, url, "Cookie", "theme=dark")
		if id != first || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("pinned request went to %s (Set-Cookie %q), want %s and no new cookie", id, resp.Header.Get("Set-Cookie"), first)
		}
	}
	// Only the other cookies reach the backend.
	if got := f.byID[first].lastHeader().Get("Cookie"); got != "theme=dark" {
		t.Errorf("backend got Cookie %q, want the persistence cookie removed", got)
	}
	f.byID[first].Kill()
	id, resp := get(t, c, url)
	if id == first || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "SERVERID="+id) {
		t.Fatalf("after %s died: %s with Set-Cookie %q, want another backend and its cookie", first, id, resp.Header.Get("Set-Cookie"))
	}
	for range 5 {
		if again, _ := get(t, c, url); again != id {
			t.Fatalf("after the re-pin the request went to %s, want %s", again, id)
		}
	}
	// Each stream counts once it has ended, which may be after the
	// client has its answer.
	eventually.True(t, "17 requests counted", func() bool { return f.proxy.Counts().Requests() == 17 })
}

func TestH2ConcurrentStreamsShareOneConnection(t *testing.T) {
	f, _ := tlsFixture(t, 2, h2Options(t), nil)
	c, _ := h2Client(t)
	url := "https://" + f.addr + "/"
	pin, _ := get(t, c, url)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			id, resp, err := tryGet(c, url)
			switch {
			case err != nil:
				errs <- err
			case id != pin || resp.ProtoMajor != 2:
				errs <- fmt.Errorf("stream went to %s over %s, want %s over HTTP/2", id, resp.Proto, pin)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var conns int64
	for _, b := range f.backends {
		conns += b.Accepted()
	}
	if conns > h2MaxStreams {
		t.Errorf("%d backend connections for 65 requests", conns)
	}
}

// TestH2StreamsLargeBodiesBothWays: a 32 MiB upload of unknown length is
// streamed to the backend and echoed back as it arrives, through flow
// control on both sides.
func TestH2StreamsLargeBodiesBothWays(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, _ := h2Client(t)
	body := make([]byte, 32<<20)
	rand.Read(body)
	pr, pw := io.Pipe()
	go func() {
		for b := body; len(b) > 0; b = b[min(len(b), 1<<20):] {
			if _, err := pw.Write(b[:min(len(b), 1<<20)]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "https://"+f.addr+"/echo", pr)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	checkEchoed(t, resp, body)
	// And a body of known length to a sink.
	resp2, err := c.Post("https://"+f.addr+"/sink", "application/octet-stream", bytes.NewReader(body[:5<<20]))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if want := fmt.Sprintf("app-01 %d <nil>", 5<<20); strings.TrimSpace(string(got)) != want {
		t.Errorf("sink answered %q, want %q", got, want)
	}
}

// TestH2HeaderListLimit: a header list larger than the head limit never
// reaches a backend: one field alone larger than the limit closes the
// connection (HPACK refuses the string), many small ones get 431.
func TestH2HeaderListLimit(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.MaxHeaderBytes = 4096 })
	c, _ := h2Client(t)
	_, resp, err := tryGet(c, "https://"+f.addr+"/", "X-Big", strings.Repeat("a", 8000))
	if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("8 KB of fields against a 4 KiB limit: %d, want 431 or a refusal", resp.StatusCode)
	}
	// Many small fields over the limit: 431 on the stream, or the client
	// refuses to send them, having read the limit in lbctl's SETTINGS.
	hdr := []string{}
	for i := range 40 {
		hdr = append(hdr, fmt.Sprintf("X-Field-%d", i), strings.Repeat("b", 200))
	}
	_, resp, err = tryGet(c, "https://"+f.addr+"/", hdr...)
	refused := err != nil && strings.Contains(err.Error(), "larger than peer's advertised limit")
	if !refused && (err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge) {
		t.Errorf("40 fields of 200 bytes against a 4 KiB limit: %v, %v; want 431", resp, err)
	}
	// A client that sends them anyway gets 431 on the stream.
	h := dialH2Raw(t, f.addr)
	for i := 0; i < len(hdr); i += 2 {
		hdr[i] = strings.ToLower(hdr[i])
	}
	if err := h.headers(1, "/", true, hdr...); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, 1); status != "431" {
		t.Errorf("40 fields of 200 bytes sent regardless: status %q, reset %v; want 431", status, code)
	}
	if n := f.backends[0].Served(); n != 0 {
		t.Errorf("backend served %d requests", n)
	}
	if _, resp := get(t, c, "https://"+f.addr+"/"); resp.StatusCode != 200 {
		t.Errorf("a small request after it: %d", resp.StatusCode)
	}
}

// TestH2cIsNotAccepted: HTTP/2 in clear text (prior knowledge) on a plain
// listener is refused; nothing reaches a backend.
func TestH2cIsNotAccepted(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	got := rawExchange(t, f.addr, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 505 ") {
		t.Errorf("h2c preface answered %q, want 505", got)
	}
	if n := f.backends[0].Served(); n != 0 {
		t.Errorf("backend served %d requests", n)
	}
}

// TestH2ShutdownSendsGoAway: Shutdown lets a stream in flight finish and
// then the connection closes; the client sees GOAWAY rather than a reset.
func TestH2ShutdownSendsGoAway(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, _ := h2Client(t)
	url := "https://" + f.addr
	get(t, c, url+"/")
	slow := make(chan error, 1)
	go func() {
		id, _, err := tryGet(c, url+"/slow")
		if err == nil && id != "app-01" {
			err = fmt.Errorf("slow answered %q", id)
		}
		slow <- err
	}()
	if err := f.backends[0].awaitArrivals("/slow", 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.proxy.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-slow; err != nil {
		t.Errorf("stream in flight at Shutdown: %v", err)
	}
}

// h2Raw is a client connection that speaks HTTP/2 frames directly, for
// what a well-behaved client never sends.
type h2Raw struct {
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	dec *hpack.Decoder // the connection's: HPACK state lives as long as it
	buf bytes.Buffer
}

func dialH2Raw(t *testing.T, addr string) *h2Raw {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	h := &h2Raw{c: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	h.dec = hpack.NewDecoder(4096, nil)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// headers sends a request on stream id with fields after the usual
// pseudo-fields of a GET of path.
func (h *h2Raw) headers(id uint32, path string, end bool, fields ...string) error {
	h.buf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "lb.test"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: end, EndHeaders: true})
}

// streamEnd reads frames until stream id ends, and returns its status
// (empty when it was reset) and the reset's code (NO_ERROR when it ended
// whole). A GOAWAY meanwhile fails the test.
func (h *h2Raw) streamEnd(t *testing.T, id uint32) (status string, code http2.ErrCode) {
	t.Helper()
	var seen h2Seen
	h.readUntil(t, &seen, fmt.Sprintf("the end of stream %d", id), func() bool {
		if len(seen.goAways) > 0 {
			t.Fatalf("GOAWAY %v waiting for stream %d", seen.goAways[0].code, id)
		}
		_, ended := seen.ended[id]
		return ended
	})
	return seen.status[id], seen.ended[id]
}

// h2Seen is what a raw client has read of its connection so far.
type h2Seen struct {
	goAways []h2GoAway               // in the order read
	pings   [][8]byte                // the payloads of lbctl's PINGs (not ACKs)
	status  map[uint32]string        // a stream's response status
	blocks  map[uint32][]byte        // a stream's first header block fragment, as it came
	ended   map[uint32]http2.ErrCode // a stream's end: NO_ERROR for END_STREAM, else the reset's code
}

// h2GoAway is what a GOAWAY frame said.
type h2GoAway struct {
	last uint32
	code http2.ErrCode
}

// readUntil reads frames into seen until cond holds, acknowledging
// lbctl's SETTINGS but not its PINGs, which a test answers itself. The
// connection's deadline (see dialH2Raw) bounds the wait: a read that
// fails is fatal, naming what was awaited.
func (h *h2Raw) readUntil(t *testing.T, seen *h2Seen, what string, cond func() bool) {
	t.Helper()
	if seen.status == nil {
		seen.status, seen.blocks, seen.ended = map[uint32]string{}, map[uint32][]byte{}, map[uint32]http2.ErrCode{}
	}
	for !cond() {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames, awaiting %s: %v", what, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				seen.pings = append(seen.pings, f.Data)
			}
		case *http2.GoAwayFrame:
			seen.goAways = append(seen.goAways, h2GoAway{f.LastStreamID, f.ErrCode})
		case *http2.HeadersFrame:
			if _, ok := seen.blocks[f.StreamID]; !ok {
				seen.blocks[f.StreamID] = bytes.Clone(f.HeaderBlockFragment())
			}
			// Every block is decoded, for HPACK's sake.
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatalf("decoding a response head: %v", err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					seen.status[f.StreamID] = hf.Value
				}
			}
			if f.StreamEnded() {
				seen.ended[f.StreamID] = http2.ErrCodeNo
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				seen.ended[f.StreamID] = http2.ErrCodeNo
			}
		case *http2.RSTStreamFrame:
			seen.ended[f.StreamID] = f.ErrCode
		}
	}
}

// TestH2MalformedFieldsAreStreamErrors: upper-case field names and
// connection-specific fields (RFC 9113 8.2) reset their stream, reach no
// backend, and leave the connection serving.
func TestH2MalformedFieldsAreStreamErrors(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	id := uint32(1)
	for _, fields := range [][]string{
		{"X-Upper", "1"},
		{"connection", "keep-alive"},
		{"keep-alive", "timeout=5"},
		{"transfer-encoding", "chunked"},
		{"te", "gzip"},
	} {
		if err := h.headers(id, "/", true, fields...); err != nil {
			t.Fatal(err)
		}
		if status, code := h.streamEnd(t, id); code != http2.ErrCodeProtocol && status != "400" {
			t.Errorf("%v: status %q, reset %v; want a stream error", fields, status, code)
		}
		id += 2
	}
	if n := f.backends[0].Served(); n != 0 {
		t.Errorf("backend served %d malformed requests", n)
	}
	if err := h.headers(id, "/", true, "te", "trailers"); err != nil {
		t.Fatal(err)
	}
	if status, code := h.streamEnd(t, id); status != "200" {
		t.Errorf("a good request after them: status %q, reset %v", status, code)
	}
}

// TestH2RapidResetIsBounded: a client that opens streams and resets them
// at once (CVE-2023-44487) neither holds backend connections nor keeps
// other clients from being served.
func TestH2RapidResetIsBounded(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	go func() {
		// Drain what the server sends so that its writes never block.
		for {
			if _, err := h.fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	for i := range 5000 {
		id := uint32(2*i + 1)
		if h.headers(id, "/slow", true) != nil || h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server closed the connection: bounded too
		}
	}
	c, _ := h2Client(t)
	if id, _ := get(t, c, "https://"+f.addr+"/"); id != "app-01" {
		t.Errorf("another client got %q", id)
	}
	b := f.pool.Registry().Get("app-01")
	eventually.True(t, "no backend connection held by reset streams", func() bool { return b.Active() == 0 })
}

// TestH2IdleConnectionCloses: an HTTP/2 connection without a stream for
// timeouts.idle gets GOAWAY and is closed.
func TestH2IdleConnectionCloses(t *testing.T) {
	const idle = 300 * time.Millisecond
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.IdleTimeout = idle })
	h := dialH2Raw(t, f.addr)
	start := time.Now()
	for {
		fr, err := h.fr.ReadFrame()
		if err != nil {
			break // closed
		}
		if s, ok := fr.(*http2.SettingsFrame); ok && !s.IsAck() {
			h.fr.WriteSettingsAck()
		}
	}
	if took := time.Since(start); took < idle || took > 25*time.Second {
		t.Errorf("idle connection closed after %v, want about %v", took, idle)
	}
}

// TestTLSAndH2LeaveNothingBehind: TLS connections over HTTP/1.1 and
// HTTP/2, bad handshakes and reset streams leave no goroutine or
// descriptor behind once their clients are gone.
func TestTLSAndH2LeaveNothingBehind(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) {
		p.MaxIdlePerBackend = -1
		p.HeaderTimeout = 300 * time.Millisecond
	})
	url := "https://" + f.addr + "/"
	round := func() {
		c1 := tlsClient(t, nil)
		get(t, c1, url)
		c1.Transport.(*http.Transport).CloseIdleConnections()
		c2, tr := h2Client(t)
		get(t, c2, url)
		tr.CloseIdleConnections()
	}
	round()
	warm := leakcheck.Take(t)
	round()
	// A handshake that stalls, and one that is garbage.
	for _, send := range []string{"\x16\x03\x01\x02\x00\x01", "garbage\r\n\r\n"} {
		c := dialProxy(t, f.addr)
		io.WriteString(c, send)
		io.ReadAll(c)
		c.Close()
	}
	// Streams reset while the backend works on them.
	h := dialH2Raw(t, f.addr)
	for i := range 20 {
		id := uint32(2*i + 1)
		h.headers(id, "/slow", true)
		h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	h.c.Close()
	warm.Wait(t, 20*time.Second)
}

// TestH2StreamsAreAccounted: each HTTP/2 stream gets its access log line
// and counts, with the cookie's outcome, as an HTTP/1.1 request does.
func TestH2StreamsAreAccounted(t *testing.T) {
	path := t.TempDir() + "/access.log"
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	lg := accesslog.New(file, accesslog.DefaultSize)
	f, _ := tlsFixture(t, 2, h2Options(t), func(p *Proxy) { p.AccessLog = lg })
	c, _ := h2Client(t)
	url := "https://" + f.addr
	first, _ := get(t, c, url+"/a?x=1")
	get(t, c, url+"/b")
	f.byID[first].Kill()
	get(t, c, url+"/c")
	eventually.True(t, "3 requests counted", func() bool { return f.proxy.Counts().Requests() == 3 })
	if err := lg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d access log lines, want 3:\n%s", len(lines), data)
	}
	// A stream's line is written once its exchange is over, which may
	// be after its client has the answer and sent the next request: the
	// lines are found by path, not by their order.
	for _, want := range [][2]string{
		{`"method":"GET","path":"/a?x=1","status":200`, `"cookie":"new"`},
		{`"path":"/b","status":200`, `"cookie":"valid"`},
		{`"path":"/c","status":200`, `"cookie":"repinned"`},
	} {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, want[0]) })
		if i < 0 {
			t.Errorf("no line holds %s:\n%s", want[0], data)
		} else if !strings.Contains(lines[i], want[1]) {
			t.Errorf("line %s, want it to hold %s", lines[i], want[1])
		}
	}
	if got := f.pool.Repins.Load(backend.RepinFailed); got != 1 {
		t.Errorf("%d re-pins for a failure counted, want 1", got)
	}
}

// TestH2IdleGoAwayLingers: a connection closed for idleness says GOAWAY
// in two steps, as one that Shutdown closes does, and reads on for a
// while: a request the client sent before it read the second GOAWAY is
// served, and one sent after is refused in a frame it reads
// (REFUSED_STREAM, safe to send again), not lost to a reset connection.
func TestH2IdleGoAwayLingers(t *testing.T) {
	const idle = 300 * time.Millisecond
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) {
		p.IdleTimeout = idle
		p.h2.linger = 30 * time.Second // longer than any pause of a busy machine
		p.h2.round = 30 * time.Second  // only the PING's ACK brings the second GOAWAY
	})
	h := dialH2Raw(t, f.addr)
	var seen h2Seen
	h.readUntil(t, &seen, "the idle GOAWAY and its PING", func() bool { return len(seen.pings) == 1 })
	if g := seen.goAways[0]; g != (h2GoAway{1<<31 - 1, http2.ErrCodeNo}) {
		t.Errorf("first GOAWAY %v naming stream %d, want NO_ERROR naming 2^31-1", g.code, g.last)
	}
	if err := h.headers(1, "/", true); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the answer to stream 1", func() bool { _, ok := seen.ended[1]; return ok })
	if !seen.answered(1) {
		t.Errorf("a request between the idle GOAWAYs: status %q, end %v; want 200", seen.status[1], seen.ended[1])
	}
	if err := h.fr.WritePing(true, seen.pings[0]); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the second idle GOAWAY", func() bool { return len(seen.goAways) == 2 })
	if g := seen.goAways[1]; g != (h2GoAway{1, http2.ErrCodeNo}) {
		t.Errorf("second GOAWAY %v naming stream %d, want NO_ERROR naming 1", g.code, g.last)
	}
	if err := h.headers(3, "/", true); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "stream 3 to end", func() bool { _, ok := seen.ended[3]; return ok })
	if code := seen.ended[3]; code != http2.ErrCodeRefusedStream {
		t.Errorf("a request after the idle GOAWAY: status %q, end %v; want REFUSED_STREAM", seen.status[3], code)
	}
	if n := f.backends[0].Served(); n != 1 {
		t.Errorf("backend served %d requests, want 1", n)
	}
}

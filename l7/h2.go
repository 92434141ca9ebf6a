package l7

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
)

// Each HTTP/2 stream (see h2_conn.go for the connection) is forwarded over
// the same HTTP/1.1 kept-alive backend pool as the HTTP/1.1 front door,
// with the same choice of backend (backend.Attempt over the same cookie
// codec), the same rules of which fields are forwarded (notForwarded,
// stripCookie), the same response parser and body copies (parseResponseHead,
// copyFixed, copyChunked, copyUntilEOF), and the same failover and passive
// health. What it does not share is the session: a stream's request is
// decoded from HPACK, and its answer goes out as frames.

// h2front holds the HTTP/2 connections of a proxy. Its zero value is
// ready.
type h2front struct {
	live h2clients // the connections being served, for CloseConns and Shutdown
	// linger and round, when positive, replace h2CloseLinger and
	// h2GoAwayRound: a test sets them before Serve.
	linger time.Duration
	round  time.Duration
}

// lingerOf returns how long a connection that said GOAWAY and has no
// stream left reads on before it closes.
func (h *h2front) lingerOf() time.Duration {
	if h.linger > 0 {
		return h.linger
	}
	return h2CloseLinger
}

// roundOf returns how long a graceful close waits for its client to
// acknowledge the PING after the first GOAWAY before it sends the second.
func (h *h2front) roundOf() time.Duration {
	if h.round > 0 {
		return h.round
	}
	return h2GoAwayRound
}

// goAway closes every HTTP/2 client connection gracefully (see
// h2conn.goAway): after two GOAWAY frames a round trip apart, each starts
// no new stream, and closes once its streams have ended.
func (h *h2front) goAway() {
	h.live.each(func(c *h2client) { c.conn.goAway() })
}

// serveH2 serves a TLS connection that negotiated "h2" until it ends, for
// client (the PROXY header's, or when not valid the peer's address). The
// connection never counts as idle for Shutdown: Shutdown sends GOAWAY,
// and the connection ends once its streams have.
func (p *Proxy) serveH2(ac *accept.Conn, sec *tls.Conn, client netip.AddrPort) {
	c := &h2client{p: p, addr: client, tcp: ac.TCPConn}
	if a, ok := ac.RemoteAddr().(*net.TCPAddr); ok && !client.IsValid() {
		c.addr = a.AddrPort()
	}
	if c.addr.IsValid() {
		addr := c.addr.Addr().Unmap()
		c.ip = addr.String()
		c.addrKey = backend.AddrHash(addr)
		c.pinKey = pinClientKey([]byte(c.ip))
	}
	c.conn = h2conn{cl: c, cfg: p.tuned.Load(), nc: sec}
	c.conn.start()
	p.h2.live.add(c)
	defer p.h2.live.remove(c)
	if p.loop.Closing() {
		c.conn.goAway()
	}
	c.conn.serve()
}

// h2client is one HTTP/2 client connection: what its streams share.
type h2client struct {
	p       *Proxy
	addr    netip.AddrPort // the client's address and port, for the access log
	ip      string         // the client's address, as X-Forwarded-For shows it
	addrKey uint64         // see session.addrKey
	pinKey  uint64         // see session.pinKey
	tcp     *net.TCPConn   // the connection, under TLS
	flights h2flights      // the exchanges in progress, for CloseConns
	conn    h2conn
}

// serve forwards the stream's request to a backend and relays the answer.
func (s *h2stream) serve() {
	defer s.finish()
	cl := s.c.cl
	p := cl.p
	x := &s.x
	// The exchange starts afresh but for its buffers (see recycle).
	x.s, x.cfg, x.st = s, p.tuned.Load(), p.current()
	x.flight = cl.flights.claim()
	if x.flight != nil {
		defer x.flight.free()
	}
	try := &x.try
	*try = backend.Attempt{}
	if p.AccessLog != nil {
		x.acct.start = time.Now()
	}
	defer x.endAccount(try)
	if s.method == "CONNECT" {
		// Neither CONNECT nor the extended CONNECT of RFC 8441 is
		// served over HTTP/2.
		x.answer(http.StatusMethodNotAllowed)
		return
	}
	retryable := s.contentLength == 0 && idempotent(bytesOf(s.method))
	*try = backend.NewAttempt(x.st.reg, x.cfg.sel, cl.addrKey, x.pinned())
	p.forward(x, try, retryable)
}

// next is session.next for a stream.
func (x *h2exchange) next() *backend.Backend {
	b := x.try.Next()
	if b != nil && x.try.Pinned() {
		x.st.pins[b].add(x.s.c.cl.pinKey, pinMinute(time.Now()))
	}
	return b
}

// countSession is session.countSession for a stream.
func (x *h2exchange) countSession() {
	cl := x.s.c.cl
	if cl.p.NAT == nil {
		return
	}
	if a, ok := cl.tcp.RemoteAddr().(*net.TCPAddr); ok {
		cl.p.NAT.Session(a.AddrPort())
	}
}

// connect is session.connect for a stream.
func (x *h2exchange) connect(b *backend.Backend, reuse bool) (*net.TCPConn, bool, error) {
	cl := x.s.c.cl
	return cl.p.upstreamFor(x.st, x.cfg, b, reuse, cl.addr, cl.tcp, &x.upIO)
}

// refuse is session.refuse for a stream.
func (x *h2exchange) refuse(status int) { x.answer(status) }

// pinned returns the backend the stream's persistence cookie names, or
// nil. HTTP/2 may split Cookie into several fields (RFC 9113 8.2.3); each
// is looked at.
func (x *h2exchange) pinned() *backend.Backend {
	for _, f := range x.s.fields {
		if f.Name != "cookie" {
			continue
		}
		if val, ok := findCookie(bytesOf(f.Value), x.st.codec.name); ok {
			b := x.st.codec.backendFor(val)
			x.acct.named, x.acct.cookieSent = b, true
			return b
		}
	}
	return nil
}

// answer ends the stream with a canned error.
func (x *h2exchange) answer(status int) {
	s := x.s
	x.acct.status = status
	body := strconv.Itoa(status) + " " + http.StatusText(status) + "\n"
	s.startHead(status)
	s.head = appendH2FieldString(s.head, "content-type", "text/plain; charset=utf-8")
	s.head = appendH2FieldString(s.head, "cache-control", "no-store")
	s.head = appendH2FieldString(s.head, "content-length", strconv.Itoa(len(body)))
	if s.method == "HEAD" {
		s.sendHead(true, true)
		return
	}
	if s.sendHead(false, false) != nil {
		return
	}
	if s.sendData([]byte(body), true) == nil {
		x.bytes += int64(len(body))
	}
}

// endAccount reports the stream as session.endAccount reports a request:
// to its backend's counts by status class, to the re-pin counts, to the
// front door's request count, and to the access log (whose Bytes are the
// body's: an HTTP/2 head is not the bytes of the HTTP/1.1 head it came from).
func (x *h2exchange) endAccount(try *backend.Attempt) {
	p, a := x.s.c.cl.p, &x.acct
	outcome, why := a.cookie(try)
	if a.b != nil {
		a.b.CountResponse(a.status)
		if outcome == accesslog.CookieRepinned {
			p.Pool.Repins.Count(why)
		}
	}
	p.loop.Counts.Request()
	if p.AccessLog == nil {
		return
	}
	r := new(accesslog.Record)
	r.Time = time.Now()
	r.Duration = r.Time.Sub(a.start)
	r.Client = x.s.c.cl.addr
	if a.b != nil {
		r.Backend = a.b.ID
	}
	r.SetRequest([]byte(x.s.method), []byte(x.s.path))
	r.Status, r.Bytes, r.Head, r.Cookie = a.status, x.bytes, a.head, outcome
	p.AccessLog.Write(r)
}

// h2exchange is one stream's request on its way to a backend.
type h2exchange struct {
	s     *h2stream
	cfg   *settings
	st    *poolState
	acct  account         // what the stream reports when it ends
	try   backend.Attempt // the backends tried
	bytes int64           // body bytes written to the stream
	// flight is the stream's slot for CloseConns; nil when the
	// connection had none free.
	flight *h2flight

	out      []byte      // the request head for the backend
	cookie   []byte      // the Cookie field the backend gets
	uw       timedWriter // writes to the backend
	rd       connReader  // reads the backend's response
	resp     responseHead
	body     h2BodyWriter
	chunks   h2ChunkSink
	sizeLine []byte // a chunk-size line of the request body
	upIO     upIO   // reads and writes the backend connection
}

// wasCut reports whether CloseConns cut the stream's exchange in
// progress.
func (x *h2exchange) wasCut() bool { return x.flight != nil && x.flight.wasCut() }

// attempt sends the request to b over up and relays the answer, with
// session.roundTrip's rules of who is answerable for a failure. It owns
// up.
func (x *h2exchange) attempt(b *backend.Backend, up *net.TCPConn, reused, retryable, setCookie bool) outcome {
	s := x.s
	p := s.c.cl.p
	b.Acquire()
	defer b.Release()
	x.acct.b = b
	if x.flight != nil {
		x.flight.begin(b, up)
		defer x.flight.end()
	}
	// A stream the client resets (or a connection that goes) stops the
	// exchange at once: its backend connection is closed, which no one
	// holds against the backend.
	if !s.attach(up) {
		return relayed
	}
	defer s.detach()
	x.acct.sent = armUp(&x.uw, &x.upIO, up, x.cfg.server)
	x.out = x.appendHead(x.out[:0], b)
	var err error
	if s.contentLength != 0 {
		_, err = x.uw.Write(x.out)
	} else {
		_, err = x.upIO.send(x.out) // returns once the answer can be read
	}
	if err != nil {
		up.Close()
		return x.failed(b, err, reused, retryable)
	}
	var bodyDone chan error
	if s.contentLength != 0 {
		bodyDone = make(chan error, 1)
		go x.sendBody(up, bodyDone)
	}
	upBuf := p.ups.Get().(*[]byte)
	defer func() {
		x.rd.reset(nil, nil, nil)
		p.ups.Put(upBuf)
	}()
	x.rd.reset(&x.upIO, *upBuf, nil)
	resp := &x.resp
	for {
		head, partial, err := x.rd.readHead()
		if err != nil {
			return x.headFailed(b, up, bodyDone, err, reused && !partial, retryable)
		}
		if err := parseResponseHead(head, resp); err != nil || resp.status == 101 {
			up.Close()
			x.stopBody(bodyDone)
			if err == nil {
				err = errors.New("101 to a request that asked for no switch")
			}
			x.backendFault(b, err)
			x.answer(http.StatusBadGateway)
			return relayed
		}
		if resp.status >= 200 {
			x.acct.head = time.Since(x.acct.sent)
			x.acct.status = resp.status
			b.ObserveResponseHead(x.acct.head)
			break
		}
		// An interim response (100 Continue, 103 Early Hints) goes to
		// the client as a HEADERS frame of its own; the final one
		// follows.
		x.headFields(b, resp, false)
		if err := s.sendHead(false, true); err != nil {
			up.Close()
			x.stopBody(bodyDone)
			return relayed
		}
		up.SetReadDeadline(time.Now().Add(x.cfg.server))
	}
	x.relay(b, up, resp, setCookie, bodyDone)
	return relayed
}

// headFailed is session.headFailed for a stream: the same verdict
// (judgeHead), a stream the client reset or CloseConns cut being the
// client's.
func (x *h2exchange) headFailed(b *backend.Backend, up *net.TCPConn, bodyDone chan error, err error, retryFresh, retryable bool) outcome {
	up.Close()
	bodyErr := x.stopBody(bodyDone)
	switch v, why := judgeHead(err, bodyErr, clientFailed(bodyErr) || x.s.isGone() || x.wasCut()); v {
	case headClient:
		return relayed // nobody listens, or the stream is reset (see h2stream.finish)
	case headTimeout:
		if bodyErr == nil {
			x.backendFault(b, why)
		}
		x.answer(http.StatusGatewayTimeout)
		return relayed
	case headTooLarge:
		x.backendFault(b, why)
		x.answer(http.StatusBadGateway)
		return relayed
	default:
		return x.failed(b, why, retryFresh, retryable)
	}
}

// failed is session.failed for a stream: a stale kept-alive connection is
// retried fresh, a retryable request goes to another backend, anything
// else gets 502.
func (x *h2exchange) failed(b *backend.Backend, err error, stale, retryable bool) outcome {
	if x.s.isGone() {
		return relayed // the client reset the stream, which closed up
	}
	if x.wasCut() {
		// CloseConns cut the exchange: as an HTTP/1.1 client's connection
		// is closed, the stream is reset, neither counted against the
		// backend nor tried elsewhere (see h2stream.finish).
		return relayed
	}
	if stale && retryable || errors.Is(err, errIdleStale) {
		return retryFresh
	}
	x.backendFault(b, err)
	if retryable {
		return retryOther
	}
	x.answer(http.StatusBadGateway)
	return relayed
}

func (x *h2exchange) backendFault(b *backend.Backend, err error) {
	p := x.s.c.cl.p
	p.Health.ReportFailure(b, err)
	p.logger().Debug("backend failed", "backend", b.ID, "error", err, "protocol", "h2")
}

// appendHead appends the HTTP/1.1 request head that b gets for the
// stream: the request line, Host from :authority, every field that
// notForwarded lets through with the persistence cookie removed, the
// framing lbctl sends, and the forwarding fields.
func (x *h2exchange) appendHead(dst []byte, b *backend.Backend) []byte {
	s := x.s
	dst = append(dst, s.method...)
	dst = append(dst, ' ')
	dst = append(dst, s.path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	if s.authority != "" {
		dst = append(dst, s.authority...)
	} else {
		dst = append(dst, b.Address()...)
	}
	dst = append(dst, "\r\n"...)
	cookie := x.cookie[:0]
	for _, f := range s.fields {
		n := bytesOf(f.Name)
		if notForwarded(n, true) {
			continue
		}
		if f.Name == "cookie" {
			// The crumbs of an HTTP/2 Cookie go to HTTP/1.1 as one field
			// (RFC 9113 8.2.3).
			if len(cookie) > 0 {
				cookie = append(cookie, "; "...)
			}
			mark := len(cookie)
			var removed bool
			if cookie, removed = stripCookie(cookie, bytesOf(f.Value), x.st.codec.name); !removed {
				cookie = append(cookie[:mark], f.Value...)
			}
			if len(cookie) == mark && mark > 0 {
				cookie = cookie[:mark-2]
			}
			continue
		}
		dst = appendField(dst, n, bytesOf(f.Value))
	}
	x.cookie = cookie
	if len(cookie) > 0 {
		dst = appendField(dst, []byte("Cookie"), cookie)
	}
	switch {
	case s.contentLength > 0:
		dst = appendContentLength(dst, s.contentLength)
	case s.contentLength < 0:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case s.method == "POST" || s.method == "PUT" || s.method == "PATCH":
		dst = appendContentLength(dst, 0)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	dst = append(dst, s.c.cl.ip...)
	dst = append(dst, "\r\nX-Real-IP: "...)
	dst = append(dst, s.c.cl.ip...)
	return append(dst, "\r\nX-Forwarded-Proto: https\r\n\r\n"...)
}

// sendBody streams the request body of the stream to the backend as it
// arrives (the stream's window holds the client back while the backend is
// slow): as it is when its length is known, chunked otherwise, with the
// request's trailers after the last chunk. On failure it closes up, so
// that the exchange waiting for the response learns of it; a failed read
// of the client is a *clientGone.
func (x *h2exchange) sendBody(up *net.TCPConn, done chan<- error) {
	s := x.s
	uw := &x.uw
	chunked := s.contentLength < 0
	var err error
	for {
		p, rerr := s.bodyNext()
		if errors.Is(rerr, errBodyStopped) {
			err = rerr
			break
		}
		if rerr != nil {
			err = &clientGone{rerr}
			break
		}
		if p == nil {
			if chunked {
				err = x.sendLastChunk()
			}
			break
		}
		if chunked {
			x.sizeLine = strconv.AppendInt(x.sizeLine[:0], int64(len(p)), 16)
			x.sizeLine = append(x.sizeLine, "\r\n"...)
			_, err = uw.Write(x.sizeLine)
		}
		if err == nil {
			_, err = uw.Write(p)
		}
		if chunked && err == nil {
			_, err = uw.Write(crlfBytes)
		}
		s.bodyDone(len(p))
		if err != nil {
			break
		}
	}
	if err != nil {
		up.Close()
	}
	done <- err
}

// sendLastChunk ends a chunked request body, with the request's trailer
// fields (those lbctl forwards at all).
func (x *h2exchange) sendLastChunk() error {
	if len(x.s.trailers) == 0 {
		_, err := x.uw.Write(lastChunk)
		return err
	}
	line := append(x.sizeLine[:0], "0\r\n"...)
	for _, f := range x.s.trailers {
		if n := bytesOf(f.Name); !notForwarded(n, true) {
			line = appendField(line, n, bytesOf(f.Value))
		}
	}
	line = append(line, "\r\n"...)
	x.sizeLine = line
	_, err := x.uw.Write(line)
	return err
}

// stopBody stops the request body copy, if any, once up is closed (a
// copy waiting for the client's next DATA would not notice), and returns
// how it ended: errBodyStopped when it had to be stopped.
func (x *h2exchange) stopBody(done chan error) error {
	if done == nil {
		return nil
	}
	x.s.stopBody()
	return <-done
}

// headFields begins the stream's response head with the status and the
// end-to-end fields of resp, and with setCookie the persistence cookie for
// b and the Cache-Control that keeps it private.
func (x *h2exchange) headFields(b *backend.Backend, resp *responseHead, setCookie bool) {
	s := x.s
	s.startHead(resp.status)
	private := false
	named := namesFields(resp.fields)
	for i := range resp.fields {
		f := &resp.fields[i]
		if notForwarded(f.name, false) || named && connectionNamed(resp.fields, f.name) {
			continue
		}
		if setCookie && asciiEqualFold(f.name, "cache-control") {
			private = true
			line := appendCacheControl(x.out[:0], f)
			s.addField(f.name, line[len(f.name)+2:len(line)-2])
			continue
		}
		s.addField(f.name, f.value)
	}
	if setCookie {
		line := x.st.codec.appendSetCookie(x.out[:0], b, time.Now())
		if v, ok := bytes.CutPrefix(line, []byte("Set-Cookie: ")); ok {
			s.head = appendH2Field(s.head, []byte("set-cookie"), bytes.TrimSuffix(v, crlfBytes))
		}
		if !private {
			s.head = appendH2FieldString(s.head, "cache-control", "private")
		}
	}
}

// relay writes the response in resp, read from up, to the stream: its
// end-to-end fields, the persistence cookie when setCookie, the body as it
// arrives, and the trailers of a chunked body. up goes back to the pool
// when the response ended where its framing says.
func (x *h2exchange) relay(b *backend.Backend, up *net.TCPConn, resp *responseHead, setCookie bool, bodyDone chan error) {
	s := x.s
	framing := framingOf(s.method == "HEAD", resp)
	if resp.te != nil && !resp.chunked && framing != noBody {
		// A coding other than chunked cannot be named over HTTP/2
		// without the field that lbctl does not forward.
		up.Close()
		x.stopBody(bodyDone)
		x.answer(http.StatusBadGateway)
		return
	}
	x.headFields(b, resp, setCookie)
	if framing == fixedLength {
		s.head = appendH2Field(s.head, bytesOf("content-length"), strconv.AppendInt(x.out[:0], resp.contentLength, 10))
	}
	x.body = h2BodyWriter{s: s, left: -1, n: &x.bytes}
	x.rd.idle = x.cfg.server
	var err error
	switch {
	case framing == noBody || framing == fixedLength && resp.contentLength == 0:
		err = s.sendHead(true, true)
	case framing == fixedLength:
		if err = s.sendHead(false, false); err == nil {
			x.body.left = resp.contentLength
			err = copyFixed(&x.body, &x.rd, resp.contentLength)
		}
	case framing == chunkedBody:
		if err = s.sendHead(false, false); err == nil {
			x.chunks = h2ChunkSink{w: &x.body, trailers: x.chunks.trailers[:0]}
			if err = copyChunked(&x.chunks, &x.rd, true); err == nil {
				err = x.endChunked()
			}
		}
	default: // untilClose
		if err = s.sendHead(false, false); err == nil {
			if err = copyUntilEOF(&x.body, &x.rd, false); err == nil {
				err = s.sendData(nil, true)
			}
		}
	}
	x.rd.idle = 0
	bodyErr := x.joinBody(bodyDone, up, err != nil)
	endKnown := endsAsFramed(framing, resp)
	// detach reports whether a reset of the stream closed up: only if
	// not is up still open and ready for the pool.
	if err == nil && bodyErr == nil && endKnown && !resp.close && x.rd.buffered() == 0 && s.detach() {
		s.c.cl.p.release(x.st, x.cfg, b, up, x.upIO.until)
		return
	}
	// A response cut short leaves the stream without its end: it is
	// reset when the exchange is over (see h2stream.finish).
	up.Close()
}

// endChunked ends a response whose body was chunked: with the backend's
// trailer fields as a last HEADERS frame, or an empty last DATA frame.
func (x *h2exchange) endChunked() error {
	s := x.s
	if len(x.chunks.trailers) == 0 {
		return s.sendData(nil, true)
	}
	s.startTrailers()
	s.head = append(s.head, x.chunks.trailers...)
	return s.sendTrailers()
}

// joinBody waits for the request body after the response, as
// session.joinBody does: a backend that answered before reading it all
// gets a second, then the copy is stopped by closing up.
func (x *h2exchange) joinBody(done chan error, up *net.TCPConn, failed bool) error {
	if done == nil {
		return nil
	}
	if failed {
		up.Close()
		return x.stopBody(done)
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		up.Close()
		x.stopBody(done)
		return errBodyStopped
	}
}

// h2BodyWriter writes a response body to a stream as DATA frames, each
// piece as it comes, the last one (when the length is known) with
// END_STREAM.
type h2BodyWriter struct {
	s    *h2stream
	left int64  // bytes of the body still to come; -1 when not known
	n    *int64 // bytes written
}

func (w *h2BodyWriter) Write(p []byte) (int, error) {
	end := false
	if w.left >= 0 {
		w.left -= int64(len(p))
		end = w.left == 0
	}
	if err := w.s.sendData(p, end); err != nil {
		return 0, err
	}
	*w.n += int64(len(p))
	return len(p), nil
}

// h2ChunkSink takes a chunked body as copyChunked writes it, checked and
// in lbctl's own framing, and passes on the chunks' data, keeping the
// trailer fields for the end of the stream. It follows copyChunked's
// writes: each size line in one write, then the chunk's data in one or
// more, then its CRLF in one; after the last chunk, each trailer line in
// one write and the empty line.
type h2ChunkSink struct {
	w        io.Writer
	state    uint8  // 0: a size line comes next; 1: data; 2: the CRLF after it; 3: trailers
	left     int64  // data bytes of the chunk still to come
	trailers []byte // the trailer fields, encoded (see appendH2Field)
}

func (k *h2ChunkSink) Write(p []byte) (int, error) {
	switch k.state {
	case 0:
		size, _ := parseChunkSize(p)
		k.left = size
		k.state = 1
		if size == 0 {
			k.state = 3
		}
	case 1:
		if _, err := k.w.Write(p); err != nil {
			return 0, err
		}
		if k.left -= int64(len(p)); k.left == 0 {
			k.state = 2
		}
	case 2:
		k.state = 0
	case 3:
		line := bytes.TrimSuffix(p, crlfBytes)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && !notForwarded(name, false) {
			k.trailers = appendH2Field(k.trailers, name, bytes.Trim(value, " \t"))
		}
	}
	return len(p), nil
}

// bytesOf returns the bytes of v without copying them, for functions
// that only read them while v lives.
func bytesOf(v string) []byte { return unsafe.Slice(unsafe.StringData(v), len(v)) }

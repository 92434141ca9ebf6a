//lint:file-ignore SA1019 x/net/http2 marks its Server deprecated in favour of net/http's, which owns its accept loop and offers no way to serve one connection that lbctl accepted and handshook itself: ServeConn does.

package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
)

// HTTP/2 to clients is a bridge: golang.org/x/net/http2's server speaks
// the protocol (framing, HPACK, flow control, stream limits, and the
// mitigations of the rapid reset and CONTINUATION floods), and hands each
// stream to serveStream as an http.Request. serveStream forwards it over
// the same HTTP/1.1 kept-alive backend pool as the HTTP/1.1 front door,
// with the same choice of backend (backend.Attempt over the same cookie
// codec), the same rules of which fields are forwarded (notForwarded,
// stripCookie), the same response parser and body copies (parseResponseHead,
// copyFixed, copyChunked, copyUntilEOF), and the same failover and passive
// health. What it does not share is the session: a stream's request is
// already parsed by the HTTP/2 server, and its answer goes out as frames.

// h2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS: the streams one client
// connection may have open at once.
const h2MaxStreams = 100

// h2front holds the HTTP/2 servers of a proxy. Its zero value is ready.
//
// An http2.Server's idle timeout is read by its connections while they
// run, so it cannot change; a connection is served by the server made for
// the idle timeout in force when it starts, and a new one is made when
// Reconfigure changes it.
type h2front struct {
	cur atomic.Pointer[h2server] // the server for the current idle timeout

	mu  sync.Mutex  // guards all; taken only to make a server and at Shutdown
	all []*h2server // every server made, for goAway

	live h2clients // the connections being served, for CloseConns
}

type h2server struct {
	idle time.Duration
	srv  *http2.Server
	// base exists for its shutdown hook: http2.ConfigureServer registers
	// on it the GOAWAY that every connection of srv gets at Shutdown.
	base *http.Server
}

// server returns the HTTP/2 server for connections whose idle timeout is
// idle.
func (h *h2front) server(idle time.Duration) *http2.Server {
	if s := h.cur.Load(); s != nil && s.idle == idle {
		return s.srv
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.cur.Load(); s != nil && s.idle == idle {
		return s.srv
	}
	s := &h2server{idle: idle, srv: &http2.Server{MaxConcurrentStreams: h2MaxStreams, IdleTimeout: idle}, base: &http.Server{}}
	http2.ConfigureServer(s.base, s.srv)
	h.all = append(h.all, s)
	h.cur.Store(s)
	return s.srv
}

// goAway tells every HTTP/2 client connection to start no new stream; each
// closes once its streams have ended.
func (h *h2front) goAway() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.all {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // only the hooks are wanted: there is no listener to wait for
		s.base.Shutdown(ctx)
	}
}

// serveH2 serves a TLS connection that negotiated "h2" until it ends, for
// client (the PROXY header's, or when not valid the peer's address). The
// connection never counts as idle for Shutdown: Shutdown sends GOAWAY,
// and the connection ends once its streams have.
func (p *Proxy) serveH2(ac *accept.Conn, sec *tls.Conn, client netip.AddrPort) {
	cfg := p.tuned.Load()
	c := &h2client{p: p, addr: client}
	if a, ok := ac.RemoteAddr().(*net.TCPAddr); ok && !client.IsValid() {
		c.addr = a.AddrPort()
	}
	if c.addr.IsValid() {
		addr := c.addr.Addr().Unmap()
		c.ip = addr.String()
		c.addrKey = backend.AddrHash(addr)
		c.pinKey = pinClientKey([]byte(c.ip))
	}
	p.h2.live.add(c)
	defer p.h2.live.remove(c)
	// A connection idle for timeouts.idle is closed.
	srv := p.h2.server(cfg.idle)
	srv.ServeConn(sec, &http2.ServeConnOpts{
		Handler: c,
		// The header list limit is limits.header_bytes (a larger list
		// gets 431).
		BaseConfig: &http.Server{MaxHeaderBytes: cfg.maxHead,
			// What the HTTP/2 server reports (protocol errors of clients)
			// is for debugging.
			ErrorLog: slog.NewLogLogger(p.logger().Handler(), slog.LevelDebug)},
	})
}

// h2client is one HTTP/2 client connection: what its streams share.
type h2client struct {
	p       *Proxy
	addr    netip.AddrPort // the client's address and port, for the access log
	ip      string         // the client's address, as X-Forwarded-For shows it
	addrKey uint64         // see session.addrKey
	pinKey  uint64         // see session.pinKey
	flights h2flights      // the exchanges in progress, for CloseConns
}

// ServeHTTP forwards one stream.
func (c *h2client) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := c.p
	cfg := p.tuned.Load()
	st := p.current()
	x := &h2exchange{c: c, cfg: cfg, st: st, w: w, r: r, flight: c.flights.claim()}
	if x.flight != nil {
		defer x.flight.free()
	}
	var try backend.Attempt
	if p.AccessLog != nil {
		x.acct.start = time.Now()
	}
	defer x.endAccount(&try)
	if r.Method == http.MethodConnect {
		// Neither CONNECT nor the extended CONNECT of RFC 8441 is
		// served over HTTP/2.
		x.answer(http.StatusMethodNotAllowed)
		return
	}
	hasBody := r.ContentLength != 0
	retryable := !hasBody && idempotent([]byte(r.Method))
	pinned := x.pinned()
	try = backend.NewAttempt(st.reg, cfg.sel, c.addrKey, pinned)
	next := func() *backend.Backend {
		b := try.Next()
		if b != nil && try.Pinned() {
			st.pins[b].add(c.pinKey, pinMinute(time.Now()))
		}
		return b
	}
	b := next()
	if !try.Pinned() {
		p.NAT.Session(c.addr) // see session.countSession
	}
	retriedOther, retriedFresh := false, false
	for {
		if b == nil {
			x.answer(http.StatusServiceUnavailable)
			return
		}
		up, reused, err := p.upstream(st, cfg, b, retryable && !retriedFresh)
		if err != nil {
			p.Health.ReportFailure(b, err)
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
			try.Fail(b)
			b = next()
			continue
		}
		switch x.roundTrip(b, up, reused, retryable, !try.Pinned()) {
		case relayed:
			b.CountServed()
			return
		case retryFresh:
			retriedFresh = true
		case retryOther:
			if retriedOther {
				x.answer(http.StatusBadGateway)
				return
			}
			retriedOther, retriedFresh = true, false
			try.Fail(b)
			b = next()
		}
	}
}

// pinned returns the backend the stream's persistence cookie names, or
// nil. HTTP/2 may split Cookie into several fields (RFC 9113 8.2.3); each
// is looked at.
func (x *h2exchange) pinned() *backend.Backend {
	for _, v := range x.r.Header.Values("Cookie") {
		if val, ok := findCookie([]byte(v), x.st.codec.name); ok {
			b := x.st.codec.backendFor(val)
			x.acct.named, x.acct.cookieSent = b, true
			return b
		}
	}
	return nil
}

// answer ends the stream with a canned error.
func (x *h2exchange) answer(status int) {
	x.acct.status = status
	h := x.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	x.w.WriteHeader(status)
	n, _ := io.WriteString(x.w, strconv.Itoa(status)+" "+http.StatusText(status)+"\n")
	x.bytes += int64(n)
}

// endAccount reports the stream as session.endAccount reports a request:
// to its backend's counts by status class, to the re-pin counts, to the
// front door's request count, and to the access log (whose Bytes are the
// body's: HTTP/2 heads are compressed per connection).
func (x *h2exchange) endAccount(try *backend.Attempt) {
	p, a := x.c.p, &x.acct
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
	r.Client = x.c.addr
	if a.b != nil {
		r.Backend = a.b.ID
	}
	r.SetRequest([]byte(x.r.Method), []byte(x.r.URL.RequestURI()))
	r.Status, r.Bytes, r.Head, r.Cookie = a.status, x.bytes, a.head, outcome
	p.AccessLog.Write(r)
}

// h2exchange is one stream's request on its way to a backend.
type h2exchange struct {
	c     *h2client
	cfg   *settings
	st    *poolState
	w     http.ResponseWriter
	r     *http.Request
	acct  account // what the stream reports when it ends
	bytes int64   // body bytes written to the stream
	// flight is the stream's slot for CloseConns; nil when the
	// connection had none free.
	flight *h2flight
}

// wasCut reports whether CloseConns cut the stream's exchange in
// progress.
func (x *h2exchange) wasCut() bool { return x.flight != nil && x.flight.wasCut() }

// roundTrip sends the request to b over up and relays the answer, with
// session.roundTrip's rules of who is answerable for a failure. It owns
// up.
func (x *h2exchange) roundTrip(b *backend.Backend, up *net.TCPConn, reused, retryable, setCookie bool) outcome {
	p, r := x.c.p, x.r
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
	cut := context.AfterFunc(r.Context(), func() { up.Close() })
	defer cut()
	uw := &timedWriter{c: up, idle: x.cfg.server}
	if _, err := uw.Write(x.appendHead(nil, b)); err != nil {
		up.Close()
		return x.failed(b, err, reused, retryable)
	}
	var bodyDone chan error
	if r.ContentLength != 0 {
		bodyDone = make(chan error, 1)
		go x.sendBody(uw, up, bodyDone)
	}
	upBuf := p.ups.Get().(*[]byte)
	defer p.ups.Put(upBuf)
	var rd connReader
	rd.reset(up, *upBuf, nil)
	var resp responseHead
	x.acct.sent = time.Now()
	up.SetReadDeadline(x.acct.sent.Add(x.cfg.server))
	for {
		head, partial, err := rd.readHead()
		if err != nil {
			up.Close()
			bodyErr := waitBody(bodyDone)
			var gone *clientGone
			if errors.As(bodyErr, &gone) || r.Context().Err() != nil {
				return relayed // the client reset the stream: nobody listens
			}
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				if bodyErr == nil {
					x.backendFault(b, err)
				}
				x.answer(http.StatusGatewayTimeout)
				return relayed
			case errors.Is(err, errHeadTooLarge):
				x.backendFault(b, err)
				x.answer(http.StatusBadGateway)
				return relayed
			}
			return x.failed(b, err, reused && !partial, retryable)
		}
		if err := parseResponseHead(head, &resp); err != nil || resp.status == 101 {
			up.Close()
			waitBody(bodyDone)
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
		// Interim responses (100, 103) are not relayed over HTTP/2.
		up.SetReadDeadline(time.Now().Add(x.cfg.server))
	}
	x.relay(b, up, &rd, &resp, setCookie, bodyDone, cut)
	return relayed
}

// failed is session.failed for a stream: a stale kept-alive connection is
// retried fresh, a retryable request goes to another backend, anything
// else gets 502.
func (x *h2exchange) failed(b *backend.Backend, err error, stale, retryable bool) outcome {
	if x.r.Context().Err() != nil {
		return relayed // the client reset the stream, which closed up
	}
	if x.wasCut() {
		// CloseConns cut the exchange: as an HTTP/1.1 client's connection
		// is closed, the stream is reset, neither counted against the
		// backend nor tried elsewhere.
		panic(http.ErrAbortHandler)
	}
	if stale && retryable {
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
	x.c.p.Health.ReportFailure(b, err)
	x.c.p.logger().Debug("backend failed", "backend", b.ID, "error", err, "protocol", "h2")
}

// appendHead appends the HTTP/1.1 request head that b gets for the
// stream: the request line, Host from :authority, every field that
// notForwarded lets through with the persistence cookie removed, the
// framing lbctl sends, and the forwarding fields.
func (x *h2exchange) appendHead(dst []byte, b *backend.Backend) []byte {
	r := x.r
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.URL.RequestURI()...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	if r.Host != "" {
		dst = append(dst, r.Host...)
	} else {
		dst = append(dst, b.Address()...)
	}
	dst = append(dst, "\r\n"...)
	var cookie []byte
	for name, values := range r.Header {
		n := []byte(name)
		if notForwarded(n, true) {
			continue
		}
		if asciiEqualFold(n, "cookie") {
			// The crumbs of an HTTP/2 Cookie go to HTTP/1.1 as one field
			// (RFC 9113 8.2.3).
			for _, v := range values {
				stripped, removed := stripCookie(nil, []byte(v), x.st.codec.name)
				if !removed {
					stripped = []byte(v)
				}
				if len(stripped) == 0 {
					continue
				}
				if len(cookie) > 0 {
					cookie = append(cookie, "; "...)
				}
				cookie = append(cookie, stripped...)
			}
			continue
		}
		for _, v := range values {
			dst = appendField(dst, n, []byte(v))
		}
	}
	if len(cookie) > 0 {
		dst = appendField(dst, []byte("Cookie"), cookie)
	}
	switch {
	case r.ContentLength > 0:
		dst = appendContentLength(dst, r.ContentLength)
	case r.ContentLength < 0:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH":
		dst = appendContentLength(dst, 0)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	dst = append(dst, x.c.ip...)
	dst = append(dst, "\r\nX-Real-IP: "...)
	dst = append(dst, x.c.ip...)
	return append(dst, "\r\nX-Forwarded-Proto: https\r\n\r\n"...)
}

// sendBody streams the request body of the stream to the backend as it
// arrives (HTTP/2 flow control holds the client back while the backend is
// slow): as it is when its length is known, chunked otherwise. On failure
// it closes up, so that the exchange waiting for the response learns of
// it; a failed read of the client is a *clientGone.
func (x *h2exchange) sendBody(uw *timedWriter, up *net.TCPConn, done chan<- error) {
	chunked := x.r.ContentLength < 0
	buf := x.c.p.ups.Get().(*[]byte)
	defer x.c.p.ups.Put(buf)
	var sizeLine []byte
	var err error
	for {
		n, rerr := x.r.Body.Read((*buf)[:32<<10])
		if n > 0 {
			if chunked {
				sizeLine = strconv.AppendInt(sizeLine[:0], int64(n), 16)
				sizeLine = append(sizeLine, "\r\n"...)
				if _, err = uw.Write(sizeLine); err != nil {
					break
				}
			}
			if _, err = uw.Write((*buf)[:n]); err != nil {
				break
			}
			if chunked {
				if _, err = uw.Write(crlfBytes); err != nil {
					break
				}
			}
		}
		if rerr == io.EOF {
			if chunked {
				_, err = uw.Write(lastChunk)
			}
			break
		}
		if rerr != nil {
			err = &clientGone{rerr}
			break
		}
	}
	if err != nil {
		up.Close()
	}
	done <- err
}

// waitBody waits for the request body copy, if any, and returns how it
// ended.
func waitBody(done chan error) error {
	if done == nil {
		return nil
	}
	return <-done
}

// relay writes the response in resp, read from up through rd, to the
// stream: its end-to-end fields, the persistence cookie when setCookie,
// and the body as it arrives. up goes back to the pool when the response
// ended where its framing says.
func (x *h2exchange) relay(b *backend.Backend, up *net.TCPConn, rd *connReader, resp *responseHead, setCookie bool, bodyDone chan error, cut func() bool) {
	h := x.w.Header()
	private := false
	named := namesFields(resp.fields)
	for i := range resp.fields {
		f := &resp.fields[i]
		if notForwarded(f.name, false) || named && connectionNamed(resp.fields, f.name) {
			continue
		}
		if setCookie && asciiEqualFold(f.name, "cache-control") {
			private = true
			line := appendCacheControl(nil, f)
			h.Add(string(f.name), string(line[len(f.name)+2:len(line)-2]))
			continue
		}
		h.Add(string(f.name), string(f.value))
	}
	if setCookie {
		line := x.st.codec.appendSetCookie(nil, b, time.Now())
		if v, ok := bytes.CutPrefix(line, []byte("Set-Cookie: ")); ok {
			h.Add("Set-Cookie", string(bytes.TrimSuffix(v, crlfBytes)))
		}
		if !private {
			h.Add("Cache-Control", "private")
		}
	}
	framing := framingOf(x.r.Method == "HEAD", resp)
	if framing == fixedLength {
		h.Set("Content-Length", strconv.FormatInt(resp.contentLength, 10))
	}
	if resp.te != nil && !resp.chunked && framing != noBody {
		// A coding other than chunked cannot be named over HTTP/2
		// without the field that lbctl does not forward.
		up.Close()
		waitBody(bodyDone)
		x.answer(http.StatusBadGateway)
		return
	}
	x.w.WriteHeader(resp.status)
	fw := h2Flusher{w: x.w, rc: http.NewResponseController(x.w), n: &x.bytes}
	rd.idle = x.cfg.server
	var err error
	switch framing {
	case fixedLength:
		err = copyFixed(fw, rd, resp.contentLength)
	case chunkedBody:
		err = copyChunked(fw, rd, false)
	case untilClose:
		err = copyUntilEOF(fw, rd, false)
	}
	rd.idle = 0
	bodyErr := x.joinBody(bodyDone, up, err != nil)
	endKnown := framing != untilClose && !(resp.status == 204 && (resp.contentLength > 0 || resp.chunked))
	// cut() reports whether it stopped the closing of up on a reset:
	// only then is up still open and ready for the pool.
	if err == nil && bodyErr == nil && endKnown && !resp.close && rd.buffered() == 0 && cut() {
		x.c.p.release(x.st, x.cfg, b, up)
		return
	}
	up.Close()
	if err != nil {
		// The head has gone out: the stream can only be reset.
		panic(http.ErrAbortHandler)
	}
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
		return <-done
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		up.Close()
		<-done
		return errBodyStopped
	}
}

// h2Flusher writes a response body to a stream, each piece sent as it
// comes, so that a streamed body is not held in the stream's buffer.
type h2Flusher struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	n  *int64 // bytes written
}

func (f h2Flusher) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	*f.n += int64(n)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

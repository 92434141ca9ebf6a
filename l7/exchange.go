package l7

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/splice"
)

// outcome is how one attempt to forward a request ended.
type outcome int

const (
	relayed    outcome = iota // a response (or an error answer) reached the client
	retryFresh                // a kept-alive backend connection was stale: try a new one
	retryOther                // the backend failed before answering a retryable request
)

// exchange forwards the request in s.req to a backend and relays the
// response. It reports whether the client connection can carry another
// request.
func (s *session) exchange() bool {
	p := s.p
	req := &s.req
	hasBody := req.chunked || req.contentLength > 0
	retryable := !hasBody && idempotent(req.method)
	// The body copy may reuse the buffer the head's slices point into, so
	// what the response needs from the request is taken now.
	s.isHead = string(req.method) == "HEAD"
	s.http10 = string(req.proto) == "HTTP/1.0"

	// The first chunk-size line is checked before anything is sent, so a
	// malformed one never reaches a backend. A client that waits for
	// 100 Continue sends no body before the backend asks for it.
	if req.chunked && !req.expectContinue {
		if err := s.checkFirstChunk(); err != nil {
			switch {
			case errors.Is(err, errBadChunk):
				s.reject(400)
			case errors.Is(err, os.ErrDeadlineExceeded):
				s.reject(408)
			}
			return false
		}
	}

	if cfg := p.tuned.Load(); cfg != s.cfg {
		s.tune(cfg)
	}
	s.st = p.current()
	s.try = backend.NewAttempt(s.st.reg, s.cfg.sel, s.addrKey, s.pinned())
	s.keep = false
	p.forward(s, &s.try, retryable)
	return s.keep
}

// frontRequest is a request on its way to a backend, as forward sees it,
// whichever front door it came through: an HTTP/1.1 session's request or
// an HTTP/2 stream's.
type frontRequest interface {
	// next returns the backend to try next (see session.next).
	next() *backend.Backend
	// countSession counts a request that no cookie pinned as a new
	// session of its client (see natview).
	countSession()
	// connect returns a connection to b: a kept-alive one if reuse and
	// one is idle, else a new one (see Proxy.upstreamFor).
	connect(b *backend.Backend, reuse bool) (up *net.TCPConn, reused bool, err error)
	// attempt sends the request to b over up and relays the answer, and
	// says how that went; it owns up.
	attempt(b *backend.Backend, up *net.TCPConn, reused, retryable, setCookie bool) outcome
	// refuse answers with a canned error: 503 when no backend is left to
	// try, 502 when two failed the request.
	refuse(status int)
}

// forward sends r to a backend and relays the answer, by the rules both
// front doors share: the attempt try offers the backends in turn, the
// cookie's first; one that cannot be connected to counts as failed and the
// next is tried (nothing was sent: any request may move); a kept-alive
// connection that turns out stale is retried once on a new one; a
// retryable request that a backend fails goes to one other backend. With
// no backend left the answer is 503, after two failures 502.
func (p *Proxy) forward(r frontRequest, try *backend.Attempt, retryable bool) {
	b := r.next()
	if !try.Pinned() {
		r.countSession()
	}
	retriedOther, retriedFresh := false, false
	for {
		if b == nil {
			r.refuse(503)
			return
		}
		up, reused, err := r.connect(b, retryable && !retriedFresh)
		if err != nil {
			p.Health.ReportFailure(b, err)
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
			try.Fail(b)
			b = r.next()
			continue
		}
		switch r.attempt(b, up, reused, retryable, !try.Pinned()) {
		case relayed:
			b.CountServed()
			return
		case retryFresh:
			retriedFresh = true
		case retryOther:
			if retriedOther {
				r.refuse(502)
				return
			}
			retriedOther, retriedFresh = true, false
			try.Fail(b)
			b = r.next()
		}
	}
}

// attempt is roundTrip for forward: whether the client connection can
// carry another request is kept in s.keep.
func (s *session) attempt(b *backend.Backend, up *net.TCPConn, reused, retryable, setCookie bool) outcome {
	keep, out := s.roundTrip(b, up, reused, retryable, setCookie)
	s.keep = keep
	return out
}

// refuse answers with a canned error for forward.
func (s *session) refuse(status int) {
	s.keep = s.answer(status, s.req.chunked || s.req.contentLength > 0)
}

// connect is upstreamFor for forward.
func (s *session) connect(b *backend.Backend, reuse bool) (*net.TCPConn, bool, error) {
	return s.p.upstreamFor(s.st, s.cfg, b, reuse, s.from, s.client, &s.upIO)
}

// pinned returns the backend the request's persistence cookie names, or
// nil. A cookie naming a backend that a reload removed names none.
func (s *session) pinned() *backend.Backend {
	name := s.st.codec.name
	for i := range s.req.fields {
		f := &s.req.fields[i]
		if !asciiEqualFold(f.name, "cookie") {
			continue
		}
		if v, ok := findCookie(f.value, name); ok {
			b := s.st.codec.backendFor(v)
			s.acct.named, s.acct.cookieSent = b, true
			return b
		}
	}
	return nil
}

// next returns the backend the exchange tries next (see backend.Attempt):
// first the one the cookie names while it keeps its pinned clients (up,
// and ready or draining before its deadline), counted then as a client it
// keeps (see Proxy.Pinned); else the selector's choice.
func (s *session) next() *backend.Backend {
	b := s.try.Next()
	if b != nil && s.try.Pinned() {
		s.st.pins[b].add(s.pinKey, pinMinute(time.Now()))
	}
	return b
}

// answer writes a canned error and reports whether the connection can go
// on: not when the request's body is still unread. The answer to a HEAD
// request is the head alone (RFC 9110 9.3.2): a body there would be read
// as the start of the next response.
func (s *session) answer(status int, hasBody bool) bool {
	resp := cannedFor(status)
	s.acct.status = status
	keep := !hasBody && !s.req.close && !s.p.loop.Closing()
	msg := resp.close
	if keep {
		msg = resp.keepAlive
	}
	if s.isHead {
		msg = msg[:len(msg)-resp.bodyLen]
	}
	if _, err := s.cw.Write(msg); err != nil {
		return false
	}
	return keep
}

// roundTrip sends the request to b over up and relays the answer. It owns
// up: it either returns it to the pool or closes it.
//
// How an exchange fails decides who is answerable for it. The client is
// for a malformed body (400, the connection closes) and for going away or
// stalling mid-body (no answer: nobody is listening); neither counts
// against the backend. The backend is for a reset, EOF or close before its
// response head, a malformed or oversized head, and silence past
// timeouts.server once it had the whole request: these count as failed
// checks of its health. Whatever happens after the response head went out
// can only close the connections.
func (s *session) roundTrip(b *backend.Backend, up *net.TCPConn, reused, retryable, setCookie bool) (keep bool, out outcome) {
	p := s.p
	req := &s.req
	b.Acquire()
	defer b.Release()
	s.tried(b)
	s.flight.begin(b, up)
	defer s.flight.end()

	s.acct.sent = armUp(&s.uw, &s.upIO, up, s.cfg.server)
	s.out = s.appendRequestHead(s.out[:0], b)
	hasBody := req.chunked || req.contentLength > 0
	if err := s.sendHead(hasBody); err != nil {
		up.Close()
		return s.failed(b, err, reused, retryable, false)
	}

	var bodyDone chan error
	if hasBody {
		bodyDone = make(chan error, 1)
		s.client.SetReadDeadline(deadline(s.cfg.idle))
		s.in.idle = s.cfg.idle
		go s.sendBody(&s.uw, up, bodyDone)
	}

	// The response is read through a pooled buffer, held only for the
	// exchange.
	upBuf := p.ups.Get().(*[]byte)
	defer func() {
		s.up.reset(nil, nil, nil)
		p.ups.Put(upBuf)
	}()
	s.up.reset(&s.upIO, *upBuf, nil)
	for {
		head, partial, err := s.up.readHead()
		if err != nil {
			return s.headFailed(b, up, bodyDone, err, reused && !partial, retryable)
		}
		if err := parseResponseHead(head, &s.resp); err != nil {
			up.Close()
			bodyErr := s.stopBody(bodyDone)
			s.backendFault(b, err)
			if s.clientFault(bodyErr) {
				return false, relayed
			}
			return s.answer(502, bodyDone != nil), relayed
		}
		s.headRead(b)
		if s.resp.status >= 200 {
			break
		}
		if s.resp.status == 101 {
			return s.switchProtocols(b, up, setCookie, bodyDone), relayed
		}
		// An interim response (100 Continue, 103 Early Hints) goes to an
		// HTTP/1.1 client as it is (HTTP/1.0 has none, RFC 9110 15.2);
		// the final one follows.
		if !s.http10 {
			s.out = s.appendResponseHead(s.out[:0], nil, false, false)
			if _, err := s.cw.Write(s.out); err != nil {
				up.Close()
				s.stopBody(bodyDone)
				return false, relayed
			}
		}
		up.SetReadDeadline(time.Now().Add(s.cfg.server))
	}
	return s.relayResponse(b, up, setCookie, bodyDone), relayed
}

// failed handles a backend that broke before answering: a stale kept-alive
// connection is retried fresh, a retryable request goes to another
// backend, anything else gets 502.
func (s *session) failed(b *backend.Backend, err error, stale, retryable, sent bool) (bool, outcome) {
	if s.flight.wasCut() {
		// CloseConns closed the connection: neither a stale one nor
		// the backend's failure, and the client's connection closes.
		return false, relayed
	}
	if stale && retryable || errors.Is(err, errIdleStale) {
		return false, retryFresh
	}
	s.backendFault(b, err, "request_sent", sent)
	if retryable {
		return false, retryOther
	}
	return s.answer(502, s.req.chunked || s.req.contentLength > 0), relayed
}

// backendFault counts err, the backend's own failure in an exchange,
// against its health, and logs it at debug level with attrs.
func (s *session) backendFault(b *backend.Backend, err error, attrs ...any) {
	s.p.Health.ReportFailure(b, err)
	s.p.logger().Debug("backend failed", append([]any{"backend", b.ID, "error", err}, attrs...)...)
}

// clientFault answers for a request body that failed on the client's side
// and reports true; for any other outcome of the body copy (nil too) it
// does nothing and reports false. A malformed body gets 400 and the
// connection closes; a client that went away or stalled gets nothing.
// Neither is the backend's fault. Call it only before a response head has
// gone out.
func (s *session) clientFault(bodyErr error) bool {
	if errors.Is(bodyErr, errBadChunk) {
		s.reject(400)
		return true
	}
	return clientFailed(bodyErr)
}

// clientFailed reports whether a request body copy ended by the client's
// fault (a malformed body) or departure.
func clientFailed(bodyErr error) bool {
	if bodyErr == nil {
		return false
	}
	var gone *clientGone
	return errors.Is(bodyErr, errBadChunk) || errors.As(bodyErr, &gone)
}

// headFailed judges an exchange whose response head could not be read
// (err), as roundTrip says who is answerable (see judgeHead); it closes
// up. The body copy is waited for before anything is judged: when it
// fails it closes up, so a client's fault often shows here first as a
// failed read of the response. retryFresh says whether the request may go
// again on a new connection to b (a kept-alive connection that failed
// before any of the response came).
func (s *session) headFailed(b *backend.Backend, up *net.TCPConn, bodyDone chan error, err error, retryFresh, retryable bool) (keep bool, out outcome) {
	up.Close()
	bodyErr := s.stopBody(bodyDone)
	switch v, why := judgeHead(err, bodyErr, s.clientFault(bodyErr) || s.flight.wasCut()); v {
	case headClient:
		return false, relayed
	case headTimeout:
		if bodyErr == nil {
			s.backendFault(b, why)
		}
		return s.answer(504, bodyDone != nil), relayed
	case headTooLarge:
		s.backendFault(b, why)
		return s.answer(502, bodyDone != nil), relayed
	default:
		return s.failed(b, why, retryFresh, retryable, true)
	}
}

// headVerdict is what becomes of an exchange whose response head could
// not be read, for both front doors.
type headVerdict uint8

const (
	headClient   headVerdict = iota // the client failed or left, or CloseConns cut the exchange: no answer, nobody's fault
	headTimeout                     // 504; the backend's fault only if it had the whole request
	headTooLarge                    // 502, the backend's fault
	headFailed                      // the backend failed: retried or 502, as failed says
)

// judgeHead returns the verdict on a response head that could not be read
// (err) once the request body copy ended with bodyErr (nil when there was
// none or it was sent whole), and the error that says why. clientGone
// says the client is answerable, or gone. Silence counts against the
// backend only once it had the whole request: while the body still flowed,
// a slow client may be what it waited for (the caller checks bodyErr).
func judgeHead(err, bodyErr error, clientGone bool) (headVerdict, error) {
	switch {
	case clientGone:
		return headClient, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return headTimeout, err
	case errors.Is(err, errHeadTooLarge):
		return headTooLarge, err
	case errors.Is(err, net.ErrClosed) && bodyErr != nil && !errors.Is(bodyErr, errBodyStopped):
		// The body copy closed up when writing to the backend failed: its
		// error says what happened.
		return headFailed, bodyErr
	}
	return headFailed, err
}

// sendHead writes the request head in s.out to the backend. Without a
// body to follow, it returns once the answer can be read (see upIO.send).
func (s *session) sendHead(hasBody bool) error {
	var err error
	if hasBody {
		_, err = s.uw.Write(s.out)
	} else {
		_, err = s.upIO.send(s.out)
	}
	return err
}

// switchProtocols relays a 101 response and then the tunnel it opens, but
// only for a switch the client asked for, to a protocol it offered, and
// after a request without a body (whose head is still intact to compare
// with); otherwise it closes up and answers 502. A backend that switches
// on its own is not counted against its health: any client could provoke
// it.
func (s *session) switchProtocols(b *backend.Backend, up *net.TCPConn, setCookie bool, bodyDone chan error) bool {
	if !s.req.upgrade || bodyDone != nil || !upgradeAgreed(s.req.fields, s.resp.fields) {
		up.Close()
		if s.clientFault(s.stopBody(bodyDone)) {
			return false
		}
		s.p.logger().Debug("backend switched protocols unasked", "backend", b.ID)
		return s.answer(502, bodyDone != nil)
	}
	return s.tunnel(b, up, setCookie)
}

// relayResponse writes the final response head in s.resp and its body to
// the client, then settles both connections.
func (s *session) relayResponse(b *backend.Backend, up *net.TCPConn, setCookie bool, bodyDone chan error) bool {
	p := s.p
	req, resp := &s.req, &s.resp
	http10 := s.http10

	framing := framingOf(s.isHead, resp)
	dechunk := framing == chunkedBody && http10
	if http10 && framing != noBody && resp.te != nil && !onlyChunked(resp.te) {
		// An HTTP/1.0 client knows no transfer coding (RFC 9112 6.1):
		// chunked is unwrapped for it, but gzip and the like cannot be
		// passed on without the field that names them. Not the backend's
		// fault: it answered an HTTP/1.1 request.
		up.Close()
		if s.clientFault(s.stopBody(bodyDone)) {
			return false
		}
		p.logger().Debug("transfer coding an HTTP/1.0 client cannot take", "backend", b.ID, "transfer_encoding", string(resp.te))
		return s.answer(502, bodyDone != nil)
	}
	// A body that runs until the backend closes is re-framed as chunked
	// for an HTTP/1.1 client, whose connection then stays open; one whose
	// Transfer-Encoding does not end in chunked keeps that field, so it
	// runs until close towards the client too, as it does for HTTP/1.0.
	reframe := framing == untilClose && !http10 && resp.te == nil
	closeAfter := req.close || p.loop.Closing() || framing == untilClose && !reframe || dechunk
	// The backend connection may carry another exchange only if this
	// response ends where its framing says.
	endKnown := endsAsFramed(framing, resp)

	var cookieFor *backend.Backend
	if setCookie {
		cookieFor = b
	}
	s.out = s.appendResponseHead(s.out[:0], cookieFor, closeAfter, framing == chunkedBody && !dechunk || reframe)
	// A small body already in the buffer goes out with the head, in one
	// write.
	bodyLeft := resp.contentLength
	if framing == fixedLength && int64(s.up.buffered()) >= bodyLeft && int(bodyLeft) <= cap(s.out)-len(s.out) {
		s.out = append(s.out, s.up.buf[s.up.r:s.up.r+int(bodyLeft)]...)
		s.up.r += int(bodyLeft)
		bodyLeft = 0
	}
	if bodyDone == nil && endKnown && !resp.close && s.up.buffered() == 0 &&
		(framing == noBody || framing == fixedLength && bodyLeft == 0) {
		// The whole response is in s.out and the backend connection owes
		// nothing more: it goes back before the answer goes out, so that
		// the client's next request, which may follow the answer at
		// once, finds it kept rather than dialling a second one.
		p.release(s.st, s.cfg, b, up, s.upIO.until)
		_, err := s.cw.Write(s.out)
		return err == nil && !closeAfter
	}
	if _, err := s.cw.Write(s.out); err != nil {
		up.Close()
		s.stopBody(bodyDone)
		return false
	}

	s.up.idle = s.cfg.server
	var err error
	switch framing {
	case fixedLength:
		err = copyFixed(&s.cw, &s.up, bodyLeft)
	case chunkedBody:
		err = copyChunked(&s.cw, &s.up, !dechunk)
	case untilClose:
		err = copyUntilEOF(&s.cw, &s.up, reframe)
	}
	s.up.idle = 0
	if err != nil {
		// The head has gone out, so whoever failed, the client
		// connection can only close. A backend that cuts its body is
		// not counted against its health: that is judged before the
		// head.
		up.Close()
		if bodyErr := s.stopBody(bodyDone); s.cw.err == nil && !clientFailed(bodyErr) {
			p.logger().Debug("backend response cut", "backend", b.ID, "error", err)
		}
		return false
	}

	bodyOK := s.joinBody(bodyDone, up)
	if bodyOK && endKnown && !resp.close && s.up.buffered() == 0 {
		// The read deadline stays: nothing reads a kept connection until
		// its next exchange sets a fresh one.
		p.release(s.st, s.cfg, b, up, s.upIO.until)
	} else {
		up.Close()
	}
	return bodyOK && !closeAfter
}

// bodyFraming is how a response's body is delimited on the backend
// connection.
type bodyFraming uint8

const (
	noBody      bodyFraming = iota // the answer to HEAD, a 204 or a 304
	fixedLength                    // Content-Length
	chunkedBody                    // Transfer-Encoding ending in chunked
	untilClose                     // neither: the body runs until the backend closes
)

// endsAsFramed reports whether a response of this framing ends exactly
// where its framing says, so that its backend connection may carry
// another exchange: a length, chunked, or no body by the rules of HEAD,
// 204 and 304. A 204 that announces a body is framed two ways: what
// follows it cannot be trusted.
func endsAsFramed(framing bodyFraming, resp *responseHead) bool {
	return framing != untilClose && !(resp.status == 204 && (resp.contentLength > 0 || resp.chunked))
}

// framingOf returns the framing of the body of resp, the answer to a HEAD
// request when head (RFC 9112 6.3).
func framingOf(head bool, resp *responseHead) bodyFraming {
	switch {
	case head || resp.status == 204 || resp.status == 304:
		return noBody
	case resp.chunked:
		return chunkedBody
	case resp.contentLength >= 0:
		return fixedLength
	}
	return untilClose
}

// onlyChunked reports whether the transfer codings te are chunked alone.
func onlyChunked(te []byte) bool { return asciiEqualFold(bytes.Trim(te, ", \t"), "chunked") }

// upgradeAgreed reports whether a 101 response switches to protocols the
// client offered: its Upgrade fields name at least one protocol, and each
// is one the request's Upgrade fields list (RFC 9110 7.8), compared
// without regard to ASCII case.
func upgradeAgreed(req, resp []field) bool {
	named := false
	for i := range resp {
		if !asciiEqualFold(resp[i].name, "upgrade") {
			continue
		}
		for proto, rest := nextToken(resp[i].value); proto != nil || len(rest) > 0; proto, rest = nextToken(rest) {
			if len(proto) == 0 {
				continue
			}
			if !offered(req, proto) {
				return false
			}
			named = true
		}
	}
	return named
}

// offered reports whether the request's Upgrade fields list proto.
func offered(req []field, proto []byte) bool {
	for i := range req {
		if !asciiEqualFold(req[i].name, "upgrade") {
			continue
		}
		for tok, rest := nextToken(req[i].value); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if tokenEqual(tok, proto) {
				return true
			}
		}
	}
	return false
}

// tokenEqual reports whether a and b are equal without regard to ASCII
// case (and only ASCII: no Unicode folding of bytes a field may carry).
func tokenEqual(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tunnel turns the exchange into a byte relay after 101 Switching
// Protocols: the response head goes to the client, bytes already buffered
// on either side go across, then both directions are spliced until they
// end. The client connection is done afterwards.
func (s *session) tunnel(b *backend.Backend, up *net.TCPConn, setCookie bool) bool {
	defer up.Close()
	var cookieFor *backend.Backend
	if setCookie {
		cookieFor = b
	}
	s.out = s.appendResponseHead(s.out[:0], cookieFor, false, false)
	if _, err := s.cw.Write(s.out); err != nil {
		return false
	}
	if n := s.up.buffered(); n > 0 {
		if _, err := s.cw.Write(s.up.buf[s.up.r:s.up.w]); err != nil {
			return false
		}
	}
	if n := s.in.buffered(); n > 0 {
		if _, err := up.Write(s.in.buf[s.in.r:s.in.w]); err != nil {
			return false
		}
		s.in.r = s.in.w
	}
	s.client.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})
	if s.sec != nil {
		relayTLS(s.sec, s.client, up, s.cfg.idle)
		return false
	}
	splice.Relay(s.client, up, s.cfg.idle)
	return false
}

// sendBody copies the request body from the client to the backend and
// reports how it ended: nil when it was sent whole; errBadChunk for a
// malformed chunked body; a *clientGone when reading the client failed
// (it went away or stalled); errBodyStopped when the exchange stopped the
// copy (see stopBody); or the error of writing to the backend. On failure
// it closes up, so that the exchange waiting for the response head learns
// of it at once.
func (s *session) sendBody(uw *timedWriter, up *net.TCPConn, done chan<- error) {
	// A body larger than the small buffer streams through a large one:
	// fewer, larger reads. The head's slices stay valid (see grow).
	if s.req.chunked || s.req.contentLength > int64(len(s.in.small)) {
		s.in.grow()
	}
	var err error
	if s.req.chunked {
		err = copyChunked(uw, &s.in, true)
	} else {
		err = copyFixed(uw, &s.in, s.req.contentLength)
	}
	if err != nil {
		// Judged before up is closed: closing it makes the exchange stop
		// this copy, which must not pass for the cause.
		switch {
		case errors.Is(err, errBadChunk), uw.err != nil:
		case s.in.stopped.Load():
			err = errBodyStopped
		default:
			err = &clientGone{err}
		}
		up.Close()
	}
	done <- err
}

// clientGone is a request body that could not be read from the client.
type clientGone struct{ err error }

func (e *clientGone) Error() string { return "reading request body: " + e.err.Error() }
func (e *clientGone) Unwrap() error { return e.err }

// joinBody waits for the request body to finish after the response has
// been relayed. A backend may answer before reading the whole body (a 413,
// say); then, after a short grace, the copy is stopped, and the client
// connection cannot be reused. It reports whether the body was sent whole.
func (s *session) joinBody(done chan error, up *net.TCPConn) bool {
	if done == nil {
		return true
	}
	var err error
	select {
	case err = <-done:
	default:
		t := time.NewTimer(time.Second)
		select {
		case err = <-done:
			t.Stop()
		case <-t.C:
			up.Close()
			s.stopBody(done)
			err = errBodyStopped
		}
	}
	s.in.idle = 0
	return err == nil
}

// stopBody ends a request body copy that may still be running and returns
// how the copy ended (see sendBody): errBodyStopped when it had to be
// stopped here. The caller closes up first, which unblocks the copy's
// writes; interrupting the client reader unblocks its reads.
func (s *session) stopBody(done chan error) error {
	if done == nil {
		return nil
	}
	var err error
	select {
	case err = <-done:
	default:
		s.in.interrupt()
		err = <-done
		s.in.resume()
	}
	s.in.idle = 0
	return err
}

// checkFirstChunk waits, within the header timeout already set on the
// client, for the first chunk-size line and checks it without consuming it.
// It reads only into the free end of the buffer, growing it if it can:
// moving the buffered bytes would overwrite the head that s.req still
// points into, so a line that does not fit behind a head of the largest
// size is refused.
func (s *session) checkFirstChunk() error {
	for {
		if i := bytes.IndexByte(s.in.buf[s.in.r:s.in.w], '\n'); i >= 0 {
			if _, ok := parseChunkSize(s.in.buf[s.in.r : s.in.r+i+1]); !ok || i+1 > maxChunkLine {
				return errBadChunk
			}
			return nil
		}
		if s.in.buffered() > maxChunkLine || s.in.w == len(s.in.buf) && !s.in.grow() {
			return errBadChunk
		}
		if err := s.in.fill(); err != nil {
			return err
		}
	}
}

// errBodyStopped means the backend answered before taking the whole body.
var errBodyStopped = errors.New("request body stopped after the response")

// idempotent reports whether a request with this method may be sent twice
// (RFC 9110 9.2.2).
func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

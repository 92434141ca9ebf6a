//go:build linux

package l7

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/evloop"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// This file is the loop engine's exchange (see loop_linux.go): a
// connection's steps from a request head to the end of its answer, each
// taken when its socket is ready, in the order the goroutine engine's
// handle, exchange and relayResponse take them.

// readRequest reads the next request head and starts its exchange, as
// the goroutine engine's handle does.
func (f *loopFront) readRequest(c *loopConn) step {
	if c.s == nil {
		if !c.client.Readable {
			return stepWait
		}
		f.attach(c)
	}
	s := c.s
	if s.in.buffered() == 0 {
		if !c.client.Readable {
			return stepWait
		}
		s.in.r, s.in.w, s.in.scan = 0, 0, 0
	}
	head, partial, err := s.in.readHead()
	if err != nil {
		switch {
		case err == errWouldBlock:
			if partial && !c.headTimed {
				// The request's first byte came: its head must be
				// whole within the header timeout.
				c.headTimed = true
				f.arm(c, s.cfg.header)
			}
			return stepWait
		case errors.Is(err, errHeadTooLarge):
			f.reject(c, 431)
		default:
			f.drop(c)
		}
		return stepGone
	}
	if headBlank(head) {
		// Empty lines before a request are ignored (RFC 9112 2.2), a few
		// of them.
		if c.blank++; c.blank > maxBlankHeads {
			f.reject(c, 400)
			return stepGone
		}
		return stepOn
	}
	c.blank = 0
	if err := parseRequestHead(head, &s.req); err != nil {
		var he *headError
		status := 400
		if errors.As(err, &he) {
			status = he.status
		}
		f.reject(c, status)
		return stepGone
	}
	if handedOver(&s.req, s.in.buffered()) {
		f.handOff(c, s.in.r-len(head))
		return stepGone
	}
	c.first = false
	s.beginAccount()
	f.startExchange(c)
	return stepOn
}

// handedOver reports whether the goroutine engine serves req and the rest
// of its connection: a request whose body has not all arrived with its
// head (buffered bytes follow the head), a chunked one, an upgrade or an
// Expect. A body that came whole with the head goes out with it.
func handedOver(req *requestHead, buffered int) bool {
	return req.chunked || req.contentLength > int64(buffered) || req.upgrade || req.expectContinue
}

// awaitRequest readies c for its next request, after an answer went out
// whole on a connection that stays open.
func (f *loopFront) awaitRequest(c *loopConn) step {
	p, s := f.p, c.s
	s.in.release()
	cfg := c.waitCfg
	if cfg == nil {
		cfg = p.tuned.Load()
	}
	c.waitCfg = nil
	if cfg != s.cfg {
		s.tune(cfg)
	}
	if s.sized != s.cfg && s.in.resize(s.small(s.cfg), s.cfg.heads) {
		s.sized = s.cfg
	}
	if c.pend != nil {
		f.pends.Put(c.pend)
		c.pend, c.pendOff = nil, 0
	}
	c.phase = phHead
	if s.in.buffered() > 0 {
		c.headTimed = true
		f.arm(c, s.cfg.header)
		return stepOn
	}
	if p.loop.Closing() {
		f.drop(c)
		return stepGone
	}
	c.headTimed = false
	f.arm(c, s.cfg.idle)
	f.detach(c)
	return stepOn
}

// startExchange chooses the backend for the request in s.req, as the
// goroutine engine's exchange does, and starts sending it there.
func (f *loopFront) startExchange(c *loopConn) {
	p, s := f.p, c.s
	req := &s.req
	// A request with a body is sent once, on a new connection: a stale
	// kept-alive one could have taken part of it before failing.
	c.hasBody = req.contentLength > 0
	c.retryable = !c.hasBody && idempotent(req.method)
	s.isHead = string(req.method) == "HEAD"
	s.http10 = string(req.proto) == "HTTP/1.0"
	if cfg := p.tuned.Load(); cfg != s.cfg {
		s.tune(cfg)
	}
	s.st = p.current()
	s.try = backend.NewAttempt(s.st.reg, s.cfg.sel, s.addrKey, s.pinned())
	b := s.next()
	if !s.try.Pinned() && p.NAT != nil {
		p.NAT.Session(s.from)
	}
	c.retriedOther, c.retriedFresh = false, false
	f.connect(c, b)
}

// connect gets c a connection to b: a kept-alive one when the request may
// go twice, else a new dial, failing over in the attempt's order while
// dials fail at once. With no backend left, the client gets 503.
func (f *loopFront) connect(c *loopConn, b *backend.Backend) {
	p, s := f.p, c.s
	for {
		if b == nil {
			f.answer(c, 503)
			return
		}
		c.b = b
		if c.retryable && !c.retriedFresh && b.SendProxy() == 0 && f.takeIdle(c, b) {
			c.reused = true
			f.send(c)
			return
		}
		c.reused = false
		t := f.target(b)
		if t == nil {
			// Not the backend's fault: passive health is not told.
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", evloop.ErrNotLiteral)
			s.try.Fail(b)
			b = s.next()
			continue
		}
		fd, e := evloop.Socket(t.Family)
		if e != 0 {
			p.logger().Debug("backend connect failed", "backend", b.ID, "error", e)
			s.try.Fail(b)
			b = s.next()
			continue
		}
		e = evloop.Connect(fd, t)
		if e == 0 || e == unix.EINPROGRESS {
			c.server.Reset(fd, c)
			if e := f.core.Register(&c.server); e != 0 {
				evloop.Close(fd)
				c.server.Reset(-1, c)
				s.try.Fail(b)
				b = s.next()
				continue
			}
			c.upAddr = t.Address
			c.phase = phConnect
			f.arm(c, s.cfg.dialer.Timeout)
			return
		}
		evloop.Close(fd)
		err := b.DialError(e)
		b.CountConnectFailure()
		p.Health.ReportFailure(b, err)
		p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
		s.try.Fail(b)
		b = s.next()
	}
}

// dialFailed ends a dial that failed (or timed out) and moves on to the
// next backend.
func (f *loopFront) dialFailed(c *loopConn, err error) {
	p, s, b := f.p, c.s, c.b
	f.core.Forget(&c.server)
	err = b.DialError(err)
	b.CountConnectFailure()
	p.Health.ReportFailure(b, err)
	p.logger().Debug("backend connect failed", "backend", b.ID, "error", err)
	s.try.Fail(b)
	c.b = nil
	// The next backend may be reached over a kept-alive connection: the
	// choice waits for the loop's Work, once every event of the wake has
	// been seen (see Event).
	c.phase = phChoose
	c.timer.Stop()
	if !c.queued {
		c.queued = true
		f.ready = append(f.ready, c)
	}
}

// target returns b's address in the form connect takes, or nil when it
// is not an IP literal (see evloop.Targets).
func (f *loopFront) target(b *backend.Backend) *evloop.Target {
	return f.targets.Get(b, b.Address(), f.p.Pool.Registry())
}

// send begins the exchange with c.b over c's backend connection: the
// request head (after a PROXY header for a backend that wants one) goes
// out, and the server timeout runs.
func (f *loopFront) send(c *loopConn) {
	s, b := c.s, c.b
	s.tried(b)
	b.Acquire()
	c.held = true
	s.out = s.appendRequestHead(s.out[:0], b)
	if c.hasBody {
		// The body came whole with the head (see handedOver), and
		// nothing sends it twice (see connect): it leaves the client's
		// buffer with the head.
		n := int(s.req.contentLength)
		s.out = append(s.out, s.in.buf[s.in.r:s.in.r+n]...)
		s.in.r += n
	}
	c.upOut = s.out
	if v := b.SendProxy(); v != 0 {
		hdr := proxyproto.Append(make([]byte, 0, proxyproto.MaxV1+len(s.out)), v, s.from, evloop.LocalAddr(c.client.FD))
		c.upOut = append(hdr, s.out...)
	}
	s.acct.sent = time.Now()
	c.phase = phSend
	f.arm(c, s.cfg.server)
}

// writeRequest writes what is left of the request head to the backend.
func (f *loopFront) writeRequest(c *loopConn) step {
	if !c.server.Writable {
		return stepWait
	}
	n, e := evloop.Write(c.server.FD, c.upOut)
	switch {
	case e == unix.EAGAIN:
		c.server.Writable = false
		return stepWait
	case e != 0:
		return f.exchangeFailed(c, e, c.reused, false)
	}
	if c.upOut = c.upOut[n:]; len(c.upOut) > 0 {
		c.server.Writable = false
		return stepWait
	}
	c.upOut = nil
	if c.upBuf == nil {
		c.upBuf = f.upBufs.Get()
	}
	c.s.up.reset(&c.ur, c.upBuf, nil)
	c.phase = phRespHead
	return stepOn
}

// readResponse reads the response head, relaying interim responses, and
// starts the final one's relay.
func (f *loopFront) readResponse(c *loopConn) step {
	p, s, b := f.p, c.s, c.b
	head, partial, err := s.up.readHead()
	if err == errWouldBlock {
		return stepWait
	}
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			f.closeUp(c)
			s.backendFault(b, err)
			f.answer(c, 502)
			return stepOn
		}
		return f.exchangeFailed(c, err, c.reused && !partial, true)
	}
	if err := parseResponseHead(head, &s.resp); err != nil {
		f.closeUp(c)
		s.backendFault(b, err)
		f.answer(c, 502)
		return stepOn
	}
	s.headRead(b)
	switch {
	case s.resp.status == 101:
		// Upgrades are handed over before they reach a backend: this
		// backend switched on its own, which any client could provoke,
		// so its health is not told.
		f.closeUp(c)
		p.logger().Debug("backend switched protocols unasked", "backend", b.ID)
		f.answer(c, 502)
		return stepOn
	case s.resp.status < 200:
		// An interim response goes to an HTTP/1.1 client as it is
		// (HTTP/1.0 has none, RFC 9110 15.2); the final one follows
		// within a fresh server timeout.
		if !s.http10 {
			s.out = s.appendResponseHead(s.out[:0], nil, false, false)
			if !f.writeClient(c, s.out) {
				f.drop(c)
				return stepGone
			}
		}
		f.arm(c, s.cfg.server)
		return stepOn
	}
	return f.beginResponse(c)
}

// exchangeFailed handles a backend connection that broke before a
// response head, as the goroutine engine's failed does: a stale kept-alive
// connection is retried fresh, a request that may go twice goes to
// another backend (once), anything else gets 502.
func (f *loopFront) exchangeFailed(c *loopConn, err error, stale, sent bool) step {
	s, b := c.s, c.b
	f.closeUp(c)
	if stale && c.retryable {
		c.retriedFresh = true
		f.connect(c, b)
		return stepOn
	}
	s.backendFault(b, err, "request_sent", sent)
	if !c.retryable || c.retriedOther {
		f.answer(c, 502)
		return stepOn
	}
	c.retriedOther, c.retriedFresh = true, false
	s.try.Fail(b)
	f.connect(c, s.next())
	return stepOn
}

// beginResponse writes the final response head to the client and starts
// its body's relay, as the goroutine engine's relayResponse does.
func (f *loopFront) beginResponse(c *loopConn) step {
	p, s, b := f.p, c.s, c.b
	req, resp := &s.req, &s.resp
	http10 := s.http10
	framing := framingOf(s.isHead, resp)
	c.dechunk = framing == chunkedBody && http10
	if http10 && framing != noBody && resp.te != nil && !onlyChunked(resp.te) {
		// An HTTP/1.0 client knows no transfer coding (RFC 9112 6.1):
		// chunked is unwrapped for it, but gzip and the like cannot be
		// passed on without the field that names them. Not the backend's
		// fault: it answered an HTTP/1.1 request.
		f.closeUp(c)
		p.logger().Debug("transfer coding an HTTP/1.0 client cannot take", "backend", b.ID, "transfer_encoding", string(resp.te))
		f.answer(c, 502)
		return stepOn
	}
	c.reframe = framing == untilClose && !http10 && resp.te == nil
	c.closeAfter = req.close || p.loop.Closing() || framing == untilClose && !c.reframe || c.dechunk
	c.endKnown = framing != untilClose && !(resp.status == 204 && (resp.contentLength > 0 || resp.chunked))
	var cookieFor *backend.Backend
	if !s.try.Pinned() {
		cookieFor = b
	}
	s.out = s.appendResponseHead(s.out[:0], cookieFor, c.closeAfter, framing == chunkedBody && !c.dechunk || c.reframe)
	c.waitCfg = p.tuned.Load()
	left := resp.contentLength
	if framing == fixedLength && int64(s.up.buffered()) >= left && int(left) <= cap(s.out)-len(s.out) {
		s.out = append(s.out, s.up.buf[s.up.r:s.up.r+int(left)]...)
		s.up.r += int(left)
		left = 0
	}
	if !f.writeClient(c, s.out) {
		f.drop(c)
		return stepGone
	}
	c.framing, c.left, c.chunk, c.trailers = framing, left, chunkSize, 0
	c.phase = phBody
	return stepOn
}

// relayBody moves the response body on, piece by piece as it arrives,
// checking its framing as copyChunked does; once it is whole the exchange
// ends.
func (f *loopFront) relayBody(c *loopConn) step {
	s := c.s
	for steps := 0; ; steps++ {
		if steps == relaySteps {
			// A fast body must not starve the loop's other
			// connections: the rest waits for the next round.
			c.queued = true
			f.ready = append(f.ready, c)
			return stepWait
		}
		if c.pendOff < len(c.pend) {
			if r := f.flush(c); r != stepOn {
				return r
			}
		}
		var p []byte
		var err error
		done := false
		switch c.framing {
		case noBody:
			done = true
		case fixedLength:
			if c.left == 0 {
				done = true
				break
			}
			if p, err = s.up.next(c.left); err == nil {
				c.left -= int64(len(p))
				if !f.writeClient(c, p) {
					f.drop(c)
					return stepGone
				}
			}
		case chunkedBody:
			done, err = f.relayChunk(c)
		case untilClose:
			p, err = s.up.next(1 << 62)
			if err == io.EOF {
				err, done = nil, true
				c.endKnown = false
				if c.reframe && !f.writeClient(c, lastChunk) {
					f.drop(c)
					return stepGone
				}
				break
			}
			if err == nil && !f.writeChunkOf(c, p) {
				f.drop(c)
				return stepGone
			}
		}
		switch {
		case err == errWouldBlock:
			f.arm(c, s.cfg.server)
			return stepWait
		case err != nil:
			// The head has gone out: the client's connection can only
			// close. A backend that cuts its body is not counted against
			// its health; that is judged before the head.
			f.p.logger().Debug("backend response cut", "backend", c.b.ID, "error", unexpectedEOF(err))
			f.drop(c)
			return stepGone
		case done:
			return f.endExchange(c)
		}
	}
}

// relaySteps bounds the pieces of a body one connection relays before the
// loop's other connections have their turn.
const relaySteps = 32

// writeChunkOf writes p as the client gets a body that runs until the
// backend closes: as one chunk when it is re-framed, else as it is.
func (f *loopFront) writeChunkOf(c *loopConn, p []byte) bool {
	if !c.reframe {
		return f.writeClient(c, p)
	}
	return f.writeClient(c, c.s.up.appendSizeLine(int64(len(p)))) && f.writeClient(c, p) && f.writeClient(c, crlfBytes)
}

// relayChunk takes one step of a chunked body: a size line, a piece of a
// chunk's data, its CRLF, or a trailer line; each is checked before it is
// forwarded, with the size line written as lbctl's own (see copyChunked).
// For an HTTP/1.0 client (dechunk) only the chunks' data is written, and
// the response ends with the connection.
func (f *loopFront) relayChunk(c *loopConn) (done bool, err error) {
	src := &c.s.up
	switch c.chunk {
	case chunkSize:
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return false, chunkStepErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return false, errBadChunk
		}
		if !c.dechunk && !f.writeClient(c, src.appendSizeLine(size)) {
			return false, errClientWrite
		}
		if size == 0 {
			c.chunk = chunkTrailers
		} else {
			c.chunk, c.left = chunkData, size
		}
	case chunkData:
		p, err := src.next(c.left)
		if err != nil {
			return false, err
		}
		c.left -= int64(len(p))
		if !f.writeClient(c, p) {
			return false, errClientWrite
		}
		if c.left == 0 {
			c.chunk = chunkCRLF
		}
	case chunkCRLF:
		crlf, err := src.readLine(2)
		if err != nil {
			return false, chunkStepErr(err)
		}
		if !bytes.Equal(crlf, crlfBytes) {
			return false, errBadChunk
		}
		if !c.dechunk && !f.writeClient(c, crlf) {
			return false, errClientWrite
		}
		c.chunk = chunkSize
	case chunkTrailers:
		if c.trailers++; c.trailers > maxTrailers+1 {
			return false, errBadChunk
		}
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return false, chunkStepErr(err)
		}
		if !validTrailer(line) {
			return false, errBadChunk
		}
		if !c.dechunk && !f.writeClient(c, line) {
			return false, errClientWrite
		}
		return len(line) == 2, nil
	}
	return false, nil
}

// chunkStepErr is chunkErr for a step that may have found nothing yet.
func chunkStepErr(err error) error {
	if err == errWouldBlock {
		return err
	}
	return chunkErr(err)
}

// errClientWrite is a write to the client that failed.
var errClientWrite = errors.New("writing to the client failed")

// endExchange settles both connections once the response is whole: the
// backend connection is kept for the next exchange when the response
// ended where its framing says, and the client's waits for its next
// request once the answer has gone out, unless it closes after it.
func (f *loopFront) endExchange(c *loopConn) step {
	s, b := c.s, c.b
	if c.endKnown && !s.resp.close && s.up.buffered() == 0 {
		f.keepUp(c)
	} else {
		f.closeUp(c)
	}
	b.CountServed()
	s.endAccount()
	c.phase = phFlush
	return stepOn
}

// answer writes a canned error as the answer to the request, as the
// goroutine engine's answer does (the connection closes after it when the
// request had a body, as there), and ends the exchange.
func (f *loopFront) answer(c *loopConn, status int) {
	s := c.s
	resp := cannedFor(status)
	s.acct.status = status
	keep := !c.hasBody && !s.req.close && !f.p.loop.Closing()
	msg := resp.close
	if keep {
		msg = resp.keepAlive
	}
	if s.isHead {
		msg = msg[:len(msg)-resp.bodyLen]
	}
	c.closeAfter = !keep
	c.waitCfg = f.p.tuned.Load()
	c.timer.Stop() // flushAnswer arms it for what comes next
	s.endAccount()
	if !f.writeClient(c, msg) {
		c.closeAfter = true
	}
	c.phase = phFlush
}

// reject answers a request that will not be forwarded with a canned error
// and closes the connection gracefully, as the goroutine engine's reject
// does: the answer, the FIN, then a short linger reading what the client
// still sends, so that closing with unread input does not reset the
// connection before the client has read the answer.
func (f *loopFront) reject(c *loopConn, status int) {
	c.s.acct.status = status
	if !f.writeClient(c, cannedFor(status).close) {
		f.drop(c)
		return
	}
	c.phase = phLinger
	f.arm(c, time.Second)
	f.run(c)
}

// linger sends the FIN once the answer has gone, then drops what the
// client sends until it closes, 256 KiB have come, or the timer ends it.
func (f *loopFront) linger(c *loopConn) step {
	if c.pendOff < len(c.pend) {
		return f.flush(c)
	}
	if !c.shut {
		c.shut = true
		evloop.ShutdownWrite(c.client.FD)
		f.arm(c, 500*time.Millisecond)
	}
	for c.client.Readable {
		n, err := c.cr.Read(f.scratch)
		if err == errWouldBlock {
			break
		}
		if c.lingered += n; err != nil || c.lingered >= 256<<10 {
			f.drop(c)
			return stepGone
		}
	}
	return stepWait
}

// flushAnswer waits for the answer to go out whole, then closes the
// connection or readies it for the next request.
func (f *loopFront) flushAnswer(c *loopConn) step {
	if c.pendOff < len(c.pend) {
		if r := f.flush(c); r != stepOn {
			return r
		}
	}
	if c.closeAfter {
		f.drop(c)
		return stepGone
	}
	return f.awaitRequest(c)
}

// writeClient writes p to the client, keeping what the socket cannot take
// yet for flush. It reports false when the client's socket failed.
func (f *loopFront) writeClient(c *loopConn, p []byte) bool {
	c.s.cw.n += int64(len(p))
	if c.pendOff == len(c.pend) && c.client.Writable {
		n, e := evloop.Write(c.client.FD, p)
		switch {
		case e == unix.EAGAIN:
			n = 0
		case e != 0:
			return false
		}
		if p = p[n:]; len(p) == 0 {
			return true
		}
		c.client.Writable = false
	}
	if c.pend == nil {
		c.pend = f.pends.Get()[:0]
	}
	if c.pendOff == len(c.pend) {
		c.pend, c.pendOff = c.pend[:0], 0
	}
	c.pend = append(c.pend, p...)
	return true
}

// flush writes what the client's socket could not take before; it
// reports stepOn once all of it has gone, stepWait when the client must
// read first (under the idle timeout), stepGone when the socket failed.
func (f *loopFront) flush(c *loopConn) step {
	if !c.client.Writable {
		f.arm(c, c.s.cfg.idle)
		return stepWait
	}
	n, e := evloop.Write(c.client.FD, c.pend[c.pendOff:])
	switch {
	case e == unix.EAGAIN:
		c.client.Writable = false
		f.arm(c, c.s.cfg.idle)
		return stepWait
	case e != 0:
		f.drop(c)
		return stepGone
	}
	if c.pendOff += n; c.pendOff < len(c.pend) {
		c.client.Writable = false
		f.arm(c, c.s.cfg.idle)
		return stepWait
	}
	c.pend, c.pendOff = c.pend[:0], 0
	return stepOn
}

// keepUp keeps c's backend connection for the next exchange with its
// backend, as the goroutine engine's release does: not when the proxy is
// closing, the backend wants PROXY headers, reuse is off, the loop keeps
// enough, or a reload moved the backend since the connection was made.
func (f *loopFront) keepUp(c *loopConn) {
	p, b := f.p, c.b
	ups := f.idleUps[b]
	if p.loop.Closing() || b.SendProxy() != 0 || len(ups) >= c.s.cfg.maxIdle || b.Address() != c.upAddr {
		f.closeUp(c)
		return
	}
	u := f.newConn()
	u.phase, u.b, u.upAddr = phIdleUp, b, c.upAddr
	f.core.Move(&u.server, &c.server)
	f.idleUps[b] = append(ups, u)
	f.arm(u, c.s.cfg.idle)
	f.endUse(c)
}

// takeIdle gives c the most recently used kept-alive connection to b,
// and reports whether there was one. Connections made to an address b no
// longer has are closed.
func (f *loopFront) takeIdle(c *loopConn, b *backend.Backend) bool {
	addr := b.Address()
	for {
		ups := f.idleUps[b]
		if len(ups) == 0 {
			return false
		}
		u := ups[len(ups)-1]
		if u.upAddr != addr {
			f.dropIdle(u)
			continue
		}
		ups[len(ups)-1] = nil
		f.idleUps[b] = ups[:len(ups)-1]
		f.core.Move(&c.server, &u.server)
		c.upAddr = u.upAddr
		f.freeConn(u)
		return true
	}
}

// dropIdle closes a kept-alive backend connection.
func (f *loopFront) dropIdle(u *loopConn) {
	ups := f.idleUps[u.b]
	if i := slices.Index(ups, u); i >= 0 {
		f.idleUps[u.b] = slices.Delete(ups, i, i+1)
	}
	f.core.Forget(&u.server)
	f.freeConn(u)
}

// closeUp closes c's backend connection, if any, and ends its use.
func (f *loopFront) closeUp(c *loopConn) {
	f.core.Forget(&c.server)
	f.endUse(c)
}

// endUse ends the exchange's hold on its backend and its response buffer.
func (f *loopFront) endUse(c *loopConn) {
	if c.held {
		c.b.Release()
		c.held = false
	}
	c.upOut = nil
	if c.s != nil {
		c.s.up.reset(nil, nil, nil)
	}
	if c.upBuf != nil {
		f.upBufs.Put(c.upBuf)
		c.upBuf = nil
	}
}

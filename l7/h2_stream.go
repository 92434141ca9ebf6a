package l7

import (
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2stream is one HTTP/2 stream: a request from the client, its body as
// it arrives, and the response that goes back as frames. Streams are
// pooled: one is recycled once its exchange has ended and the connection
// has forgotten it.
type h2stream struct {
	c  *h2conn
	id uint32

	// The request head, as the reading goroutine decoded it; the
	// exchange only reads it.
	method, scheme, authority, path string
	host                            string // a Host field, when the client sent one
	fields                          []hpack.HeaderField
	contentLength                   int64 // declared; -1 when not
	pseudo                          uint8 // the pseudo-fields seen, see h2Pseudo

	// Under c.mu.
	gone       bool    // the client reset the stream, or the connection ended
	localDone  bool    // the response has ended (END_STREAM went out)
	remoteDone bool    // the request has ended (END_STREAM came)
	received   int64   // DATA bytes of the request body
	recvWin    int64   // what the client may still send before a WINDOW_UPDATE
	body       *[]byte // a ring of h2StreamWindow bytes; nil until a body comes
	bodyR      int     // where the unread body starts in the ring
	bodyN      int     // unread body bytes
	bodyCond   sync.Cond
	bodyStop   bool                // the exchange stopped taking the body
	trailers   []hpack.HeaderField // the request's trailer section
	sendWin    int64               // what lbctl may still send
	up         *net.TCPConn        // the backend connection, closed if the stream is reset

	// The exchange's own.
	unacked int  // body bytes consumed, not yet given back in WINDOW_UPDATE
	ended   bool // END_STREAM or RST_STREAM went out
	// head is the header block of the response or its trailers as it is
	// built, after a byte kept for a table size update (see
	// h2_hpack.go).
	head []byte
	x    h2exchange
}

// The pseudo-fields of a request (RFC 9113 8.3.1), as bits.
const (
	h2Method uint8 = 1 << iota
	h2Scheme
	h2Authority
	h2Path
)

var (
	h2Streams = sync.Pool{New: func() any { return new(h2stream) }}
	// h2Bodies holds the rings of request bodies.
	h2Bodies = sync.Pool{New: func() any { b := make([]byte, h2StreamWindow); return &b }}
)

// newH2Stream returns stream id of c, not yet open. Only c's reading
// goroutine calls it, the one that writes c.peerWin: it reads that
// without the lock.
func newH2Stream(c *h2conn, id uint32) *h2stream {
	s := h2Streams.Get().(*h2stream)
	s.c, s.id = c, id
	s.contentLength = -1
	s.bodyCond.L = &c.mu
	s.recvWin = h2StreamWindow
	s.sendWin = c.peerWin
	return s
}

// recycle returns s to the pool. Only its last owner calls it: the
// reading goroutine for a stream never opened, the exchange's goroutine
// (with c.mu held, once the connection has forgotten it) for one that was.
func (s *h2stream) recycle() {
	if s.body != nil {
		h2Bodies.Put(s.body)
	}
	// The buffers stay, emptied, for the next stream.
	fields, trailers, head := s.fields[:0], s.trailers[:0], s.head[:0]
	if cap(head) > h2FrameSize {
		head = nil // a large head is rare: its buffer is not kept
	}
	clear(s.fields[:cap(s.fields)])
	clear(s.trailers[:cap(s.trailers)])
	x := &s.x
	out, cookie, sizeLine, chunkTrailers := x.out[:0], x.cookie[:0], x.sizeLine[:0], x.chunks.trailers[:0]
	respFields, upIO := x.resp.fields[:0], x.upIO
	// Cleared in place: a literal with fields would be built on the
	// stack first and copied, twice the work on a large struct.
	*s = h2stream{}
	s.fields, s.trailers, s.head = fields, trailers, head
	s.x.out, s.x.cookie, s.x.sizeLine, s.x.chunks.trailers = out, cookie, sizeLine, chunkTrailers
	s.x.resp.fields, s.x.upIO = respFields, upIO
	h2Streams.Put(s)
}

// resetLocked ends the stream from the client's side: its exchange stops,
// its backend connection, if any, is closed. With c.mu held.
func (s *h2stream) resetLocked() {
	if s.gone {
		return
	}
	s.gone = true
	if s.up != nil {
		s.up.Close()
	}
	s.bodyCond.Broadcast()
	s.c.sendable.Broadcast()
}

// isGone reports whether the stream was reset or its connection ended.
func (s *h2stream) isGone() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.gone
}

// attach makes up the backend connection that a reset of the stream
// closes. It reports false, and closes up, when the stream is already
// gone.
func (s *h2stream) attach(up *net.TCPConn) bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.gone {
		up.Close()
		return false
	}
	s.up = up
	return true
}

// detach withdraws the backend connection from the reach of a reset, and
// reports whether it is still open (no reset closed it).
func (s *h2stream) detach() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.up = nil
	return !s.gone
}

// takeData takes a DATA frame's payload (after pad bytes of padding) into
// the body's ring, and the end of the request when end; with c.mu held.
// It returns the stream error the frame is, or ErrCodeNo.
func (s *h2stream) takeData(data []byte, pad int, end bool) http2.ErrCode {
	if s.gone {
		return http2.ErrCodeNo
	}
	s.recvWin -= int64(len(data) + pad)
	if s.recvWin < 0 {
		return http2.ErrCodeFlowControl
	}
	s.recvWin += int64(pad)
	s.received += int64(len(data))
	if s.contentLength >= 0 && s.received > s.contentLength {
		return http2.ErrCodeProtocol
	}
	if len(data) > 0 {
		if s.body == nil {
			s.body = h2Bodies.Get().(*[]byte)
		}
		ring := *s.body
		w := (s.bodyR + s.bodyN) % len(ring)
		n := copy(ring[w:], data)
		copy(ring, data[n:])
		s.bodyN += len(data)
	}
	if end {
		s.remoteDone = true
		if s.contentLength >= 0 && s.received != s.contentLength {
			return http2.ErrCodeProtocol
		}
		if s.localDone {
			s.c.forgetLocked(s)
		}
	}
	s.bodyCond.Broadcast()
	return http2.ErrCodeNo
}

// bodyNext waits for request body bytes and returns those that lie
// contiguous in the ring, to be given back with bodyDone; nil, nil at the
// end of the body; errH2Gone when the stream was reset, errBodyStopped when
// the exchange stopped taking it (see stopBody).
func (s *h2stream) bodyNext() ([]byte, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	// A client that stalls mid-body is given up on after timeouts.idle,
	// as an HTTP/1.1 client is.
	if c.waitLocked(&s.bodyCond, func() bool { return s.bodyN == 0 && !s.remoteDone && !s.gone && !s.bodyStop }) {
		return nil, errH2BodyStalled
	}
	switch {
	case s.gone:
		return nil, errH2Gone
	case s.bodyStop:
		return nil, errBodyStopped
	case s.bodyN == 0:
		return nil, nil
	}
	ring := *s.body
	return ring[s.bodyR:min(s.bodyR+s.bodyN, len(ring))], nil
}

// stopBody makes bodyNext return errBodyStopped: the exchange no longer
// wants the request body.
func (s *h2stream) stopBody() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.bodyStop = true
	s.bodyCond.Broadcast()
}

// bodyDone gives n bytes that bodyNext returned back to the ring, and
// their share of the window back to the client once it is worth a frame.
func (s *h2stream) bodyDone(n int) {
	c := s.c
	c.mu.Lock()
	s.bodyR = (s.bodyR + n) % len(*s.body)
	s.bodyN -= n
	s.unacked += n
	update := 0
	if s.unacked >= h2StreamWindow/4 && !s.remoteDone && !s.gone {
		update, s.unacked = s.unacked, 0
		s.recvWin += int64(update)
	}
	c.mu.Unlock()
	if update > 0 {
		c.wmu.Lock()
		c.fr.WriteWindowUpdate(s.id, uint32(update))
		c.flushLocked()
		c.wmu.Unlock()
	}
}

// startHead begins the response head with its status; addField adds
// its fields, and sendHead sends it.
func (s *h2stream) startHead(status int) {
	s.head = appendH2Status(append(s.head[:0], h2SizeUpdate), status)
}

// startTrailers begins the trailer section that ends the response; its
// fields follow as the head's do, and sendTrailers sends it.
func (s *h2stream) startTrailers() { s.head = append(s.head[:0], h2SizeUpdate) }

// addField adds a field to the head or trailers being built, its name
// lower-cased as HTTP/2 wants it.
func (s *h2stream) addField(name, value []byte) { s.head = appendH2Field(s.head, name, value) }

// sendHead sends the response head that startHead began. With end the
// response has no body. It is flushed at once when end or flush;
// otherwise it goes out with the body's first frame.
func (s *h2stream) sendHead(end, flush bool) error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if end {
		s.sentEnd()
	}
	return c.writeHeadersLocked(s.id, s.head, end, end || flush)
}

// sendTrailers ends the response with the trailers that startTrailers
// began.
func (s *h2stream) sendTrailers() error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	s.sentEnd()
	return c.writeHeadersLocked(s.id, s.head, true, true)
}

// sentEnd records that the response ends with the frame about to go
// out: a stream whose request has ended too is closed (RFC 9113 5.1), and
// no longer counts against SETTINGS_MAX_CONCURRENT_STREAMS, though its
// exchange may still be settling its backend connection.
func (s *h2stream) sentEnd() {
	s.ended = true
	s.c.mu.Lock()
	s.endLocked()
	s.c.mu.Unlock()
}

// endLocked is sentEnd with c.mu held.
func (s *h2stream) endLocked() {
	s.localDone = true
	if s.remoteDone {
		s.c.forgetLocked(s)
	}
}

// sendData sends p as DATA frames, as the send windows and the client's
// frame size allow, the last one with END_STREAM when end.
func (s *h2stream) sendData(p []byte, end bool) error {
	c := s.c
	for {
		c.mu.Lock()
		if len(p) > 0 && s.blockedLocked() {
			if err := s.waitWindowLocked(); err != nil {
				c.mu.Unlock()
				return err
			}
		}
		if s.gone || c.closing {
			c.mu.Unlock()
			return errH2Gone
		}
		var n int64 // an empty last frame takes no window
		if len(p) > 0 {
			n = min(int64(len(p)), c.sendWin, s.sendWin, int64(c.peerMax))
		}
		c.sendWin -= n
		s.sendWin -= n
		last := end && int(n) == len(p)
		if last {
			// Before the frame goes: the client may open its next
			// stream as soon as it has it.
			s.endLocked()
		}
		c.mu.Unlock()
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, last, p[:n])
		if err == nil {
			err = c.flushLocked()
		}
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		if last {
			s.ended = true
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// errH2BodyStalled is a request body of which no byte came for
// timeouts.idle.
var errH2BodyStalled = errors.New("HTTP/2 request body stalled for the idle timeout")

// errH2Stalled is a response that could not go on because the client
// gave no window for timeouts.idle.
var errH2Stalled = errors.New("HTTP/2 client gave no window for the idle timeout")

// blockedLocked reports whether the stream may send no DATA now: its
// window or the connection's is spent, and it was not reset. With c.mu
// held.
func (s *h2stream) blockedLocked() bool {
	c := s.c
	return !s.gone && !c.closing && (c.sendWin <= 0 || s.sendWin <= 0)
}

// waitWindowLocked waits, with c.mu held, until the client's windows let
// the stream send or it is reset, but no longer than timeouts.idle: a
// client that reads nothing is cut off after it, as an HTTP/1.1 client
// that reads nothing is (errH2Stalled).
func (s *h2stream) waitWindowLocked() error {
	if s.c.waitLocked(&s.c.sendable, s.blockedLocked) {
		return errH2Stalled
	}
	return nil
}

// waitLocked waits on cond, whose lock is c.mu, held, while blocked
// reports true, but no longer than timeouts.idle (when positive); it
// reports whether blocked still does, that is, whether the wait timed out.
func (c *h2conn) waitLocked(cond *sync.Cond, blocked func() bool) bool {
	if !blocked() {
		return false
	}
	expired := false
	if c.cfg.idle > 0 {
		t := time.AfterFunc(c.cfg.idle, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			expired = true
			cond.Broadcast()
		})
		defer t.Stop()
	}
	for blocked() && !expired {
		cond.Wait()
	}
	return blocked()
}

// finish settles the stream once its exchange is over: a response cut
// short is reset (INTERNAL_ERROR), and a request whose body the client is
// still sending after a whole response is told to stop (NO_ERROR, RFC
// 9113 8.1).
func (s *h2stream) finish() {
	c := s.c
	c.mu.Lock()
	code, send := http2.ErrCodeInternal, !s.ended
	if s.ended && !s.remoteDone {
		code, send = http2.ErrCodeNo, true
	}
	if s.gone {
		send = false
	}
	c.mu.Unlock()
	if !send {
		return
	}
	s.ended = true
	c.wmu.Lock()
	c.fr.WriteRSTStream(s.id, code)
	c.flushLocked()
	c.wmu.Unlock()
}

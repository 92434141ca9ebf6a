package l7

import (
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// An HTTP/2 stream's fields: the header block of a request, HEADERS and
// its CONTINUATION frames, decoded by the connection's reading goroutine
// and checked as RFC 9113 8.2-8.3 says; and the frames that carry its
// answer's header block, which h2_hpack.go encodes.

// h2block is a header block being decoded: HEADERS and its CONTINUATION
// frames.
type h2block struct {
	stream   *h2stream // the stream whose fields these are
	trailers bool      // the block is a request's trailer section
	size     int       // bytes of the field list, as RFC 9113 6.5.2 counts them
	encoded  int       // bytes of the encoded block
	frames   int
	tooLarge bool  // the list passed limits.header_bytes: its fields are dropped
	bad      error // the first field that makes the request malformed
	sawField bool  // a regular field came: no pseudo-field may follow
	// fields holds a trailer section's fields until they are handed to
	// their stream, if it is still open.
	fields []hpack.HeaderField
}

// readHeaders reads a header block, HEADERS and its CONTINUATION
// frames, and opens the stream it starts or ends the request it
// carries the trailers of.
func (c *h2conn) readHeaders(f *http2.HeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "a client's stream with an even id")
	}
	c.block = h2block{fields: c.block.fields[:0]}
	b := &c.block
	if id <= c.lastID {
		// Trailers of a stream whose request is open, which must end
		// it; the stream may have ended meanwhile.
		c.mu.Lock()
		s := c.streams[id]
		open := s != nil && !s.remoteDone
		c.mu.Unlock()
		switch {
		case open && f.StreamEnded():
			b.trailers = true
			if err := c.decodeBlock(f); err != nil {
				return err
			}
			return c.endTrailers(id)
		case s != nil && !open:
			// The request has ended: the stream is half-closed
			// (remote), and takes no more frames of the client's
			// (RFC 9113 5.1), as readData says too.
			return c.decodeRest(f, func() error { return c.streamError(id, http2.ErrCodeStreamClosed) })
		case s != nil:
			// Trailers must end the request (RFC 9113 8.1).
			return c.decodeRest(f, func() error { return c.streamError(id, http2.ErrCodeProtocol) })
		}
		// A stream that lbctl has closed or reset, whose client may
		// have sent its trailers before it learnt of that: they are
		// decoded, for HPACK's sake, and ignored (RFC 9113 5.1).
		return c.decodeRest(f, func() error { return nil })
	}
	c.mu.Lock() // goAway reads it from another goroutine
	c.lastID = id
	c.mu.Unlock()
	s := newH2Stream(c, id)
	b.stream = s
	if f.HasPriority() && f.Priority.StreamDep == id {
		s.recycle()
		return c.decodeRest(f, func() error { return c.streamError(id, http2.ErrCodeProtocol) })
	}
	if err := c.decodeBlock(f); err != nil {
		s.recycle()
		return err
	}
	return c.open(s, f.StreamEnded())
}

// decodeRest decodes the rest of a block that is refused whatever it
// holds (HPACK state must follow it), then calls then.
func (c *h2conn) decodeRest(f *http2.HeadersFrame, then func() error) error {
	c.block.tooLarge = true // keep no field
	if err := c.decodeBlock(f); err != nil {
		return err
	}
	return then()
}

// decodeBlock decodes HEADERS f and the CONTINUATION frames after it into
// c.block, bounding the list at limits.header_bytes while it decodes: a
// longer list keeps decoding (HPACK's table must follow it) but keeps no
// field, and an encoded block much larger than the limit, or one of too
// many frames, ends the connection (CVE-2024-27316).
func (c *h2conn) decodeBlock(f *http2.HeadersFrame) error {
	b := &c.block
	frag, ended := f.HeaderBlockFragment(), f.HeadersEnded()
	for {
		b.frames++
		b.encoded += len(frag)
		if b.encoded > 2*c.cfg.maxHead+4096 || b.frames > h2MaxBlockFrames {
			return connErr(http2.ErrCodeEnhanceYourCalm, "header block too large")
		}
		if _, err := c.dec.Write(frag); err != nil {
			return connErr(http2.ErrCodeCompression, "HPACK: "+err.Error())
		}
		if ended {
			break
		}
		next, err := c.fr.ReadFrame()
		if err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return connErr(http2.ErrCode(ce), c.frameDetail())
			}
			return err
		}
		cf, ok := next.(*http2.ContinuationFrame)
		if !ok {
			return connErr(http2.ErrCodeProtocol, "a header block cut by another frame")
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := c.dec.Close(); err != nil {
		return connErr(http2.ErrCodeCompression, "HPACK: "+err.Error())
	}
	return nil
}

// emit takes one decoded field of the block in c.block.
func (c *h2conn) emit(hf hpack.HeaderField) {
	b := &c.block
	if b.tooLarge || b.bad != nil {
		return
	}
	b.size += len(hf.Name) + len(hf.Value) + 32
	if b.size > c.cfg.maxHead {
		b.tooLarge = true
		return
	}
	if b.trailers {
		b.bad = checkTrailer(hf)
		if b.bad == nil {
			b.fields = append(b.fields, hf)
		}
		return
	}
	b.bad = b.stream.takeField(hf, b)
}

// endTrailers hands the trailer section in c.block to stream id, whose
// request it ends.
func (c *h2conn) endTrailers(id uint32) error {
	b := &c.block
	if b.bad != nil || b.tooLarge {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	code := http2.ErrCodeNo
	if s := c.streams[id]; s != nil && !s.gone {
		s.trailers = append(s.trailers[:0], b.fields...)
		code = s.takeData(nil, 0, true)
	}
	c.mu.Unlock()
	if code != http2.ErrCodeNo {
		return c.streamError(id, code)
	}
	return nil
}

// writeHeadersLocked writes the header block in block on stream id, split
// to the client's frame size; wmu is held. block's first byte is room for
// a table size update, sent when the client is owed one (see
// h2_hpack.go). flush hands it to the writing goroutine at once;
// otherwise it goes with the body's first frame.
func (c *h2conn) writeHeadersLocked(id uint32, block []byte, end, flush bool) error {
	max := c.peerMax
	if c.sizeUpdate {
		c.sizeUpdate = false
		block[0] = h2SizeUpdate
	} else {
		block = block[1:]
	}
	first := block[:min(len(block), max)]
	block = block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0})
	for err == nil && len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		err = c.fr.WriteContinuation(id, len(block) == 0, frag)
	}
	if err == nil && flush {
		err = c.flushLocked()
	}
	if err != nil {
		return fmt.Errorf("writing HEADERS: %w", err)
	}
	return nil
}

// answerTooLarge answers 431 on stream id, whose header list passed
// limits.header_bytes, and, when the request was not ended, resets it
// with NO_ERROR so that its client sends no body (RFC 9113 8.1).
func (c *h2conn) answerTooLarge(id uint32, ended bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var buf [32]byte
	block := appendH2Status(append(buf[:0], h2SizeUpdate), http.StatusRequestHeaderFieldsTooLarge)
	block = appendH2FieldString(block, "content-length", "0")
	c.writeHeadersLocked(id, block, true, ended)
	if !ended {
		c.fr.WriteRSTStream(id, http2.ErrCodeNo)
		c.flushLocked()
	}
}

var (
	errH2Pseudo        = errors.New("malformed pseudo-field")
	errH2Name          = errors.New("field name not lower-case token characters")
	errH2Value         = errors.New("field value with NUL, CR, LF or surrounding whitespace")
	errH2ConnField     = errors.New("connection-specific field")
	errH2Length        = errors.New("malformed or conflicting content-length")
	errH2Missing       = errors.New("a pseudo-field missing")
	errH2Path          = errors.New("malformed :path")
	errH2Authority     = errors.New("malformed :authority, or Host differing from it")
	errH2TrailerPseudo = errors.New("pseudo-field in trailers")
)

// takeField takes one field of the request head (RFC 9113 8.2, 8.3),
// or returns why it makes the request malformed.
func (s *h2stream) takeField(hf hpack.HeaderField, b *h2block) error {
	name, value := hf.Name, hf.Value
	if len(name) > 0 && name[0] == ':' {
		if b.sawField {
			return errH2Pseudo
		}
		var bit uint8
		switch name {
		case ":method":
			bit, s.method = h2Method, value
		case ":scheme":
			bit, s.scheme = h2Scheme, value
		case ":authority":
			bit, s.authority = h2Authority, value
		case ":path":
			bit, s.path = h2Path, value
		default:
			return errH2Pseudo
		}
		if s.pseudo&bit != 0 {
			return errH2Pseudo
		}
		s.pseudo |= bit
		return nil
	}
	b.sawField = true
	if err := checkH2Field(name, value); err != nil {
		return err
	}
	switch name {
	case "content-length":
		n, ok := parseH2Length(value)
		if !ok || s.contentLength >= 0 && s.contentLength != n {
			return errH2Length
		}
		s.contentLength = n
	case "host":
		s.host = value
	}
	s.fields = append(s.fields, hf)
	return nil
}

// checkTrailer checks a field of a request's trailer section.
func checkTrailer(hf hpack.HeaderField) error {
	if len(hf.Name) > 0 && hf.Name[0] == ':' {
		return errH2TrailerPseudo
	}
	return checkH2Field(hf.Name, hf.Value)
}

// checkH2Field checks a regular field: a lower-case token for a name, a
// value without NUL, CR or LF and not starting or ending with whitespace,
// and none of the connection-specific fields HTTP/2 has no use for (RFC
// 9113 8.2.1, 8.2.2).
func checkH2Field(name, value string) error {
	if name == "" {
		return errH2Name
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !headTchar[c] || 'A' <= c && c <= 'Z' {
			return errH2Name
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == 0 || c == '\r' || c == '\n' {
			return errH2Value
		}
	}
	if n := len(value); n > 0 && (value[0] == ' ' || value[0] == '\t' || value[n-1] == ' ' || value[n-1] == '\t') {
		return errH2Value
	}
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return errH2ConnField
	case "te":
		if value != "trailers" {
			return errH2ConnField
		}
	}
	return nil
}

// parseH2Length parses a content-length value: decimal digits only.
func parseH2Length(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// checkHead checks the request head as a whole once it has been decoded:
// the pseudo-fields a request must have, a :path lbctl can forward, and
// an authority (from :authority or Host, which must then agree).
func (s *h2stream) checkHead() error {
	if s.pseudo&h2Method == 0 || s.method == "" {
		return errH2Missing
	}
	for i := 0; i < len(s.method); i++ {
		if !headTchar[s.method[i]] {
			return errH2Pseudo
		}
	}
	if s.method == "CONNECT" {
		// Answered 405 (see serve), but only when well-formed.
		if s.pseudo != h2Method|h2Authority {
			return errH2Missing
		}
		return nil
	}
	if s.pseudo&(h2Scheme|h2Path) != h2Scheme|h2Path {
		return errH2Missing
	}
	switch {
	case s.path == "*" && s.method == "OPTIONS":
	case s.path == "" || s.path[0] != '/':
		return errH2Path
	}
	for i := 0; i < len(s.path); i++ {
		if c := s.path[i]; c <= ' ' || c == 0x7f {
			return errH2Path
		}
	}
	switch {
	case s.pseudo&h2Authority == 0:
		s.authority = s.host
	case s.host != "" && s.host != s.authority:
		return errH2Authority
	}
	for i := 0; i < len(s.authority); i++ {
		if c := s.authority[i]; c <= ' ' || c == 0x7f || c == '@' || c == '/' || c == '?' || c == '#' {
			return errH2Authority
		}
	}
	return nil
}

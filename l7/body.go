package l7

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// Body framing limits.
const (
	maxChunkLine = 4096 // a chunk-size line with its extensions
	maxTrailers  = 100  // trailer fields after the last chunk
)

// errBadChunk is a malformed chunked body: a bad size line, a missing CRLF
// after the data, or a bad trailer.
var errBadChunk = errors.New("malformed chunked body")

// timedWriter writes to a connection under a write deadline kept about idle
// ahead, so a peer that stops reading is cut off after between 7/8 of idle
// and idle. Moving a deadline costs a timer update under a lock, so it is
// moved only once it has fallen an eighth of idle behind, not on every
// write of every request.
type timedWriter struct {
	c     *net.TCPConn
	sec   *tls.Conn // when set, writes go through it, over c
	up    *upIO     // when set, writes go through it: c is a backend's
	idle  time.Duration
	until time.Time // the deadline now set on c, zero when none
	err   error     // the first write error, so callers can tell write from read failures
	n     int64     // bytes written, for the access log
}

func (w *timedWriter) Write(p []byte) (int, error) {
	if w.idle > 0 {
		if now := time.Now(); w.until.Sub(now) < w.idle-w.idle/8 {
			w.until = now.Add(w.idle)
			w.c.SetWriteDeadline(w.until)
		}
	}
	n, err := w.write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// write writes p to the connection as it is, through TLS when there is
// TLS, and through upIO to a backend.
func (w *timedWriter) write(p []byte) (int, error) {
	switch {
	case w.sec != nil:
		return w.sec.Write(p)
	case w.up != nil:
		return w.up.Write(p)
	}
	return w.c.Write(p)
}

// copyFixed copies exactly n bytes of body from src to dst.
func copyFixed(dst io.Writer, src *connReader, n int64) error {
	for n > 0 {
		p, err := src.next(n)
		if err != nil {
			return unexpectedEOF(err)
		}
		if _, err := dst.Write(p); err != nil {
			return err
		}
		n -= int64(len(p))
	}
	return nil
}

// copyUntilEOF copies src to dst until src ends: a response body that is
// delimited by the backend closing its connection. With chunk, every piece
// read goes out as one chunk and the end as the last chunk, so that the
// client learns where the body ends without its connection closing. A read
// error other than EOF returns without the last chunk: the client must not
// take a cut body for a whole one.
func copyUntilEOF(dst io.Writer, src *connReader, chunk bool) error {
	for {
		p, err := src.next(1 << 62)
		if err == io.EOF {
			if chunk {
				_, err = dst.Write(lastChunk)
				return err
			}
			return nil
		}
		if err != nil {
			return err
		}
		if chunk {
			if _, err := dst.Write(src.appendSizeLine(int64(len(p)))); err != nil {
				return err
			}
		}
		if _, err := dst.Write(p); err != nil {
			return err
		}
		if chunk {
			if _, err := dst.Write(crlfBytes); err != nil {
				return err
			}
		}
	}
}

// appendSizeLine returns the chunk-size line for size as lbctl writes it:
// lower-case hex without leading zeros and without extensions, then CRLF.
// The line is valid until the next call.
func (b *connReader) appendSizeLine(size int64) []byte {
	line := strconv.AppendInt(b.sizeLine[:0], size, 16)
	return append(line, "\r\n"...)
}

// copyChunked copies one chunked body from src to dst. Each size line is
// checked and written as lbctl's own (extensions, which are checked too,
// are dropped), each chunk's data and CRLF and each trailer is forwarded
// after it has been checked, so that a malformed body never passes as a
// well-formed one. With framed false, only the chunks' data is written (for
// an HTTP/1.0 client, whose response then ends with the connection).
func copyChunked(dst io.Writer, src *connReader, framed bool) error {
	if !framed {
		dst = discardFraming{dst}
	}
	for {
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return chunkErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errBadChunk
		}
		if _, err := dst.Write(src.appendSizeLine(size)); err != nil {
			return err
		}
		if size == 0 {
			return copyTrailers(dst, src)
		}
		if d, ok := dst.(discardFraming); ok {
			if err := copyFixed(d.w, src, size); err != nil {
				return err
			}
		} else if err := copyFixed(dst, src, size); err != nil {
			return err
		}
		crlf, err := src.readLine(2)
		if err != nil {
			return chunkErr(err)
		}
		if !bytes.Equal(crlf, crlfBytes) {
			return errBadChunk
		}
		if _, err := dst.Write(crlf); err != nil {
			return err
		}
	}
}

var (
	crlfBytes = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n") // the last chunk of a body without trailers
)

// discardFraming swallows the framing lines of a chunked body that is being
// unwrapped; the chunks' data is written to w directly.
type discardFraming struct{ w io.Writer }

func (d discardFraming) Write(p []byte) (int, error) { return len(p), nil }

// copyTrailers forwards the trailer section after the last chunk, through
// the empty line that ends the body.
func copyTrailers(dst io.Writer, src *connReader) error {
	for range maxTrailers + 1 {
		line, err := src.readLine(maxChunkLine)
		if err != nil {
			return chunkErr(err)
		}
		if !validTrailer(line) {
			return errBadChunk
		}
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if len(line) == 2 {
			return nil
		}
	}
	return errBadChunk
}

// parseChunkSize reads a chunk-size line (RFC 9112 7.1): 1 to 15 hex
// digits, chunk extensions, then CRLF. Extensions must follow RFC 9112
// 7.1.1: each is BWS ";" BWS name, optionally followed by BWS "=" BWS and a
// token or a quoted-string. Nothing else may follow the size but trailing
// whitespace.
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	line = line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	return n, validChunkExt(line[i:])
}

// validChunkExt reports whether ext is a well-formed chunk-ext (RFC 9112
// 7.1.1), possibly empty.
func validChunkExt(ext []byte) bool {
	i := 0
	for i < len(ext) {
		// Whitespace after the size or an extension, with nothing
		// after it, is taken as HAProxy and nginx take it: lbctl writes
		// the size line afresh, so the backend never sees it.
		if i = skipBWS(ext, i); i == len(ext) {
			return true
		}
		if ext[i] != ';' {
			return false
		}
		i = skipBWS(ext, i+1)
		name := skipToken(ext, i)
		if name == i {
			return false
		}
		i = name
		if eq := skipBWS(ext, i); eq < len(ext) && ext[eq] == '=' {
			v := skipBWS(ext, eq+1)
			if v < len(ext) && ext[v] == '"' {
				end, ok := skipQuoted(ext, v)
				if !ok {
					return false
				}
				i = end
			} else {
				if i = skipToken(ext, v); i == v {
					return false
				}
			}
		}
	}
	return true
}

// skipBWS returns the offset of the first byte at or after i that is not
// a space or a tab.
func skipBWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// skipToken returns the offset of the first byte at or after i that is not
// a token character; i itself when there is no token.
func skipToken(b []byte, i int) int {
	for i < len(b) && headTchar[b[i]] {
		i++
	}
	return i
}

// skipQuoted returns the offset after the quoted-string (RFC 9110 5.6.4)
// that starts with the DQUOTE at b[i], and false when it is malformed or
// not closed.
func skipQuoted(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i == len(b) || !quotable(b[i]) {
				return 0, false
			}
		case !quotable(c):
			return 0, false
		}
	}
	return 0, false
}

// quotable reports whether c may stand in a quoted-string, as qdtext or
// escaped: HTAB, SP, visible ASCII and obs-text (the DQUOTE and backslash
// that qdtext leaves out are handled by the caller).
func quotable(c byte) bool { return c == '\t' || c >= ' ' && c != 0x7f }

// validTrailer accepts the empty line or "name: value" with a token name and
// no control bytes, ending in CRLF.
func validTrailer(line []byte) bool {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return false
	}
	line = line[:len(line)-2]
	if len(line) == 0 {
		return true
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if !headTchar[c] {
			return false
		}
	}
	for _, c := range line[colon+1:] {
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			return false
		}
	}
	return true
}

// chunkErr maps reader errors met inside a chunked body.
func chunkErr(err error) error {
	if errors.Is(err, errLineTooLong) {
		return errBadChunk
	}
	return unexpectedEOF(err)
}

// unexpectedEOF turns an EOF in the middle of a body into
// io.ErrUnexpectedEOF, so that callers can tell a cut body from a whole one.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

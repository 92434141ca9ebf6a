package l7

import (
	"bytes"
	"strconv"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// appendRequestHead appends the head forwarded to backend b: the request
// line as HTTP/1.1 with the target in origin-form, Host, every end-to-end
// field except the persistence cookie and the forwarding fields lbctl sets
// itself, the framing lbctl will send, and X-Forwarded-For, X-Real-IP and
// X-Forwarded-Proto from the connection.
//
// Host and the framing fields are written from the parsed head, never
// copied: whatever a Connection field names, the backend reads the body
// lbctl sends with the framing lbctl parsed, for the authority lbctl
// checked.
func (s *session) appendRequestHead(dst []byte, b *backend.Backend) []byte {
	req := &s.req
	dst = append(dst, req.method...)
	dst = append(dst, ' ')
	if req.slash {
		dst = append(dst, '/')
	}
	dst = append(dst, req.target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	if req.host != nil {
		dst = append(dst, req.host...)
	} else {
		// HTTP/1.0 without Host: HTTP/1.1 requires one.
		dst = append(dst, b.Address()...)
	}
	dst = append(dst, "\r\n"...)
	named := namesFields(req.fields)
	for i := range req.fields {
		f := &req.fields[i]
		switch {
		case req.upgrade && asciiEqualFold(f.name, "upgrade"):
			// kept: this request asks to switch protocols
		case notForwarded(f.name, true) || named && connectionNamed(req.fields, f.name):
			continue
		case asciiEqualFold(f.name, "cookie"):
			stripped, removed := stripCookie(s.tmp[:0], f.value, s.st.codec.name)
			s.tmp = stripped[:0]
			if removed {
				if len(stripped) > 0 {
					dst = appendField(dst, f.name, stripped)
				}
				continue
			}
		}
		dst = appendField(dst, f.name, f.value)
	}
	switch {
	case req.chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case req.contentLength >= 0:
		dst = appendContentLength(dst, req.contentLength)
	}
	if req.upgrade {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	dst = append(dst, s.ip...)
	dst = append(dst, "\r\nX-Real-IP: "...)
	dst = append(dst, s.ip...)
	if s.sec != nil {
		return append(dst, "\r\nX-Forwarded-Proto: https\r\n\r\n"...)
	}
	dst = append(dst, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	return dst
}

// appendResponseHead appends the head of s.resp as the client gets it: the
// status line as HTTP/1.1, every end-to-end field, the framing lbctl sends,
// "Connection: close" when the connection ends after this response, and,
// when cookieFor is set, the persistence cookie for that backend with
// Cache-Control: private so that shared caches keep neither.
//
// The framing is written from the parsed head, as for requests. chunkedOut
// says the body goes out chunked: as the backend coded it when its final
// coding is chunked (other codings, such as gzip, are kept), or re-framed by
// lbctl when the backend delimits it by closing. A body whose codings do not
// end in chunked runs until close, and its Transfer-Encoding is kept as sent.
func (s *session) appendResponseHead(dst []byte, cookieFor *backend.Backend, closeAfter, chunkedOut bool) []byte {
	resp := &s.resp
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(resp.status), 10)
	dst = append(dst, ' ')
	dst = append(dst, resp.reason...)
	dst = append(dst, "\r\n"...)
	private := false
	named := namesFields(resp.fields)
	for i := range resp.fields {
		f := &resp.fields[i]
		if resp.status == 101 && (asciiEqualFold(f.name, "upgrade") || asciiEqualFold(f.name, "connection")) {
			dst = appendField(dst, f.name, f.value)
			continue
		}
		if notForwarded(f.name, false) || named && connectionNamed(resp.fields, f.name) {
			continue
		}
		if cookieFor != nil && asciiEqualFold(f.name, "cache-control") {
			private = true
			dst = appendCacheControl(dst, f)
			continue
		}
		dst = appendField(dst, f.name, f.value)
	}
	switch {
	case resp.status < 200 || resp.status == 204:
		// RFC 9110 8.6, 6.4.1: neither has content nor a Content-Length.
	case chunkedOut && resp.chunked:
		dst = appendField(dst, transferEncoding, resp.te)
	case chunkedOut:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case resp.te != nil && !resp.chunked:
		dst = appendField(dst, transferEncoding, resp.te)
	case resp.contentLength >= 0:
		dst = appendContentLength(dst, resp.contentLength)
	}
	if cookieFor != nil {
		dst = s.st.codec.appendSetCookie(dst, cookieFor, time.Now())
		if !private {
			dst = append(dst, "Cache-Control: private\r\n"...)
		}
	}
	switch {
	case resp.status == 101:
	case closeAfter:
		dst = append(dst, "Connection: close\r\n"...)
	case s.http10:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendCacheControl appends a Cache-Control field that keeps shared caches
// from storing a response that sets the persistence cookie: "private" is
// added unless the field already forbids shared storage.
func appendCacheControl(dst []byte, f *field) []byte {
	dst = append(dst, f.name...)
	dst = append(dst, ": "...)
	dst = append(dst, f.value...)
	if !hasToken(f.value, "private") && !hasToken(f.value, "no-store") && !hasToken(f.value, "no-cache") {
		if len(f.value) > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, "private"...)
	}
	return append(dst, "\r\n"...)
}

func appendField(dst, name, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// transferEncoding is the field name lbctl writes framing under.
var transferEncoding = []byte("Transfer-Encoding")

// appendContentLength appends a Content-Length field with value n.
func appendContentLength(dst []byte, n int64) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, "\r\n"...)
}

// notForwarded reports whether lbctl leaves out a field of a request (when
// request is set) or of a response when it forwards the message. It is the one
// place that says which fields lbctl does not copy:
//   - the framing fields Content-Length and Transfer-Encoding, which lbctl
//     writes from what it parsed (RFC 9112 6), and in a request Host, which it
//     writes from the authority it checked. A Connection option naming one of
//     them changes nothing: framing and Host cannot be made hop-by-hop.
//   - the hop-by-hop fields of RFC 9110 7.6.1 (and Trailer, whose trailers
//     are forwarded as received);
//   - in a request, the forwarding fields that lbctl sets itself or that only
//     a proxy may set (Forwarded, X-Forwarded-*, X-Real-IP): a client's are
//     never trusted.
func notForwarded(name []byte, request bool) bool {
	switch len(name) {
	case 2:
		return asciiEqualFold(name, "te")
	case 4:
		return request && asciiEqualFold(name, "host")
	case 7:
		return asciiEqualFold(name, "trailer") || asciiEqualFold(name, "upgrade")
	case 9:
		return request && (asciiEqualFold(name, "x-real-ip") || asciiEqualFold(name, "forwarded"))
	case 10:
		return asciiEqualFold(name, "connection") || asciiEqualFold(name, "keep-alive")
	case 14:
		return asciiEqualFold(name, "content-length")
	case 15:
		return request && asciiEqualFold(name, "x-forwarded-for")
	case 16:
		return asciiEqualFold(name, "proxy-connection") || request && asciiEqualFold(name, "x-forwarded-host")
	case 17:
		return asciiEqualFold(name, "transfer-encoding") || request && asciiEqualFold(name, "x-forwarded-proto")
	}
	return false
}

// namesFields reports whether a Connection field of fields lists anything
// but the options close, keep-alive and upgrade, that is, names other fields
// as hop-by-hop. Most heads do not, and skip the per-field check.
func namesFields(fields []field) bool {
	for i := range fields {
		if !asciiEqualFold(fields[i].name, "connection") {
			continue
		}
		for tok, rest := nextToken(fields[i].value); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if len(tok) > 0 && !asciiEqualFold(tok, "close") && !asciiEqualFold(tok, "keep-alive") && !asciiEqualFold(tok, "upgrade") {
				return true
			}
		}
	}
	return false
}

// connectionNamed reports whether a Connection field of fields lists name:
// such fields are hop-by-hop too.
func connectionNamed(fields []field, name []byte) bool {
	for i := range fields {
		if !asciiEqualFold(fields[i].name, "connection") {
			continue
		}
		for tok, rest := nextToken(fields[i].value); tok != nil || len(rest) > 0; tok, rest = nextToken(rest) {
			if bytes.EqualFold(tok, name) {
				return true
			}
		}
	}
	return false
}

// nextToken splits the first element off a comma-separated list, without
// the spaces and tabs around it; tok is nil once v is empty.
func nextToken(v []byte) (tok, rest []byte) {
	if len(v) == 0 {
		return nil, nil
	}
	if j := bytes.IndexByte(v, ','); j >= 0 {
		tok, rest = v[:j], v[j+1:]
	} else {
		tok = v
	}
	return bytes.Trim(tok, " \t"), rest
}

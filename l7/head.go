package l7

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// This file is the strict HTTP/1.1 head parser (RFC 9112). The proxy reads a whole
// head into its own buffer, finds its end with headEnd and hands it to
// parseRequestHead or parseResponseHead. Parsing does not allocate: results are
// sub-slices of the head, kept in a caller-owned struct whose slices are reused.
//
// Everything a client sends is untrusted, so the request parser rejects whatever
// could be framed two ways by two parsers (request smuggling): bare CR or LF, line
// folding, whitespace before a colon, control bytes in a value, conflicting or
// malformed Content-Length, any Transfer-Encoding but a single "chunked", and both
// at once. It also rejects what could be routed two ways: a request target that is
// not one of the forms of RFC 9112 3.2, and a Host that is not an authority.
//
// Framing and Host are what the parser says they are, never fields to forward:
// the proxy writes Content-Length, Transfer-Encoding and Host from the parsed
// head (see forward.go), so no Connection option can remove them.

// maxFields is the most field lines a head may carry; one more is a 431 for a
// request (a 502 for a response).
const maxFields = 100

// field is one header line: name and value are sub-slices of the head; value has
// leading and trailing SP/HTAB removed.
type field struct{ name, value []byte }

// requestHead is a parsed request head. Its slices point into the parsed bytes.
type requestHead struct {
	method, proto  []byte  // proto is "HTTP/1.0", "HTTP/1.1", or a later HTTP/1.x served as 1.1
	target         []byte  // in origin-form ("/p?q"), or "*" for OPTIONS; see slash
	slash          bool    // the target of an absolute-form request had an empty path: forward "/" before target
	fields         []field // in arrival order, every field
	contentLength  int64   // -1 when absent
	chunked        bool    // Transfer-Encoding: chunked
	close          bool    // the client asked to close after this exchange: "Connection: close", or HTTP/1.0 without "Connection: keep-alive"
	upgrade        bool    // a Connection token "upgrade" AND an Upgrade field are present (HTTP/1.1 only)
	expectContinue bool    // Expect: 100-continue (case-insensitive; HTTP/1.1 only, RFC 9110 10.1.1)
	host           []byte  // the authority the request is for: an absolute-form target's, else the Host field's; nil without either (HTTP/1.0)
	upgradeValue   []byte  // the Upgrade field value, when upgrade is set
}

// responseHead is a parsed response head. Its slices point into the parsed bytes.
// Whether a body follows depends on the request too (HEAD, 1xx, 204, 304 have
// none), so a response with neither contentLength nor chunked is left for the
// caller: its body, if any, runs until the server closes.
type responseHead struct {
	proto         []byte
	status        int    // 100..599
	reason        []byte // may be empty
	fields        []field
	contentLength int64  // -1 when absent
	chunked       bool   // chunked is the final transfer coding, and the only chunked
	te            []byte // the Transfer-Encoding field value (its codings), nil when absent
	upgrade       []byte // the Upgrade field value, nil when absent
	close         bool   // "Connection: close", HTTP/1.0 without keep-alive, or a body that runs until close
}

// headError is a rejected head: status is the HTTP status to answer with
// (400, 431, 505 for requests; 502 for every response error), reason a short
// human text for logs and the error page.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string {
	return "http head rejected (" + strconv.Itoa(e.status) + "): " + e.reason
}

// headReject returns a *headError as an error.
func headReject(status int, reason string) error {
	return &headError{status: status, reason: reason}
}

// reset empties h for the next parse and keeps the capacity of its fields.
func (h *requestHead) reset() {
	*h = requestHead{fields: h.fields[:0], contentLength: -1}
}

// reset empties h for the next parse and keeps the capacity of its fields.
func (h *responseHead) reset() {
	*h = responseHead{fields: h.fields[:0], contentLength: -1}
}

// headEnd returns the length of the head at the start of b (through the empty line
// that ends it), or -1 if b does not yet hold a complete head.
//
// from lets the caller resume as b grows: pass the len(b) of the previous call
// that returned -1, or anything smaller (0 the first time); the scan restarts two
// bytes before it, so a terminator split across reads is still found. The caller
// enforces the size limit (limits.header_bytes, 431) while it gets -1.
//
// The end is the first empty line, and a line ended by a bare LF counts: a client
// using bare LF line ends gets its head found and rejected by the parser (400)
// at once instead of waiting for a CRLF CRLF that never comes. In a head that
// parses, every LF follows a CR, so this is exactly the first CRLF CRLF.
func headEnd(b []byte, from int) int {
	// Every LF before from-2 was followed by two bytes in the previous call and
	// was not the start of "\n\n" or "\n\r\n".
	i := min(max(from-2, 0), len(b))
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		p := i + j
		if p+1 >= len(b) {
			return -1
		}
		switch b[p+1] {
		case '\n':
			return p + 2
		case '\r':
			if p+2 >= len(b) {
				return -1
			}
			if b[p+2] == '\n' {
				return p + 3
			}
		}
		i = p + 1
	}
}

// parseRequestHead parses b, exactly one complete request head ending in
// CRLF CRLF, into h (reset first). Empty lines before the request line are
// skipped (RFC 9112 2.2). On error, the error is a *headError and h holds a
// partial parse that must not be used.
func parseRequestHead(b []byte, h *requestHead) error {
	h.reset()
	for len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		b = b[2:]
	}
	line, pos, err := headFirstLine(b, 400, "request line")
	if err != nil {
		return err
	}
	// method SP target SP HTTP-version, exactly one SP each (RFC 9112 3).
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return headReject(400, "malformed request line")
	}
	h.method, line = line[:sp], line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp < 0 {
		return headReject(400, "malformed request line")
	}
	h.target, h.proto = line[:sp], line[sp+1:]
	if len(h.target) == 0 || bytes.IndexByte(h.proto, ' ') >= 0 {
		return headReject(400, "malformed request line: SP must separate exactly three parts")
	}
	if !headIsToken(h.method) {
		return headReject(400, "invalid method")
	}
	http10, status := headVersion(h.proto)
	switch status {
	case 0:
	case 505:
		return headReject(505, "unsupported HTTP version")
	default:
		return headReject(400, "malformed HTTP version")
	}
	if string(h.method) == "CONNECT" {
		// lbctl is a reverse proxy: it opens no tunnels to where a client
		// asks.
		return headReject(501, "CONNECT is not supported")
	}
	authority, reason := h.parseTarget()
	if reason != "" {
		return headReject(400, reason)
	}

	var fr headFraming
	h.fields, err = fr.parseFields(b, pos, h.fields, 400, 431)
	if err != nil {
		return err
	}

	h.contentLength = fr.contentLength
	switch {
	case fr.teFields > 1:
		return headReject(400, "multiple Transfer-Encoding fields")
	case fr.teFields == 1 && http10:
		return headReject(400, "Transfer-Encoding in an HTTP/1.0 request")
	case fr.teFields == 1 && !asciiEqualFold(fr.teValue, "chunked"):
		return headReject(400, "unsupported Transfer-Encoding: only a single chunked is accepted")
	case fr.teFields == 1 && fr.contentLength >= 0:
		return headReject(400, "both Content-Length and Transfer-Encoding")
	}
	h.chunked = fr.teFields == 1

	// RFC 9112 3.2: a request without Host (HTTP/1.1), with more than one,
	// or with one that is not an authority, is a 400. The authority of an
	// absolute-form target replaces Host (RFC 9112 3.2.2).
	switch {
	case fr.hostFields > 1:
		return headReject(400, "multiple Host fields")
	case fr.hostFields == 0 && !http10:
		return headReject(400, "missing Host field in an HTTP/1.1 request")
	case fr.hostFields == 1 && !headValidHost(fr.host):
		return headReject(400, "invalid Host field")
	}
	h.host = fr.host
	if authority != nil {
		h.host = authority
	}

	h.close = fr.connClose || http10 && !fr.connKeepAlive
	h.upgrade = !http10 && fr.connUpgrade && fr.upgradeField
	if h.upgrade {
		h.upgradeValue = fr.upgrade
	}
	h.expectContinue = !http10 && fr.expectContinue
	return nil
}

// asterisk is the target of a server-wide OPTIONS request.
var asterisk = []byte("*")

// parseTarget checks h.target against the forms of RFC 9112 3.2 and leaves it
// in the form lbctl forwards. Origin-form ("/path?query") stays as it is; "*"
// is accepted for OPTIONS only; an absolute-form target ("http://host/path")
// is reduced to its path and query, and its authority is returned to replace
// Host. Authority-form is CONNECT's, which the caller has refused already.
// reason says why a target is refused.
func (h *requestHead) parseTarget() (authority []byte, reason string) {
	t := h.target
	if !headIsTarget(t) {
		return nil, "invalid request target"
	}
	if bytes.IndexByte(t, '#') >= 0 {
		return nil, "fragment in request target"
	}
	switch {
	case t[0] == '/':
		return nil, ""
	case len(t) == 1 && t[0] == '*':
		if string(h.method) != "OPTIONS" {
			return nil, "asterisk-form request target on a method other than OPTIONS"
		}
		return nil, ""
	}
	rest, ok := cutHTTPScheme(t)
	if !ok {
		return nil, "request target is neither origin-form nor an http(s) absolute-form"
	}
	end := len(rest)
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	authority, path := rest[:end], rest[end:]
	if bytes.IndexByte(authority, '@') >= 0 {
		return nil, "userinfo in request target"
	}
	if !headValidHost(authority) {
		return nil, "invalid authority in request target"
	}
	switch {
	case len(path) > 0 && path[0] == '/':
	case len(path) == 0 && string(h.method) == "OPTIONS":
		path = asterisk
	default:
		h.slash = true // RFC 9112 3.2.1: an empty path is sent as "/"
	}
	h.target = path
	return authority, ""
}

// cutHTTPScheme removes a leading "http://" or "https://" (scheme in any
// case) from t.
func cutHTTPScheme(t []byte) (rest []byte, ok bool) {
	for _, scheme := range [...]string{"http://", "https://"} {
		if len(t) >= len(scheme) && asciiEqualFold(t[:len(scheme)], scheme) {
			return t[len(scheme):], true
		}
	}
	return nil, false
}

// headValidHost reports whether v is uri-host [":" port] (RFC 9110 7.2,
// RFC 3986 3.2.2): an IP literal in brackets, or a reg-name (which includes
// IPv4 addresses) of unreserved characters, sub-delims and percent-encoded
// octets; the port is up to five digits. An empty value is refused: lbctl
// needs an authority to forward the request with.
func headValidHost(v []byte) bool {
	i := 0
	if len(v) > 0 && v[0] == '[' {
		j := bytes.IndexByte(v, ']')
		if j < 2 {
			return false
		}
		for _, c := range v[1:j] {
			if !headIsHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		i = j + 1
	} else {
		for i < len(v) && v[i] != ':' {
			switch c := v[i]; {
			case headRegName[c]:
				i++
			case c == '%' && i+2 < len(v) && headIsHex(v[i+1]) && headIsHex(v[i+2]):
				i += 3
			default:
				return false
			}
		}
		if i == 0 {
			return false
		}
	}
	if i == len(v) {
		return true
	}
	port := v[i+1:]
	if v[i] != ':' || len(port) > 5 {
		return false
	}
	for _, c := range port {
		if !headIsDigit(c) {
			return false
		}
	}
	return true
}

// headBlank reports whether b, a head as readHead returns it, holds only empty
// lines: what a client may send between requests (RFC 9112 2.2).
func headBlank(b []byte) bool {
	for len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		b = b[2:]
	}
	return len(b) == 0
}

// parseResponseHead parses b, exactly one complete response head ending in
// CRLF CRLF, into h (reset first). Every error is a *headError with status 502.
func parseResponseHead(b []byte, h *responseHead) error {
	h.reset()
	line, pos, err := headFirstLine(b, 502, "status line")
	if err != nil {
		return err
	}
	// HTTP-version SP 3DIGIT [SP [reason]] (RFC 9112 4; a missing reason is
	// tolerated with or without its SP).
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return headReject(502, "malformed status line")
	}
	h.proto, line = line[:sp], line[sp+1:]
	http10, status := headVersion(h.proto)
	if status != 0 {
		return headReject(502, "unsupported HTTP version in response")
	}
	if len(line) < 3 || line[0] < '1' || line[0] > '5' || !headIsDigit(line[1]) || !headIsDigit(line[2]) {
		return headReject(502, "malformed status code")
	}
	h.status = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) > 3 {
		if line[3] != ' ' {
			return headReject(502, "malformed status code")
		}
		h.reason = line[4:]
		if headBadValueByte(h.reason) >= 0 {
			return headReject(502, "control byte in reason phrase")
		}
	}

	var fr headFraming
	h.fields, err = fr.parseFields(b, pos, h.fields, 502, 502)
	if err != nil {
		return err
	}

	h.contentLength = fr.contentLength
	h.close = fr.connClose || http10 && !fr.connKeepAlive
	if fr.upgradeField {
		h.upgrade = fr.upgrade
	}
	if fr.teFields > 0 {
		switch {
		case fr.contentLength >= 0:
			return headReject(502, "both Content-Length and Transfer-Encoding in response")
		case http10:
			// RFC 9112 6.1: the framing of an HTTP/1.0 message with
			// Transfer-Encoding is faulty.
			return headReject(502, "Transfer-Encoding in an HTTP/1.0 response")
		case fr.teFields > 1:
			return headReject(502, "multiple Transfer-Encoding fields in response")
		case headCountToken(fr.teValue, "chunked") > 1:
			// RFC 9112 6.1: chunked is applied at most once.
			return headReject(502, "chunked applied more than once in response")
		}
		h.te = fr.teValue
		// RFC 9112 6.3: chunked must be the final coding, or the body runs
		// until the server closes.
		h.chunked = asciiEqualFold(fr.teLast, "chunked")
		if !h.chunked {
			h.close = true
		}
	}
	return nil
}

// headFirstLine returns the first line of the head b without its CRLF, and the
// offset of the line after it. what names the line in errors.
func headFirstLine(b []byte, bad int, what string) (line []byte, next int, err error) {
	line, next, reason := headNextLine(b, 0)
	if reason != "" {
		return nil, 0, headReject(bad, reason)
	}
	if len(line) == 0 {
		return nil, 0, headReject(bad, "empty line before the "+what)
	}
	return line, next, nil
}

// headNextLine returns the line of b that starts at pos, without its CRLF, and the
// offset of the line after it; or a reason when there is no complete line or the
// line has a bare CR or LF.
func headNextLine(b []byte, pos int) (line []byte, next int, reason string) {
	j := bytes.IndexByte(b[pos:], '\n')
	if j < 0 {
		return nil, 0, "incomplete head"
	}
	end := pos + j
	if end == pos || b[end-1] != '\r' {
		return nil, 0, "bare LF in head"
	}
	line = b[pos : end-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, "bare CR in head"
	}
	return line, end + 1, ""
}

// headFraming collects what the field lines of one head say about its framing and
// its connection; the two parsers turn it into their verdicts.
type headFraming struct {
	contentLength  int64  // -1 when absent
	clValue        []byte // the first Content-Length value
	teFields       int    // Transfer-Encoding fields seen
	teValue        []byte // the value of the last Transfer-Encoding field
	teLast         []byte // the last non-empty coding over all Transfer-Encoding fields
	hostFields     int
	host           []byte
	connClose      bool
	connKeepAlive  bool
	connUpgrade    bool
	upgradeField   bool
	upgrade        []byte // the value of the last Upgrade field
	expectContinue bool
}

// parseFields parses the field lines of b from pos through the empty line that
// must end b, appending them to fields. bad is the status of a malformed head,
// tooMany the status of one with more than maxFields fields.
func (fr *headFraming) parseFields(b []byte, pos int, fields []field, bad, tooMany int) ([]field, error) {
	fr.contentLength = -1
	for {
		if pos+1 < len(b) && b[pos] == '\r' && b[pos+1] == '\n' {
			if pos+2 != len(b) {
				return fields, headReject(bad, "bytes after the end of the head")
			}
			return fields, nil
		}
		if len(fields) == maxFields {
			return fields, headReject(tooMany, "too many header fields")
		}
		fields = append(fields, field{})
		f := &fields[len(fields)-1]
		next, ok := headScanField(b, pos, f)
		if !ok {
			return fields, headReject(bad, headFieldLineReason(b, pos))
		}
		if reason := fr.add(f); reason != "" {
			return fields, headReject(bad, reason)
		}
		pos = next
	}
}

// headScanField parses the field line at b[pos:], name ":" OWS value OWS CRLF
// (RFC 9112 5), into f and returns the offset of the next line. It is the fast
// path: one pass, no line split; ok is false for anything malformed, and
// headFieldLineReason then says why.
func headScanField(b []byte, pos int, f *field) (next int, ok bool) {
	i := pos
	for i < len(b) && headTchar[b[i]] {
		i++
	}
	if i == pos || i == len(b) || b[i] != ':' {
		return 0, false
	}
	// The value runs to the first byte a value may not hold, which must be the
	// CR of the CRLF that ends the line.
	v := b[i+1:]
	j := headBadValueByte(v)
	if j < 0 || v[j] != '\r' || j+1 == len(v) || v[j+1] != '\n' {
		return 0, false
	}
	f.name, f.value = b[pos:i], headTrimOWS(v[:j])
	return i + 1 + j + 2, true
}

// headFieldLineReason says why headScanField rejected the field line at b[pos:].
func headFieldLineReason(b []byte, pos int) string {
	line, _, reason := headNextLine(b, pos)
	if reason != "" {
		return reason
	}
	if len(line) == 0 {
		return "empty line before the end of the head"
	}
	if line[0] == ' ' || line[0] == '\t' {
		return "obs-fold (line folding) in field line"
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return "field line without colon"
	}
	name, value := line[:colon], line[colon+1:]
	if len(name) == 0 {
		return "empty field name"
	}
	if !headIsToken(name) {
		if last := name[len(name)-1]; last == ' ' || last == '\t' {
			// RFC 9112 5.1: a server MUST reject it.
			return "whitespace between field name and colon"
		}
		return "invalid byte in field name"
	}
	if i := headBadValueByte(value); i >= 0 && value[i] == 0 {
		return "NUL in field value"
	}
	return "control byte in field value"
}

// add records what f means for framing and connection handling, or returns why
// the head must be rejected.
func (fr *headFraming) add(f *field) string {
	switch len(f.name) {
	case 4:
		if asciiEqualFold(f.name, "host") {
			fr.hostFields++
			fr.host = f.value
		}
	case 6:
		if asciiEqualFold(f.name, "expect") && asciiEqualFold(f.value, "100-continue") {
			fr.expectContinue = true
		}
	case 7:
		if asciiEqualFold(f.name, "upgrade") {
			fr.upgradeField = true
			fr.upgrade = f.value
		}
	case 10:
		if asciiEqualFold(f.name, "connection") {
			fr.connClose = fr.connClose || hasToken(f.value, "close")
			fr.connKeepAlive = fr.connKeepAlive || hasToken(f.value, "keep-alive")
			fr.connUpgrade = fr.connUpgrade || hasToken(f.value, "upgrade")
		}
	case 14:
		if asciiEqualFold(f.name, "content-length") {
			n, ok := headContentLength(f.value)
			if !ok {
				return "invalid Content-Length"
			}
			if fr.contentLength >= 0 && !bytes.Equal(f.value, fr.clValue) {
				return "conflicting Content-Length fields"
			}
			fr.contentLength, fr.clValue = n, f.value
		}
	case 17:
		if asciiEqualFold(f.name, "transfer-encoding") {
			fr.teFields++
			fr.teValue = f.value
			if last := headLastElement(f.value); len(last) > 0 {
				fr.teLast = last
			}
		}
	}
	return ""
}

// headContentLength parses a Content-Length value: 1 to 18 ASCII digits, nothing
// else (no sign, no inner space, no list), so it always fits an int64.
func headContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !headIsDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// headVersion checks an HTTP-version. status is 0 for HTTP/1.0 and HTTP/1.1,
// and for a later HTTP/1.x, which is served as HTTP/1.1 (RFC 9110 2.5: a minor
// version above the highest implemented is treated as that one); 505 for
// another well-formed HTTP/d.d; 400 for anything else.
func headVersion(p []byte) (http10 bool, status int) {
	switch string(p) { // no allocation: the conversion only feeds the comparison
	case "HTTP/1.1":
		return false, 0
	case "HTTP/1.0":
		return true, 0
	}
	if len(p) == 8 && string(p[:5]) == "HTTP/" && headIsDigit(p[5]) && p[6] == '.' && headIsDigit(p[7]) {
		if p[5] == '1' {
			return false, 0
		}
		return false, 505
	}
	return false, 400
}

// asciiEqualFold reports whether b equals s ignoring ASCII case (s is lower case).
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v contains token tok
// (case-insensitive, OWS around elements ignored).
func hasToken(v []byte, tok string) bool { return headCountToken(v, tok) > 0 }

// headCountToken counts the elements of the comma-separated list v that equal
// tok (case-insensitive, OWS around elements ignored).
func headCountToken(v []byte, tok string) int {
	n := 0
	for len(v) > 0 {
		elem := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if asciiEqualFold(headTrimOWS(elem), tok) {
			n++
		}
	}
	return n
}

// headLastElement returns the last non-empty element of the comma-separated list
// v, without OWS; nil when there is none.
func headLastElement(v []byte) []byte {
	for {
		i := bytes.LastIndexByte(v, ',')
		if e := headTrimOWS(v[i+1:]); len(e) > 0 {
			return e
		}
		if i < 0 {
			return nil
		}
		v = v[:i]
	}
}

// headTrimOWS removes leading and trailing SP and HTAB.
func headTrimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// headBadValueByte returns the index of the first byte of v that a field value
// may not hold, or -1. Allowed: HTAB, SP, VCHAR and obs-text (RFC 9110 5.5).
func headBadValueByte(v []byte) int {
	i := 0
	// Eight bytes at a time: values are most of a head, and most have no HTAB.
	for ; i+8 <= len(v); i += 8 {
		if headSuspectWord(binary.LittleEndian.Uint64(v[i:])) {
			if j := headBadValueByteSlow(v[i : i+8]); j >= 0 {
				return i + j
			}
		}
	}
	if j := headBadValueByteSlow(v[i:]); j >= 0 {
		return i + j
	}
	return -1
}

// headSuspectWord reports whether one of the eight bytes of x is below 0x20 or
// is 0x7F: a control byte, or an HTAB that the slow path must look at. These
// are the "hasless" and "haszero" tests of Bit Twiddling Hacks, both exact.
func headSuspectWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	del := x ^ (ones * 0x7f)
	return ((x-ones*0x20)&^x|(del-ones)&^del)&highs != 0
}

// headBadValueByteSlow is headBadValueByte one byte at a time.
func headBadValueByteSlow(v []byte) int {
	for i, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return i
		}
	}
	return -1
}

// headIsToken reports whether b is a non-empty RFC 9110 token.
func headIsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !headTchar[c] {
			return false
		}
	}
	return true
}

// headIsTarget reports whether b is a non-empty request target of visible ASCII
// (0x21..0x7E): no space, control, DEL or non-ASCII byte.
func headIsTarget(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func headIsDigit(c byte) bool { return '0' <= c && c <= '9' }

func headIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// headRegName holds the bytes of a reg-name other than percent-encoding:
// unreserved and sub-delims (RFC 3986 3.2.2).
var headRegName = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=" {
		t[c] = true
	}
	return t
}()

// headTchar holds the bytes of an RFC 9110 token (tchar).
var headTchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

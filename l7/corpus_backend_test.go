package l7

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/loopback"
)

// This file holds the two instruments of the regression corpus
// (corpus_test.go) and of the differential fuzz target (difffuzz_test.go):
// a strict HTTP/1.1 message parser, and a recording backend that parses
// every byte lbctl sends it with that parser.
//
// The parser is written for the tests from RFC 9112 and RFC 9110, and
// shares no code with lbctl's own (head.go, body.go), so that the two can
// disagree: a request lbctl lets through that this parser reads
// differently, or as two, is exactly what the corpus and the fuzz target
// look for. It is stricter than a server need be, because what it reads is
// lbctl's output, which lbctl writes from parsed state: one Content-Length
// in canonical form, one Transfer-Encoding, one valid Host, origin-form
// targets, no Connection option naming a framing field, no bare CR or LF.

// errStrictIncomplete means the bytes end before the message does.
var errStrictIncomplete = errors.New("message incomplete")

// strictError is a message the strict parser rejects: where and why.
type strictError struct {
	off    int
	reason string
}

func (e *strictError) Error() string { return fmt.Sprintf("byte %d: %s", e.off, e.reason) }

// strictField is one field line, name and value as sent (the value without
// the whitespace around it).
type strictField struct{ name, value string }

// strictFraming is how a message's body was delimited.
type strictFraming int

const (
	framedNone    strictFraming = iota // no body
	framedLength                       // Content-Length
	framedChunked                      // chunked, as the final transfer coding
	framedClose                        // the connection's end
)

func (f strictFraming) String() string {
	return [...]string{"none", "length", "chunked", "close"}[f]
}

// strictMessage is one request or response as the strict parser read it.
// Its strings and bytes are copies: they outlive the buffer parsed.
type strictMessage struct {
	method, target string // request line
	status         int    // status line
	reason         string
	version        string
	fields         []strictField
	framing        strictFraming
	length         int64    // the Content-Length, -1 when absent
	body           []byte   // the content, chunks joined
	chunkLines     []string // every chunk-size line without its CRLF, as sent
	trailers       []strictField
}

// get returns the values of every field named name (case-insensitive),
// in order.
func (m *strictMessage) get(name string) []string {
	var vs []string
	for _, f := range m.fields {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// String summarises m for failure messages.
func (m *strictMessage) String() string {
	var s string
	if m.method != "" {
		s = m.method + " " + m.target
	} else {
		s = strconv.Itoa(m.status)
	}
	if len(m.body) > 0 || m.framing != framedNone {
		s += fmt.Sprintf(" (%s body %q)", m.framing, clip(m.body, 40))
	}
	return s
}

// clip returns b as a string, cut to at most n bytes.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// strictOpts says what parseStrict reads.
type strictOpts struct {
	response bool
	method   string // for a response: the method of its request
	atEOF    bool   // no more bytes will come: a close-delimited body ends here
}

// strictMaxLine bounds one line, so that a stream of garbage is rejected
// rather than buffered without end.
const strictMaxLine = 1 << 20

// parseStrict reads one message from the start of b. It returns the message
// and its length; or errStrictIncomplete when b ends first, with the
// message's head when the head was complete (the body was not); or a
// *strictError.
func parseStrict(b []byte, o strictOpts) (*strictMessage, int, error) {
	s := &strictParser{b: b, o: o, m: &strictMessage{}}
	if err := s.head(); err != nil {
		return nil, 0, err
	}
	if err := s.content(); err != nil {
		if err == errStrictIncomplete {
			return s.m, 0, err
		}
		return nil, 0, err
	}
	return s.m, s.p, nil
}

// strictParser is the state of one parseStrict call.
type strictParser struct {
	b []byte
	p int // the next byte to read
	o strictOpts
	m *strictMessage
}

func (s *strictParser) fail(off int, format string, args ...any) error {
	return &strictError{off: off, reason: fmt.Sprintf(format, args...)}
}

// line returns the line at s.p without its CRLF and moves past it. A CR
// not followed by LF, or an LF not preceded by CR, is an error wherever it
// is (RFC 9112 2.2 lets a recipient accept a bare LF; this parser does not).
func (s *strictParser) line() (string, error) {
	start := s.p
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\n':
			if i == start || s.b[i-1] != '\r' {
				return "", s.fail(i, "LF without CR")
			}
			s.p = i + 1
			return string(s.b[start : i-1]), nil
		case '\r':
			if i+1 < len(s.b) && s.b[i+1] != '\n' {
				return "", s.fail(i, "CR without LF")
			}
		}
		if i-start > strictMaxLine {
			return "", s.fail(start, "line longer than %d bytes", strictMaxLine)
		}
	}
	return "", errStrictIncomplete
}

// head reads the start line and the field lines, and decides the framing.
func (s *strictParser) head() error {
	start, err := s.line()
	if err != nil {
		return err
	}
	if s.o.response {
		err = s.statusLine(start)
	} else {
		err = s.requestLine(start)
	}
	if err != nil {
		return err
	}
	if s.m.fields, err = s.fieldLines(); err != nil {
		return err
	}
	if s.o.response {
		return s.responseFraming()
	}
	return s.requestFraming()
}

// requestLine checks method SP request-target SP HTTP-version (RFC 9112 3).
func (s *strictParser) requestLine(line string) error {
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		return s.fail(0, "request line %q is not method SP target SP version", line)
	}
	m := s.m
	m.method, m.target, m.version = parts[0], parts[1], parts[2]
	if !strictToken(m.method) {
		return s.fail(0, "method %q is not a token", m.method)
	}
	if reason := strictOriginTarget(m.method, m.target); reason != "" {
		return s.fail(len(m.method)+1, "request target %q: %s", m.target, reason)
	}
	if !strictVersion(m.version) {
		return s.fail(len(line)-len(m.version), "malformed version %q", m.version)
	}
	return nil
}

// statusLine checks HTTP-version SP status-code SP [reason-phrase]
// (RFC 9112 4).
func (s *strictParser) statusLine(line string) error {
	m := s.m
	if len(line) < 13 || line[8] != ' ' || line[12] != ' ' {
		return s.fail(0, "status line %q is not version SP code SP reason", line)
	}
	m.version = line[:8]
	if !strictVersion(m.version) {
		return s.fail(0, "malformed version %q", m.version)
	}
	code := line[9:12]
	for i := range 3 {
		if code[i] < '0' || code[i] > '9' {
			return s.fail(9, "status code %q is not three digits", code)
		}
	}
	m.status, _ = strconv.Atoi(code)
	if m.status < 100 || m.status > 599 {
		return s.fail(9, "status code %d out of range", m.status)
	}
	m.reason = line[13:]
	for i := 0; i < len(m.reason); i++ {
		if c := m.reason[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return s.fail(13+i, "control byte %#x in reason phrase", c)
		}
	}
	return nil
}

// fieldLines reads field lines through the empty line that ends a head
// (or a trailer section): field-name ":" OWS field-value OWS (RFC 9112 5).
func (s *strictParser) fieldLines() ([]strictField, error) {
	var fields []strictField
	for {
		at := s.p
		line, err := s.line()
		if err != nil {
			return nil, err
		}
		if line == "" {
			return fields, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, s.fail(at, "field line %q starts with whitespace (obs-fold)", line)
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, s.fail(at, "field line %q has no colon", line)
		}
		name := line[:colon]
		if !strictToken(name) {
			return nil, s.fail(at, "field name %q is not a token", name)
		}
		value := strings.Trim(line[colon+1:], " \t")
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return nil, s.fail(at, "control byte %#x in the value of %s", c, name)
			}
		}
		fields = append(fields, strictField{name: name, value: value})
	}
}

// framingFields checks the fields every message lbctl writes must get right,
// and returns its Transfer-Encoding codings and Content-Length (-1 when
// absent).
func (s *strictParser) framingFields() (codings []string, length int64, err error) {
	m := s.m
	for _, v := range m.get("connection") {
		for _, opt := range strictList(v) {
			if !strictToken(opt) {
				return nil, 0, s.fail(0, "Connection option %q is not a token", opt)
			}
			switch strings.ToLower(opt) {
			case "content-length", "transfer-encoding", "host":
				// RFC 9110 7.6.1: a recipient that honoured it would
				// drop the framing or the Host.
				return nil, 0, s.fail(0, "Connection names %s", opt)
			}
		}
	}
	tes := m.get("transfer-encoding")
	if len(tes) > 1 {
		return nil, 0, s.fail(0, "%d Transfer-Encoding fields", len(tes))
	}
	if len(tes) == 1 {
		codings = strictList(tes[0])
		if len(codings) == 0 {
			return nil, 0, s.fail(0, "empty Transfer-Encoding")
		}
		chunked := 0
		for i, c := range codings {
			if !strictToken(c) {
				return nil, 0, s.fail(0, "transfer coding %q is not a token", c)
			}
			if strings.EqualFold(c, "chunked") {
				chunked++
				codings[i] = "chunked"
			}
		}
		if chunked > 1 {
			return nil, 0, s.fail(0, "chunked more than once in %q", tes[0])
		}
		if m.version == "HTTP/1.0" {
			return nil, 0, s.fail(0, "Transfer-Encoding in an HTTP/1.0 message")
		}
	}
	length = -1
	cls := m.get("content-length")
	if len(cls) > 1 {
		return nil, 0, s.fail(0, "%d Content-Length fields", len(cls))
	}
	if len(cls) == 1 {
		v := cls[0]
		if v == "" || len(v) > 18 || strings.Trim(v, "0123456789") != "" {
			return nil, 0, s.fail(0, "Content-Length %q is not 1 to 18 digits", v)
		}
		if len(v) > 1 && v[0] == '0' {
			return nil, 0, s.fail(0, "Content-Length %q has leading zeros", v)
		}
		length, _ = strconv.ParseInt(v, 10, 64)
		if codings != nil {
			return nil, 0, s.fail(0, "both Content-Length and Transfer-Encoding")
		}
	}
	return codings, length, nil
}

// requestFraming applies RFC 9112 6.3 to a request, after checking Host
// (RFC 9112 3.2).
func (s *strictParser) requestFraming() error {
	m := s.m
	hosts := m.get("host")
	switch {
	case len(hosts) > 1:
		return s.fail(0, "%d Host fields", len(hosts))
	case len(hosts) == 0 && m.version != "HTTP/1.0":
		return s.fail(0, "no Host field in an %s request", m.version)
	case len(hosts) == 1:
		if reason := strictHost(hosts[0]); reason != "" {
			return s.fail(0, "Host %q: %s", hosts[0], reason)
		}
	}
	codings, length, err := s.framingFields()
	if err != nil {
		return err
	}
	m.length = length
	switch {
	case codings != nil:
		if len(codings) != 1 || codings[0] != "chunked" {
			return s.fail(0, "request transfer codings %q: only chunked alone", codings)
		}
		m.framing = framedChunked
	case length >= 0:
		m.framing = framedLength
	}
	return nil
}

// responseFraming applies RFC 9112 6.3 to a response.
func (s *strictParser) responseFraming() error {
	m := s.m
	codings, length, err := s.framingFields()
	if err != nil {
		return err
	}
	m.length = length
	if m.status < 200 || m.status == 204 {
		// RFC 9110 8.6 and RFC 9112 6.1: never sent on these.
		if codings != nil || length >= 0 {
			return s.fail(0, "framing field on a %d response", m.status)
		}
	}
	switch {
	case s.o.method == "HEAD" || m.status < 200 || m.status == 204 || m.status == 304:
		m.framing = framedNone
	case codings != nil && codings[len(codings)-1] == "chunked":
		m.framing = framedChunked
	case codings != nil:
		// RFC 9112 6.3: chunked not final, or absent, leaves the body to
		// run until the connection closes.
		m.framing = framedClose
	case length >= 0:
		m.framing = framedLength
	default:
		m.framing = framedClose
	}
	return nil
}

// content reads the body as the framing says.
func (s *strictParser) content() error {
	m := s.m
	switch m.framing {
	case framedLength:
		if int64(len(s.b)-s.p) < m.length {
			return errStrictIncomplete
		}
		m.body = append([]byte(nil), s.b[s.p:s.p+int(m.length)]...)
		s.p += int(m.length)
	case framedChunked:
		return s.chunks()
	case framedClose:
		if !s.o.atEOF {
			return errStrictIncomplete
		}
		m.body = append([]byte(nil), s.b[s.p:]...)
		s.p = len(s.b)
	}
	return nil
}

// chunks reads a chunked body through its trailer section (RFC 9112 7.1).
func (s *strictParser) chunks() error {
	m := s.m
	m.body = []byte{}
	for {
		at := s.p
		line, err := s.line()
		if err != nil {
			return err
		}
		size, reason := strictChunkLine(line)
		if reason != "" {
			return s.fail(at, "chunk line %q: %s", line, reason)
		}
		m.chunkLines = append(m.chunkLines, line)
		if size == 0 {
			m.trailers, err = s.fieldLines()
			return err
		}
		if int64(len(s.b)-s.p) < size+2 {
			return errStrictIncomplete
		}
		end := s.p + int(size)
		if s.b[end] != '\r' || s.b[end+1] != '\n' {
			return s.fail(end, "chunk data not followed by CRLF")
		}
		m.body = append(m.body, s.b[s.p:end]...)
		s.p = end + 2
	}
}

// strictChunkLine checks chunk-size [chunk-ext] (RFC 9112 7.1 and 7.1.1)
// and returns the size, or why the line is malformed.
func strictChunkLine(line string) (int64, string) {
	i := 0
	for i < len(line) && strictHex(line[i]) {
		i++
	}
	if i == 0 {
		return 0, "no hexadecimal size"
	}
	digits := strings.TrimLeft(line[:i], "0")
	if len(digits) > 15 {
		return 0, "size too large"
	}
	var size int64
	if digits != "" {
		size, _ = strconv.ParseInt(digits, 16, 64)
	}
	rest := line[i:]
	// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" || rest[0] != ';' {
			return 0, "bytes after the size that are not an extension"
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		name := strictTokenPrefix(rest)
		if name == "" {
			return 0, "extension without a name"
		}
		rest = rest[len(name):]
		after := strings.TrimLeft(rest, " \t")
		if after == "" || after[0] != '=' {
			continue
		}
		rest = strings.TrimLeft(after[1:], " \t")
		if rest != "" && rest[0] == '"' {
			n := strictQuotedString(rest)
			if n < 0 {
				return 0, "malformed quoted extension value"
			}
			rest = rest[n:]
			continue
		}
		val := strictTokenPrefix(rest)
		if val == "" {
			return 0, "extension value is neither a token nor a quoted string"
		}
		rest = rest[len(val):]
	}
	return size, ""
}

// strictQuotedString returns the length of the quoted-string at the start
// of v (RFC 9110 5.6.4), or -1.
func strictQuotedString(v string) int {
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(v) || v[i] < 0x20 && v[i] != '\t' || v[i] == 0x7f {
				return -1
			}
		case c == '\t' || c == ' ' || c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e || c >= 0x80:
		default:
			return -1
		}
	}
	return -1
}

// strictList splits a comma-separated field value into its non-empty
// elements (RFC 9110 5.6.1: empty elements are ignored).
func strictList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.Trim(e, " \t"); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// strictOriginTarget says why target is not what lbctl may send a backend:
// origin-form, or "*" for OPTIONS (RFC 9112 3.2). The path's characters are
// only required to be visible ASCII, without the fragment lbctl must never
// forward.
func strictOriginTarget(method, target string) string {
	if target == "*" {
		if method != "OPTIONS" {
			return "asterisk-form with a method other than OPTIONS"
		}
		return ""
	}
	if target == "" || target[0] != '/' {
		return "not origin-form"
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return fmt.Sprintf("byte %#x", c)
		}
	}
	return ""
}

// strictHost says why v is not uri-host [ ":" port ] (RFC 9112 3.2, RFC
// 3986 3.2.2 and 3.2.3), or "" when it is. An empty host is refused: lbctl
// always knows the authority it forwards to.
func strictHost(v string) string {
	host, port := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return "unterminated IP literal"
		}
		host, port = v[:end+1], v[end+1:]
		if port != "" && port[0] != ':' {
			return "bytes after the IP literal"
		}
		lit := host[1 : len(host)-1]
		if strings.HasPrefix(lit, "v") || strings.HasPrefix(lit, "V") {
			dot := strings.IndexByte(lit, '.')
			if dot < 2 || strings.Trim(lit[1:dot], "0123456789abcdefABCDEF") != "" || dot == len(lit)-1 {
				return "malformed IPvFuture"
			}
			for i := dot + 1; i < len(lit); i++ {
				if c := lit[i]; !strictUnreserved(c) && !strictSubDelim(c) && c != ':' {
					return "malformed IPvFuture"
				}
			}
		} else if a, err := netip.ParseAddr(lit); err != nil || !a.Is6() || a.Zone() != "" {
			return "malformed IPv6 literal"
		}
	} else if i := strings.IndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i:]
	}
	if port != "" {
		digits := port[1:]
		if len(digits) > 5 || strings.Trim(digits, "0123456789") != "" {
			return "malformed port"
		}
	}
	if host == "" {
		return "empty host"
	}
	if host[0] == '[' {
		return ""
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case strictUnreserved(c) || strictSubDelim(c):
		case c == '%' && i+2 < len(host) && strictHex(host[i+1]) && strictHex(host[i+2]):
			i += 2
		default:
			return fmt.Sprintf("byte %q not allowed in a reg-name", c)
		}
	}
	return ""
}

func strictUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

func strictSubDelim(c byte) bool { return strings.IndexByte("!$&'()*+,;=", c) >= 0 }

func strictHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// strictVersion reports whether v is HTTP-version: "HTTP/" DIGIT "." DIGIT,
// case-sensitive (RFC 9112 2.3).
func strictVersion(v string) bool {
	return len(v) == 8 && strings.HasPrefix(v, "HTTP/") && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9'
}

// strictTchars are the bytes of a token besides letters and digits
// (RFC 9110 5.6.2).
const strictTchars = "!#$%&'*+-.^_`|~"

// strictTokenPrefix returns the longest token at the start of v.
func strictTokenPrefix(v string) string {
	i := 0
	for i < len(v) {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(strictTchars, c) >= 0) {
			break
		}
		i++
	}
	return v[:i]
}

func strictToken(v string) bool { return v != "" && strictTokenPrefix(v) == v }

// corpusBackend is a backend on loopback that records every request lbctl
// sends it, as the strict parser reads the bytes, and answers each complete
// one. By default the answer is 200 with the body "ok METHOD TARGET" and an
// X-Recorder-Seq field that numbers the request, so a client can tell whose
// response it got; a HEAD gets Content-Length: 0. A target with a script
// gets the script's bytes instead.
//
// Bytes the parser rejects are recorded as a fault, answered with a 500
// (a status lbctl never makes up itself) and the connection closed. A request whose head arrived but whose body did not
// finish before lbctl closed the connection is recorded as partial.
type corpusBackend struct {
	addr    string
	ln      net.Listener
	scripts map[string]backendScript // by request target; fixed before start
	wg      sync.WaitGroup

	mu     sync.Mutex // guards the fields below
	seq    int
	seen   []*seenRequest
	faults []string
	later  []laterWrite
}

// backendScript is how the backend answers one target.
type backendScript struct {
	reply string // written once the request is complete
	later string // written on the same connection when the test says so
	close bool   // close the connection after the reply
}

// seenRequest is one request as the backend parsed it.
type seenRequest struct {
	seq     int
	conn    int // the backend connection, numbered from 1 in accept order
	msg     *strictMessage
	partial bool // the head arrived, the body did not finish
}

func (r *seenRequest) String() string {
	s := r.msg.method + " " + r.msg.target
	if r.partial {
		return s + " (partial)"
	}
	if r.msg.framing != framedNone {
		s += fmt.Sprintf(" (%s body %q)", r.msg.framing, clip(r.msg.body, 40))
	}
	return s
}

// laterWrite is a script's later bytes, waiting for the test's signal.
type laterWrite struct {
	c     *net.TCPConn
	bytes string
}

// startCorpusBackend starts a recording backend answering scripts by target.
func startCorpusBackend(t testing.TB, scripts map[string]backendScript) *corpusBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &corpusBackend{addr: ln.Addr().String(), ln: ln, scripts: scripts}
	t.Cleanup(func() { ln.Close() })
	cb.wg.Go(func() {
		for id := 1; ; id++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cb.wg.Go(func() { cb.serve(c.(*net.TCPConn), id) })
		}
	})
	return cb
}

// serve parses and answers the requests of one connection until lbctl
// closes it.
func (cb *corpusBackend) serve(c *net.TCPConn, id int) {
	defer c.Close()
	// A backend connection lives no longer than a case: lbctl closes it
	// when the case ends, and this bounds a leak.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	var head *seenRequest // the request whose head arrived and body has not
	tmp := make([]byte, 32<<10)
	eof := false
	for {
		for len(buf) > 0 {
			m, n, err := parseStrict(buf, strictOpts{atEOF: eof})
			if err == errStrictIncomplete {
				if m != nil && head == nil {
					head = cb.record(id, m)
				}
				break
			}
			if err != nil {
				cb.fault(id, fmt.Sprintf("%v in %q", err, clip(buf, 300)))
				io.WriteString(c, "HTTP/1.1 500 Backend Parse Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			buf = buf[n:]
			seen := head
			if seen == nil {
				seen = cb.record(id, m)
			}
			head = nil
			cb.mu.Lock()
			seen.msg, seen.partial = m, false
			cb.mu.Unlock()
			if !cb.answer(c, seen) {
				return
			}
		}
		if eof {
			if len(buf) > 0 && head == nil {
				cb.fault(id, fmt.Sprintf("connection ended inside a request head: %q", clip(buf, 300)))
			}
			return
		}
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			// EOF, or a reset when lbctl closed with bytes unread.
			eof = true
		}
	}
}

// record numbers a request whose head has arrived; it stays partial until
// its body is complete.
func (cb *corpusBackend) record(conn int, m *strictMessage) *seenRequest {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.seq++
	r := &seenRequest{seq: cb.seq, conn: conn, msg: m, partial: true}
	cb.seen = append(cb.seen, r)
	return r
}

func (cb *corpusBackend) fault(conn int, what string) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.faults = append(cb.faults, fmt.Sprintf("backend connection %d: %s", conn, what))
}

// answer writes the response to r and reports whether the connection goes
// on.
func (cb *corpusBackend) answer(c *net.TCPConn, r *seenRequest) bool {
	if sc, ok := cb.scripts[r.msg.target]; ok {
		io.WriteString(c, sc.reply)
		if sc.later != "" {
			cb.mu.Lock()
			cb.later = append(cb.later, laterWrite{c: c, bytes: sc.later})
			cb.mu.Unlock()
		}
		return !sc.close
	}
	body := "ok " + r.msg.method + " " + r.msg.target
	if r.msg.method == "HEAD" {
		body = ""
	}
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Recorder-Seq: %d\r\nContent-Length: %d\r\n\r\n%s", r.seq, len(body), body)
	return err == nil
}

// sendLater writes every script's later bytes that is due, and waits until
// the kernel on lbctl's side has taken them (loopback acknowledges once the
// bytes sit in the receiving socket), so that lbctl can see them as soon
// as it looks.
func (cb *corpusBackend) sendLater() {
	cb.mu.Lock()
	due := cb.later
	cb.later = nil
	cb.mu.Unlock()
	for _, w := range due {
		if _, err := io.WriteString(w.c, w.bytes); err != nil {
			continue // lbctl closed it already
		}
		loopback.WaitAcked(w.c) // an error leaves the case to say what went wrong
	}
}

// finish waits until lbctl has closed every connection to the backend and
// the backend has parsed all it received, then returns the requests in the
// order their heads arrived and the faults. Call it after lbctl has shut
// down.
func (cb *corpusBackend) finish(t testing.TB) ([]*seenRequest, []string) {
	t.Helper()
	cb.ln.Close()
	done := make(chan struct{})
	go func() { cb.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("a backend connection was still open 10s after lbctl shut down")
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]*seenRequest(nil), cb.seen...), append([]string(nil), cb.faults...)
}

// isReset reports whether err is a connection reset: the peer closed with
// bytes unread, after the bytes it did send.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

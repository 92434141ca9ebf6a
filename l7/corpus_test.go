package l7

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// The regression corpus: a few hundred request and response payloads,
// written for lbctl from RFC 9112 and RFC 9110 and from the kinds of input
// that make two HTTP parsers disagree (request smuggling, responses reaching
// the wrong client). Each case is replayed through a real lbctl on loopback
// in front of a corpusBackend, which parses every byte lbctl sends with a
// strict parser of its own (corpus_backend_test.go), so that a request lbctl
// frames one way and a backend another shows up as a request the case did
// not expect.
//
// For every case the test asserts:
//   - the statuses the client gets, in order (interim 1xx included), read
//     with the same strict parser, so that a malformed answer from lbctl
//     fails the case too;
//   - whether lbctl closes the client connection after them: a connection
//     that must stay open has to carry one more request (GET /marker) and
//     return its own answer; one that must close has to end with nothing
//     more;
//   - the requests the backend parsed, exactly: count, method, target,
//     body, and where the case says so Host, framing and fields. A request
//     whose body lbctl stopped forwarding (the client's fault, or an
//     abort) may reach the backend as a head and part of a body, or not at
//     all, never whole. Whatever the case, the backend must be able to
//     parse every byte as HTTP/1.1 requests, every chunk-size line lbctl
//     writes must be bare lower-case hex, and no Forwarded or
//     X-Forwarded-Host field may reach it;
//   - when the backend is not scripted (it always behaves), that nothing
//     counted against its health.
//
// Cases that script the backend's answer (the malicious-backend group) send
// their request to /r, which the backend answers with the script's bytes,
// optionally followed, once the client has its answer, by "later" bytes on
// the same connection. A second client then asks for /second on a new
// connection and must get its own answer, never bytes meant for someone
// else: a backend connection holding such bytes must not be reused.
//
// Each case runs against its own lbctl and backend: the test shuts lbctl
// down once the clients are done, which waits for every exchange of the case
// to end, and then for the backend to read each connection to its end, so
// that "nothing more reached the backend" is a fact, not a guess after a
// sleep. Cases run in parallel.
//
// The groups: te-cl (Transfer-Encoding and Content-Length mutations),
// connection (fields named in Connection), chunks (chunk sizes and
// terminators), chunk-ext, trailers, host-target (Host, request-target
// forms, CONNECT), version, leading-lines, pipelining (a bad request
// followed by a good one in the same write), forwarded, and responses (a
// malicious backend). Run one with go test ./l7 -run TestCorpus/<group>.
//
// To add a case, append a corpusCase to the group it belongs to in
// corpusGroups (or start a group): raw is what the client writes in one go;
// statuses and closed are what it must see; backend lists the requests the
// backend must parse (rq(...), with withBody, withHost, framed, withField,
// without, partial). The helpers accepted, rejected, clientFault and
// aborted build the common shapes; a response case sets script and sends
// its request to /r. Request payloads are also the seeds of
// FuzzProxyDifferential. Names must be unique within a group.
type corpusCase struct {
	name      string
	raw       string   // what the client writes, in one write
	halfClose bool     // the client shuts its write side after raw
	methods   []string // the method of each request answered, in order; GET when not listed

	statuses  []int             // every complete response, in order
	closed    bool              // lbctl closes the connection after them
	truncated bool              // after them, a response head arrives and the connection ends inside its body
	bodies    []string          // when set, the body of each response in statuses
	fields    map[string]string // when set, fields of the first final response ("" means absent)
	tunnel    string            // after a 101, the bytes that must follow

	backend []wantRequest // every request the backend must parse, in order

	script *backendScript // how the backend answers /r; nil for the default answer
}

// wantRequest is a request the backend must parse.
type wantRequest struct {
	method, target string
	body           string
	isPartial      bool              // only the head, and perhaps part of the body; may also not arrive at all
	host           string            // when set, the Host it must carry (case-insensitive)
	framing        string            // when set, how its body must be framed: none, length, chunked
	fields         map[string]string // exact values of fields it must carry; "" means absent
}

func rq(method, target string) wantRequest { return wantRequest{method: method, target: target} }

func (w wantRequest) withBody(b string) wantRequest   { w.body = b; return w }
func (w wantRequest) withHost(h string) wantRequest   { w.host = h; return w }
func (w wantRequest) framed(how string) wantRequest   { w.framing = how; return w }
func (w wantRequest) partial() wantRequest            { w.isPartial = true; return w }
func (w wantRequest) without(name string) wantRequest { return w.withField(name, "") }

func (w wantRequest) withField(name, value string) wantRequest {
	f := make(map[string]string, len(w.fields)+1)
	for k, v := range w.fields {
		f[k] = v
	}
	f[name] = value
	w.fields = f
	return w
}

func (w wantRequest) String() string {
	s := w.method + " " + w.target
	if w.isPartial {
		return s + " (partial)"
	}
	if w.body != "" {
		s += fmt.Sprintf(" (body %q)", clip([]byte(w.body), 40))
	}
	return s
}

// accepted is a request lbctl forwards and answers with 200, keeping the
// connection.
func accepted(name, raw string, backend ...wantRequest) corpusCase {
	return corpusCase{name: name, raw: raw, statuses: []int{200}, backend: backend}
}

// rejected is a request lbctl answers itself with status and then closes;
// nothing reaches the backend.
func rejected(name, raw string, status int) corpusCase {
	return corpusCase{name: name, raw: raw, statuses: []int{status}, closed: true}
}

// clientFault is a request whose body turns out malformed after lbctl has
// started forwarding it: 400, the connection closes, and the backend saw
// at most the head of req (partial).
func clientFault(name, raw string, req wantRequest) corpusCase {
	return corpusCase{name: name, raw: raw, statuses: []int{400}, closed: true, backend: []wantRequest{req.partial()}}
}

// aborted is a client that stops sending: no answer, the connection closes,
// and the backend saw at most the given partial requests.
func aborted(name, raw string, backend ...wantRequest) corpusCase {
	for i := range backend {
		backend[i] = backend[i].partial()
	}
	return corpusCase{name: name, raw: raw, halfClose: true, closed: true, backend: backend}
}

// label names a payload in a case name: quoted, and shortened when long.
func label(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", s[:16], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// corpusGroup is a family of cases with a name for the test output.
type corpusGroup struct {
	name  string
	cases []corpusCase
}

func corpusGroups() []corpusGroup {
	return []corpusGroup{
		{"te-cl", framingCases()},
		{"connection", connectionCases()},
		{"chunks", chunkCases()},
		{"chunk-ext", chunkExtCases()},
		{"trailers", trailerCases()},
		{"host-target", hostTargetCases()},
		{"version", versionCases()},
		{"leading-lines", leadingLineCases()},
		{"pipelining", pipeliningCases()},
		{"forwarded", forwardedCases()},
		{"responses", responseCases()},
	}
}

const (
	hostCorpus   = "Host: corpus\r\n"
	postHead     = "POST / HTTP/1.1\r\n" + hostCorpus
	chunkedHello = "5\r\nhello\r\n0\r\n\r\n"
	smuggled     = "GET /smuggled HTTP/1.1\r\n" + hostCorpus + "\r\n"
)

func framingCases() []corpusCase {
	var cs []corpusCase
	helloChunked := rq("POST", "/").withBody("hello").framed("chunked")
	helloLength := rq("POST", "/").withBody("hello").framed("length")

	// Transfer-Encoding spellings that mean chunked (RFC 9112 5, 7: names
	// and codings are case-insensitive, OWS around a value is not part of
	// it).
	for _, line := range []string{
		"Transfer-Encoding: chunked",
		"Transfer-Encoding: Chunked",
		"Transfer-Encoding: CHUNKED",
		"Transfer-Encoding: cHuNkEd",
		"transfer-encoding: chunked",
		"TRANSFER-ENCODING: chunked",
		"Transfer-Encoding:chunked",
		"Transfer-Encoding:  chunked",
		"Transfer-Encoding: chunked ",
		"Transfer-Encoding: chunked  ",
		"Transfer-Encoding:\tchunked",
		"Transfer-Encoding: chunked\t",
		"Transfer-Encoding:\t chunked \t",
	} {
		cs = append(cs, accepted(fmt.Sprintf("TE %q", line), postHead+line+"\r\n\r\n"+chunkedHello, helloChunked))
	}
	// Transfer-Encoding values lbctl refuses: anything but a single
	// chunked, control bytes, lists, unknown codings.
	for _, v := range []string{
		"\x0bchunked", "chunked\x0b", "\x0cchunked", "chunked\x0c", "\x00chunked", "chunked\x00",
		"chunked\x7f", "\x01chunked", "chunked\xff", "\"chunked\"",
		"chunked, chunked", "chunked,chunked", "chunked ,chunked", "Chunked, chunked",
		"gzip, chunked", "deflate, chunked", "identity, chunked", "chunked, gzip", "chunked, identity",
		"identity", "gzip", "x", "xchunked", "chunkedx", "chunk", "chunked;", "chunked; q=1",
		"chunked chunked", "chunked\tchunked", ",chunked", "chunked,", ", chunked", "",
	} {
		cs = append(cs, rejected(fmt.Sprintf("TE value %q", v), postHead+"Transfer-Encoding: "+v+"\r\n\r\n"+chunkedHello, 400))
	}
	// Transfer-Encoding field lines that are malformed or repeated.
	for _, lines := range []string{
		"Transfer-Encoding : chunked",
		"Transfer-Encoding\t: chunked",
		"Transfer-Encoding\t:\tchunked",
		"X-A: b\r\n Transfer-Encoding: chunked",
		"X-A: b\r\n\tTransfer-Encoding: chunked",
		"Transfer-Encoding:\r\n chunked",
		"Transfer-Encoding: gzip\r\n ,chunked",
		"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
		"Transfer-Encoding: chunked\r\ntransfer-encoding: chunked",
		"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
		"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
		"Transfer-Encoding: chunked\r\nTransfer-Encoding: ",
		"Content-Length: 5\r\nTransfer-Encoding: chunked",
		"Transfer-Encoding: chunked\r\nContent-Length: 5",
		"Transfer-Encoding: chunked\r\nContent-Length: 0",
		"Content-Length: 0\r\nTransfer-Encoding: chunked",
		"Content-Length: 5\r\nTransfer-Encoding: identity",
		"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
	} {
		cs = append(cs, rejected(fmt.Sprintf("TE lines %q", lines), postHead+lines+"\r\n\r\n"+chunkedHello, 400))
	}
	cs = append(cs,
		rejected("TE leading whitespace on the first field line", "POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n"+hostCorpus+"\r\n"+chunkedHello, 400),
		rejected("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 400),
		rejected("TE in HTTP/1.0 with Host", "POST / HTTP/1.0\r\n"+hostCorpus+"Transfer-Encoding: chunked\r\n\r\n"+chunkedHello, 400),
	)
	// Names that only look like Transfer-Encoding: the request has no
	// body, so the chunked bytes are the next request, which is malformed.
	for _, name := range []string{"Transfer_Encoding", "Transfer-Encodings", "XTransfer-Encoding", "Transfer-Encoding-X"} {
		cs = append(cs, corpusCase{
			name: "not TE: " + name, raw: postHead + name + ": chunked\r\n\r\n" + chunkedHello,
			statuses: []int{200, 400}, closed: true,
			backend: []wantRequest{rq("POST", "/").withBody("").framed("none")},
		})
	}

	// Content-Length spellings of 5 (RFC 9112 6.2: 1*DIGIT; identical
	// duplicate lines may be accepted, RFC 9112 6.3). lbctl forwards one
	// Content-Length in canonical form.
	for _, lines := range []string{
		"Content-Length: 5", "Content-Length:5", "Content-Length:  5", "Content-Length: 5 ",
		"Content-Length:\t5", "Content-Length: 5\t", "content-length: 5", "CONTENT-LENGTH: 5",
		"Content-Length: 05", "Content-Length: 005", "Content-Length: 0000000000000005",
		"Content-Length: 5\r\nContent-Length: 5", "Content-Length: 5\r\ncontent-length: 5",
	} {
		cs = append(cs, accepted(fmt.Sprintf("CL %q", lines), postHead+lines+"\r\n\r\nhello", helloLength))
	}
	// Content-Length values lbctl refuses.
	for _, v := range []string{
		"+5", "-5", "5a", "a5", "0x5", "5.0", "5e0", "5 5", "5\t5", "5,5", "5, 5", "5, 6", "5,", ",5",
		"", " ", "five", "\x0b5", "5\x0b", "5\x00", "\"5\"", "\xef\xbc\x95",
		"99999999999999999999", "18446744073709551616", "9223372036854775808", "999999999999999999999999",
	} {
		cs = append(cs, rejected(fmt.Sprintf("CL value %q", v), postHead+"Content-Length: "+v+"\r\n\r\nhello", 400))
	}
	for _, lines := range []string{
		"Content-Length: 5\r\nContent-Length: 6",
		"Content-Length: 6\r\nContent-Length: 5",
		"Content-Length: 5\r\nContent-Length: 05",
		"Content-Length: 5\r\nContent-Length: ",
		"Content-Length : 5",
		"Content-Length\t: 5",
		"Content-Length: 5\r\n 6",
		"X-A: b\r\n Content-Length: 5",
	} {
		cs = append(cs, rejected(fmt.Sprintf("CL lines %q", lines), postHead+lines+"\r\n\r\nhello", 400))
	}
	cs = append(cs,
		accepted("CL on GET", "GET / HTTP/1.1\r\n"+hostCorpus+"Content-Length: 5\r\n\r\nhello", rq("GET", "/").withBody("hello").framed("length")),
		accepted("CL 0", postHead+"Content-Length: 0\r\n\r\n", rq("POST", "/").withBody("").framed("length")),
		accepted("CL 00", postHead+"Content-Length: 00\r\n\r\n", rq("POST", "/").withBody("").framed("length")),
		accepted("no CL on POST", postHead+"\r\n", rq("POST", "/").withBody("").framed("none")),
		corpusCase{
			name: "CL shorter than the bytes: the rest is the next request",
			raw:  postHead + "Content-Length: 3\r\n\r\nhelGET /next HTTP/1.1\r\n" + hostCorpus + "\r\n", statuses: []int{200, 200},
			backend: []wantRequest{rq("POST", "/").withBody("hel"), rq("GET", "/next")},
		},
		aborted("CL longer than the bytes", postHead+"Content-Length: 10\r\n\r\nhello", rq("POST", "/")),
		aborted("CL huge and valid", postHead+"Content-Length: 100000000000\r\n\r\nhello", rq("POST", "/")),
		aborted("CL 18 nines", postHead+"Content-Length: 999999999999999999\r\n\r\nhello", rq("POST", "/")),
	)
	return cs
}

func connectionCases() []corpusCase {
	// Framing fields and Host named in Connection are ignored (RFC 9110
	// 7.6.1 does not let them be hop-by-hop): lbctl keeps the framing it
	// parsed and sends Host.
	withCL := func(conn, method string) string {
		return fmt.Sprintf("%s / HTTP/1.1\r\n%sConnection: %s\r\nContent-Length: %d\r\n\r\n%s", method, hostCorpus, conn, len(smuggled), smuggled)
	}
	chunkedSmuggled := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	var cs []corpusCase
	for _, conn := range []string{"Content-Length", "content-length", "CONTENT-LENGTH", "keep-alive, Content-Length", "Content-Length, keep-alive", "Host, Content-Length", "Content-Length, Transfer-Encoding, Host", "Content-Length,Content-Length"} {
		cs = append(cs,
			accepted(fmt.Sprintf("POST Connection: %s", conn), withCL(conn, "POST"), rq("POST", "/").withBody(smuggled).framed("length").withHost("corpus")),
			accepted(fmt.Sprintf("GET Connection: %s", conn), withCL(conn, "GET"), rq("GET", "/").withBody(smuggled).framed("length").withHost("corpus")),
		)
	}
	for _, conn := range []string{"close, Content-Length", "Content-Length, close", "close,Content-Length", "CLOSE, content-length"} {
		c := accepted(fmt.Sprintf("POST Connection: %s", conn), withCL(conn, "POST"), rq("POST", "/").withBody(smuggled).framed("length"))
		c.closed = true
		cs = append(cs, c)
	}
	for _, conn := range []string{"Transfer-Encoding", "transfer-encoding", "Transfer-Encoding, Content-Length", "close, Transfer-Encoding"} {
		c := accepted(fmt.Sprintf("chunked Connection: %s", conn), postHead+"Connection: "+conn+"\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedSmuggled,
			rq("POST", "/").withBody(smuggled).framed("chunked"))
		c.closed = strings.HasPrefix(conn, "close")
		cs = append(cs, c)
	}
	for _, conn := range []string{"Host", "host", "HOST", "keep-alive, Host", "Host, keep-alive", "Host,Host"} {
		cs = append(cs, accepted(fmt.Sprintf("Connection: %s", conn), "GET / HTTP/1.1\r\n"+hostCorpus+"Connection: "+conn+"\r\n\r\n", rq("GET", "/").withHost("corpus")))
	}
	cs = append(cs,
		accepted("Connection: Host before Host", "GET / HTTP/1.1\r\nConnection: Host\r\n"+hostCorpus+"\r\n", rq("GET", "/").withHost("corpus")),
		accepted("two Connection fields", postHead+"Connection: keep-alive\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", rq("POST", "/").withBody("hello").framed("length")),
		corpusCase{name: "Connection: close, Host", raw: "GET / HTTP/1.1\r\n" + hostCorpus + "Connection: close, Host\r\n\r\n", statuses: []int{200}, closed: true, backend: []wantRequest{rq("GET", "/").withHost("corpus")}},
		accepted("HTTP/1.0 keep-alive, Content-Length", fmt.Sprintf("POST / HTTP/1.0\r\nConnection: keep-alive, Content-Length\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled), rq("POST", "/").withBody(smuggled).framed("length")),
		accepted("Connection names an ordinary field", "GET / HTTP/1.1\r\n"+hostCorpus+"Connection: X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n", rq("GET", "/").without("X-Secret").withField("X-Kept", "2")),
		accepted("Connection names Keep-Alive", "GET / HTTP/1.1\r\n"+hostCorpus+"Connection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n", rq("GET", "/").without("Keep-Alive")),
		accepted("Connection: Content-Length on CL 0", postHead+"Connection: Content-Length\r\nContent-Length: 0\r\n\r\n", rq("POST", "/").withBody("").framed("length")),
	)
	return cs
}

func chunkCases() []corpusCase {
	body := func(s string) wantRequest { return rq("POST", "/").withBody(s).framed("chunked") }
	te := postHead + "Transfer-Encoding: chunked\r\n\r\n"
	var cs []corpusCase
	for _, c := range []struct{ name, chunks, body string }{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"leading zeros", "005\r\nhello\r\n0\r\n\r\n", "hello"},
		{"last chunk of zeros", "5\r\nhello\r\n000\r\n\r\n", "hello"},
		{"only a last chunk of zeros", "000\r\n\r\n", ""},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"lower-case hex", "a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"several chunks", "1\r\nh\r\n1\r\ne\r\n3\r\nllo\r\n0\r\n\r\n", "hello"},
		{"empty body", "0\r\n\r\n", ""},
		{"chunk of 1 KiB", "400\r\n" + strings.Repeat("x", 1024) + "\r\n0\r\n\r\n", strings.Repeat("x", 1024)},
		{"data with CRLF inside", "7\r\nab\r\ncde\r\n0\r\n\r\n", "ab\r\ncde"},
		{"data that looks like a request", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled), smuggled},
		// RFC 9112 7.1.1 allows BWS only before ";"; HAProxy and nginx
		// take trailing whitespace after the size, and lbctl writes its
		// own size line, so it is accepted too.
		{"space after the size", "5 \r\nhello\r\n0\r\n\r\n", "hello"},
		{"tab after the size", "5\t\r\nhello\r\n0\r\n\r\n", "hello"},
	} {
		cs = append(cs, accepted("chunks: "+c.name, te+c.chunks, body(c.body)))
	}
	// A malformed first chunk line is refused before anything is sent.
	for _, first := range []string{
		"0x0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n",
		" 5\r\nhello\r\n0\r\n\r\n", "\t5\r\nhello\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "5\rhello\r\n0\r\n\r\n",
		"g\r\nhello\r\n0\r\n\r\n", "\r\nhello\r\n0\r\n\r\n", "5 5\r\nhello\r\n0\r\n\r\n", "5,5\r\nhello\r\n0\r\n\r\n",
		"5\x00\r\nhello\r\n0\r\n\r\n", "5\x0b\r\nhello\r\n0\r\n\r\n", "ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
		"fffffffffffffffff\r\nhello\r\n0\r\n\r\n", "10000000000000000\r\nhello\r\n0\r\n\r\n", "0x\r\n\r\n", "\n",
		"5\r\r\nhello\r\n0\r\n\r\n", "５\r\nhello\r\n0\r\n\r\n",
	} {
		cs = append(cs, rejected(fmt.Sprintf("first chunk line %q", first), te+first, 400))
	}
	// A malformed chunk line or terminator after the first is the
	// client's fault once forwarding has begun.
	for _, c := range []struct{ name, chunks string }{
		{"0x0 after data", "5\r\nhello\r\n0x0\r\n\r\n"},
		{"zz after data", "5\r\nhello\r\nzz\r\n"},
		{"lone LF after data", "5\r\nhello\n0\r\n\r\n"},
		{"lone CR after data", "5\r\nhello\r0\r\n\r\n"},
		{"no CRLF after data", "5\r\nhelloXX0\r\n\r\n"},
		{"data longer than its size", "3\r\nhello\r\n0\r\n\r\n"},
		{"negative size after data", "5\r\nhello\r\n-1\r\n\r\n"},
		{"empty size line after data", "5\r\nhello\r\n\r\n"},
		{"overlong size after data", "5\r\nhello\r\nfffffffffffffffff\r\n"},
		{"LF ends the last chunk", "5\r\nhello\r\n0\n\r\n"},
		{"LF ends the body", "5\r\nhello\r\n0\r\n\n"},
		{"CR alone in the trailer section", "5\r\nhello\r\n0\r\n\rX\r\n\r\n"},
		{"request line where the body's end belongs", "5\r\nhello\r\n0\r\n" + smuggled},
		{"space before the size after data", "5\r\nhello\r\n 0\r\n\r\n"},
	} {
		cs = append(cs, clientFault("chunks: "+c.name, te+c.chunks, rq("POST", "/")))
	}
	// A client that stops in the middle of the body gets nothing; the
	// backend saw at most part of the request.
	for _, c := range []struct{ name, chunks string }{
		{"no final CRLF", "5\r\nhello\r\n0\r\n"},
		{"cut in the data", "5\r\nhel"},
		{"cut after the data", "5\r\nhello"},
		{"cut after a chunk", "5\r\nhello\r\n"},
		{"size larger than the data", "a\r\nhello"},
	} {
		cs = append(cs, aborted("chunks: "+c.name, te+c.chunks, rq("POST", "/")))
	}
	cs = append(cs, aborted("chunks: cut in the first size line", te+"5"))
	return cs
}

func chunkExtCases() []corpusCase {
	te := postHead + "Transfer-Encoding: chunked\r\n\r\n"
	hello := rq("POST", "/").withBody("hello").framed("chunked")
	var cs []corpusCase
	// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
	// (RFC 9112 7.1.1); lbctl validates and strips them.
	for _, ext := range []string{
		";a", ";a=b", ";a=\"b\"", ";a=\"\"", ";a=\"b c\"", ";a=\"b\\\"c\"", ";a=\"b;c\"", ";a=\"b\\\\\"",
		" ;a=b", "; a=b", " ; a = b", "\t;\ta\t=\tb", ";a=b;c=d", ";a;b;c", ";a=b ;c", ";a = \"b\" ; c",
		";name=value-with.token_chars~!", ";a=\"\x80\xff\"", ";a=\"tab\there\"", ";" + strings.Repeat("n", 100) + "=" + strings.Repeat("v", 100),
	} {
		cs = append(cs,
			accepted("ext "+label(ext)+" on the first chunk", te+"5"+ext+"\r\nhello\r\n0\r\n\r\n", hello),
			accepted("ext "+label(ext)+" on the last chunk", te+"5\r\nhello\r\n0"+ext+"\r\n\r\n", hello),
		)
	}
	for _, ext := range []string{
		";", "; ", ";=b", "; =b", ";a=", ";a= ", ";a==b", ";a=b c", ";a=\"unterminated", ";a=\"b\"c", ";a b",
		";a=b,c", ";a=\x01", ";a=\"\x01\"", ";a=\"b\\\x01\"", ";;a", ";a=b;", ";\x80=b", ";a=\x80", ";a@b", ";a=[b]",
		";a=\"b\"\"c\"", ";a=\x7f", "x", " x", ";a=\"\\", ";a=" + strings.Repeat("b", 5000),
	} {
		cs = append(cs, rejected("ext "+label(ext)+" on the first chunk", te+"5"+ext+"\r\nhello\r\n0\r\n\r\n", 400))
	}
	for _, ext := range []string{";", ";=b", ";a=\"unterminated", ";a=b c", ";a=\x01"} {
		cs = append(cs, clientFault("ext "+label(ext)+" on a later chunk", te+"5\r\nhello\r\n3"+ext+"\r\nabc\r\n0\r\n\r\n", rq("POST", "/")))
		cs = append(cs, clientFault("ext "+label(ext)+" on the last chunk", te+"5\r\nhello\r\n0"+ext+"\r\n\r\n", rq("POST", "/")))
	}
	return cs
}

func trailerCases() []corpusCase {
	body := postHead + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
	hello := rq("POST", "/").withBody("hello").framed("chunked")
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-T%d: v\r\n", i)
		}
		return b.String()
	}
	var cs []corpusCase
	for _, c := range []struct{ name, trailers string }{
		{"one", "X-T: v\r\n"},
		{"no space", "X-T:v\r\n"},
		{"empty value", "X-T:\r\n"},
		{"two", "X-T: v\r\nX-U: w\r\n"},
		{"obs-text", "X-T: \x80\xff\r\n"},
		{"100 of them", many(100)},
		// Framing fields in trailers mean nothing (RFC 9110 6.5.1); they
		// must not reframe anything.
		{"Content-Length", "Content-Length: 5\r\n"},
		{"Transfer-Encoding", "Transfer-Encoding: chunked\r\n"},
		{"Host", "Host: other\r\n"},
	} {
		cs = append(cs, accepted("trailers: "+c.name, body+c.trailers+"\r\n", hello))
	}
	for _, c := range []struct{ name, trailers string }{
		{"space before colon", "X-T : v\r\n"},
		{"tab before colon", "X-T\t: v\r\n"},
		{"no colon", "X-T v\r\n"},
		{"empty name", ": v\r\n"},
		{"space in name", "X T: v\r\n"},
		{"non-token name", "X-\xc3\x84: v\r\n"},
		{"obs-fold first", " X-T: v\r\n"},
		{"obs-fold continuation", "X-T: v\r\n w\r\n"},
		{"control byte", "X-T: a\x01b\r\n"},
		{"NUL", "X-T: a\x00b\r\n"},
		{"bare LF", "X-T: v\n\r\n"},
		{"bare CR", "X-T: v\rw\r\n"},
		{"101 of them", many(101)},
		{"overlong line", "X-T: " + strings.Repeat("v", 5000) + "\r\n"},
	} {
		cs = append(cs, clientFault("trailers: "+c.name, body+c.trailers+"\r\n", rq("POST", "/")))
	}
	return cs
}

func hostTargetCases() []corpusCase {
	var cs []corpusCase
	// Absolute-form: the target's authority replaces Host and the backend
	// gets origin-form (RFC 9112 3.2.2).
	for _, c := range []struct{ line, host, method, target string }{
		{"GET http://b/x HTTP/1.1", "b", "GET", "/x"},
		{"GET http://b HTTP/1.1", "b", "GET", "/"},
		{"GET http://b/ HTTP/1.1", "b", "GET", "/"},
		{"GET HTTP://B/x HTTP/1.1", "B", "GET", "/x"},
		{"GET Http://b/x HTTP/1.1", "b", "GET", "/x"},
		{"GET https://b/x HTTP/1.1", "b", "GET", "/x"},
		{"GET http://b:8080/x?q=1 HTTP/1.1", "b:8080", "GET", "/x?q=1"},
		{"GET http://b?q=1 HTTP/1.1", "b", "GET", "/?q=1"},
		{"GET http://b/a/../x HTTP/1.1", "b", "GET", "/a/../x"},
		{"GET http://[::1]:8080/x HTTP/1.1", "[::1]:8080", "GET", "/x"},
		{"GET http://127.0.0.1/x HTTP/1.1", "127.0.0.1", "GET", "/x"},
		{"OPTIONS http://b HTTP/1.1", "b", "OPTIONS", "*"},
		{"OPTIONS http://b/ HTTP/1.1", "b", "OPTIONS", "/"},
		{"DELETE http://b//x HTTP/1.1", "b", "DELETE", "//x"},
	} {
		cs = append(cs, accepted("absolute-form "+c.line, c.line+"\r\nHost: a\r\n\r\n", rq(c.method, c.target).withHost(c.host)))
	}
	cs = append(cs,
		accepted("absolute-form with a matching Host", "GET http://b/x HTTP/1.1\r\nHost: b\r\n\r\n", rq("GET", "/x").withHost("b")),
		accepted("absolute-form POST", "POST http://b/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", rq("POST", "/x").withHost("b").withBody("hello")),
		corpusCase{name: "absolute-form HTTP/1.0 without Host", raw: "GET http://b/x HTTP/1.0\r\n\r\n", statuses: []int{200}, closed: true, backend: []wantRequest{rq("GET", "/x").withHost("b")}},
	)
	// Origin-form and asterisk-form pass as they are.
	for _, c := range []struct{ line, method, target string }{
		{"GET /x HTTP/1.1", "GET", "/x"},
		{"GET //x HTTP/1.1", "GET", "//x"},
		{"GET /a/../b HTTP/1.1", "GET", "/a/../b"},
		{"GET /?a=b&c HTTP/1.1", "GET", "/?a=b&c"},
		{"GET /%2e%2e/x HTTP/1.1", "GET", "/%2e%2e/x"},
		{"GET /x?y=http://b/ HTTP/1.1", "GET", "/x?y=http://b/"},
		{"OPTIONS * HTTP/1.1", "OPTIONS", "*"},
	} {
		cs = append(cs, accepted("target "+c.line, c.line+"\r\n"+hostCorpus+"\r\n", rq(c.method, c.target).withHost("corpus")))
	}
	// Targets that are none of the forms (RFC 9112 3.2), or carry userinfo
	// or a fragment.
	for _, line := range []string{
		"GET ! HTTP/1.1", "GET admin HTTP/1.1", "GET ../x HTTP/1.1", "GET ../../../../etc/passwd HTTP/1.1",
		"GET ./x HTTP/1.1", "GET x/y HTTP/1.1", "GET * HTTP/1.1", "POST * HTTP/1.1", "GET ?x HTTP/1.1",
		"GET %2Fx HTTP/1.1", "GET \\x HTTP/1.1", "GET b:80 HTTP/1.1", "GET #x HTTP/1.1", "GET /x#f HTTP/1.1",
		"GET /# HTTP/1.1", "GET http://b/x#f HTTP/1.1", "GET http://hostname#frag HTTP/1.1",
		"GET http://user@b/x HTTP/1.1", "GET http://user:pass@b/x HTTP/1.1", "GET http://@b/x HTTP/1.1",
		"GET ftp://b/x HTTP/1.1", "GET ws://b/x HTTP/1.1", "GET http:/b/x HTTP/1.1", "GET http:b HTTP/1.1",
		"GET http:///x HTTP/1.1", "GET http://:80/x HTTP/1.1", "GET http://b:x/ HTTP/1.1", "GET http://b:80:80/ HTTP/1.1",
		"GET http://[::1/x HTTP/1.1", "GET http://b%zz/ HTTP/1.1", "GET http://b\\c/ HTTP/1.1", "GET http://b,c d/ HTTP/1.1",
	} {
		cs = append(cs, rejected("target "+line, line+"\r\n"+hostCorpus+"\r\n", 400))
	}
	cs = append(cs,
		rejected("absolute-form without Host", "GET http://b/x HTTP/1.1\r\n\r\n", 400),
		rejected("absolute-form with an invalid Host", "GET http://b/x HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
	)
	// lbctl does not proxy CONNECT, whatever its target (RFC 9110 9.3.6).
	for _, target := range []string{"hostname:443", "hostname", "/", "http://b/", "[::1]:443", "127.0.0.1:22"} {
		cs = append(cs, rejected("CONNECT "+target, "CONNECT "+target+" HTTP/1.1\r\n"+hostCorpus+"\r\n", 501))
	}
	cs = append(cs,
		rejected("CONNECT with a body", "CONNECT b:443 HTTP/1.1\r\n"+hostCorpus+"Content-Length: 5\r\n\r\nhello", 501),
		rejected("CONNECT then a request", "CONNECT b:443 HTTP/1.1\r\n"+hostCorpus+"\r\n"+smuggled, 501),
	)
	// Host = uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2).
	for _, h := range []string{
		"a:80", "a:", "a:65535", "a:99999", "[::1]", "[::1]:80", "127.0.0.1", "127.0.0.1:80",
		"a-b.c_d~e", "a%20b", "a,b", "A.EXAMPLE", "xn--bcher-kva.example", "a!$&'()*+;=",
	} {
		cs = append(cs, accepted("Host "+h, "GET / HTTP/1.1\r\nHost: "+h+"\r\n\r\n", rq("GET", "/").withHost(h)))
	}
	for _, h := range []string{
		"a b", "a/../admin", "a, b", "a/b", "a@b", "user@a", "a?b", "a#b", "a\\b", "a:b", "a:123456", "a:80:80",
		"a:-1", "[::1", "[::1]x", "[x]", "a%zz", "a%", "", "a\tb", "a\"b", "a<b", "a|b", "a{b}", "a^b", "a`b",
	} {
		cs = append(cs, rejected(fmt.Sprintf("Host %q", h), "GET / HTTP/1.1\r\nHost: "+h+"\r\n\r\n", 400))
	}
	cs = append(cs,
		rejected("no Host", "GET / HTTP/1.1\r\n\r\n", 400),
		rejected("Host without a value", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
		rejected("two Hosts that agree", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
		rejected("two Hosts that differ", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
		rejected("two Hosts in two cases", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
		rejected("Host list", "GET / HTTP/1.1\r\nHost: a,\r\nHost: b\r\n\r\n", 400),
		corpusCase{name: "HTTP/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n", statuses: []int{200}, closed: true, backend: []wantRequest{rq("GET", "/")}},
		corpusCase{name: "HTTP/1.0 with Host", raw: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", statuses: []int{200}, closed: true, backend: []wantRequest{rq("GET", "/").withHost("a")}},
	)
	return cs
}

func versionCases() []corpusCase {
	var cs []corpusCase
	// HTTP/1.x with x >= 2 is HTTP/1.1 (RFC 9110 2.5).
	for _, v := range []string{"HTTP/1.2", "HTTP/1.9"} {
		cs = append(cs,
			accepted("version "+v, "GET / "+v+"\r\n"+hostCorpus+"\r\n", rq("GET", "/")),
			accepted("version "+v+" chunked", "POST / "+v+"\r\n"+hostCorpus+"Transfer-Encoding: chunked\r\n\r\n"+chunkedHello, rq("POST", "/").withBody("hello").framed("chunked")),
		)
	}
	cs = append(cs,
		corpusCase{name: "version HTTP/1.0", raw: "GET / HTTP/1.0\r\n" + hostCorpus + "\r\n", statuses: []int{200}, closed: true, backend: []wantRequest{rq("GET", "/")}},
		accepted("version HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\n"+hostCorpus+"Connection: keep-alive\r\n\r\n", rq("GET", "/")),
	)
	for _, v := range []string{"HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9", "HTTP/2.1", "HTTP/0.0"} {
		cs = append(cs, rejected("version "+v, "GET / "+v+"\r\n"+hostCorpus+"\r\n", 505))
	}
	for _, v := range []string{
		"http/1.1", "Http/1.1", "HTTP/1.10", "HTTP/1.01", "HTTP/01.1", "HTTP/1", "HTTP/1.", "HTTP/11", "HTTP/1,1",
		"HTTP/a.b", "HTTPS/1.1", "HTTP/1.1 ", "HTTP/1.1\t", "HTTP/1.1x", "HTTP /1.1", "HTTP/ 1.1", "HTTP/-1.1", "HTTP/１.1",
	} {
		cs = append(cs, rejected(fmt.Sprintf("version %q", v), "GET / "+v+"\r\n"+hostCorpus+"\r\n", 400))
	}
	for _, line := range []string{
		"GET /", "GET  / HTTP/1.1", "GET /  HTTP/1.1", "GET\t/ HTTP/1.1", "GET /\tHTTP/1.1", " GET / HTTP/1.1",
		"GET / HTTP/1.1 extra", "G@T / HTTP/1.1", "GET", "/ HTTP/1.1", "GET / / HTTP/1.1", "GET /\x00 HTTP/1.1",
		"GET /\x7f HTTP/1.1", "GET /\xff HTTP/1.1",
	} {
		cs = append(cs, rejected(fmt.Sprintf("request line %q", line), line+"\r\n"+hostCorpus+"\r\n", 400))
	}
	cs = append(cs,
		accepted("lower-case method", "get / HTTP/1.1\r\n"+hostCorpus+"\r\n", rq("get", "/")),
		accepted("extension method", "PURGE / HTTP/1.1\r\n"+hostCorpus+"\r\n", rq("PURGE", "/")),
	)
	return cs
}

func leadingLineCases() []corpusCase {
	plain := "GET / HTTP/1.1\r\n" + hostCorpus + "\r\n"
	// RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
	// before a request line.
	cs := []corpusCase{
		accepted("one CRLF", "\r\n"+plain, rq("GET", "/")),
		accepted("two CRLF", "\r\n\r\n"+plain, rq("GET", "/")),
		accepted("five CRLF", strings.Repeat("\r\n", 5)+plain, rq("GET", "/")),
		{
			name: "CRLF between pipelined requests", raw: "GET /a HTTP/1.1\r\n" + hostCorpus + "\r\n\r\nGET /b HTTP/1.1\r\n" + hostCorpus + "\r\n",
			statuses: []int{200, 200}, backend: []wantRequest{rq("GET", "/a"), rq("GET", "/b")},
		},
		{
			name: "CRLF after a POST body", raw: postHead + "Content-Length: 5\r\n\r\nhello\r\nGET /b HTTP/1.1\r\n" + hostCorpus + "\r\n",
			statuses: []int{200, 200}, backend: []wantRequest{rq("POST", "/").withBody("hello"), rq("GET", "/b")},
		},
		rejected("bare LF", "\n"+plain, 400),
		rejected("CRLF then bare LF", "\r\n\n"+plain, 400),
		rejected("bare CR", "\r"+plain, 400),
		rejected("space line", " \r\n"+plain, 400),
		rejected("tab line", "\t\r\n"+plain, 400),
		rejected("leading space", " "+plain, 400),
		{
			name: "bare LF between pipelined requests", raw: "GET /a HTTP/1.1\r\n" + hostCorpus + "\r\n\nGET /b HTTP/1.1\r\n" + hostCorpus + "\r\n",
			statuses: []int{200, 400}, closed: true, backend: []wantRequest{rq("GET", "/a")},
		},
	}
	return cs
}

func pipeliningCases() []corpusCase {
	good := func(p string) string { return "GET " + p + " HTTP/1.1\r\n" + hostCorpus + "\r\n" }
	var cs []corpusCase
	// A bad request followed by a good one in the same write: the second
	// must never reach the backend.
	for _, c := range []struct {
		name, head string
		status     int
	}{
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"signed CL", postHead + "Content-Length: +5\r\n\r\n", 400},
		{"CL and TE", postHead + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"CL and TE, smuggling a GET", postHead + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE twice", postHead + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE with a VT", postHead + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\n" + hostCorpus + "X-A: a\r\n b\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\n" + hostCorpus + "\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\n" + hostCorpus + "\r\n", 400},
		{"target !", "GET ! HTTP/1.1\r\n" + hostCorpus + "\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + hostCorpus + "X-A: \x00\r\n\r\n", 400},
		{"userinfo", "GET http://u@b/ HTTP/1.1\r\n" + hostCorpus + "\r\n", 400},
		{"bad first chunk line", postHead + "Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n" + hostCorpus + "\r\n", 505},
		{"CONNECT", "CONNECT b:443 HTTP/1.1\r\n" + hostCorpus + "\r\n", 501},
		{"head too large", "GET / HTTP/1.1\r\n" + hostCorpus + "X-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431},
	} {
		cs = append(cs, rejected("bad then good: "+c.name, c.head+smuggled, c.status))
	}
	cs = append(cs,
		corpusCase{name: "good, good, good", raw: good("/a") + good("/b") + good("/c"), statuses: []int{200, 200, 200},
			backend: []wantRequest{rq("GET", "/a"), rq("GET", "/b"), rq("GET", "/c")}},
		corpusCase{name: "good, bad, good", raw: good("/a") + "GET /b HTTP/1.1\r\nHost: a b\r\n\r\n" + good("/c"), statuses: []int{200, 400}, closed: true,
			backend: []wantRequest{rq("GET", "/a")}},
		corpusCase{name: "good, bad chunk later, good", raw: good("/a") + postHead + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n" + good("/c"),
			statuses: []int{200, 400}, closed: true, backend: []wantRequest{rq("GET", "/a"), rq("POST", "/").partial()}},
		corpusCase{name: "HTTP/1.0 then good", raw: "GET /a HTTP/1.0\r\n\r\n" + good("/b"), statuses: []int{200}, closed: true,
			backend: []wantRequest{rq("GET", "/a")}},
		corpusCase{name: "Connection: close then good", raw: "GET /a HTTP/1.1\r\n" + hostCorpus + "Connection: close\r\n\r\n" + good("/b"), statuses: []int{200}, closed: true,
			backend: []wantRequest{rq("GET", "/a")}},
		corpusCase{name: "HEAD then GET", raw: "HEAD /a HTTP/1.1\r\n" + hostCorpus + "\r\n" + good("/b"), methods: []string{"HEAD", "GET"}, statuses: []int{200, 200},
			backend: []wantRequest{rq("HEAD", "/a"), rq("GET", "/b")}},
		corpusCase{name: "POST with CL then GET", raw: postHead + "Content-Length: 5\r\n\r\nhello" + good("/b"), statuses: []int{200, 200},
			backend: []wantRequest{rq("POST", "/").withBody("hello"), rq("GET", "/b")}},
		corpusCase{name: "chunked POST then GET", raw: postHead + "Transfer-Encoding: chunked\r\n\r\n" + chunkedHello + good("/b"), statuses: []int{200, 200},
			backend: []wantRequest{rq("POST", "/").withBody("hello"), rq("GET", "/b")}},
		corpusCase{name: "empty chunked body then a GET", raw: postHead + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, statuses: []int{200, 200},
			backend: []wantRequest{rq("POST", "/").withBody(""), rq("GET", "/smuggled")}},
	)
	return cs
}

func forwardedCases() []corpusCase {
	withFields := func(fields string) string { return "GET / HTTP/1.1\r\n" + hostCorpus + fields + "\r\n" }
	// Client-sent forwarding fields are never trusted: lbctl strips
	// Forwarded and X-Forwarded-Host and sets the others itself.
	return []corpusCase{
		accepted("Forwarded", withFields("Forwarded: for=1.2.3.4;host=evil;proto=https\r\n"), rq("GET", "/").without("Forwarded")),
		accepted("FORWARDED", withFields("FORWARDED: for=1.2.3.4\r\n"), rq("GET", "/").without("Forwarded")),
		accepted("two Forwarded", withFields("Forwarded: for=1.2.3.4\r\nForwarded: host=evil\r\n"), rq("GET", "/").without("Forwarded")),
		accepted("X-Forwarded-Host", withFields("X-Forwarded-Host: evil\r\n"), rq("GET", "/").without("X-Forwarded-Host")),
		accepted("x-forwarded-host", withFields("x-forwarded-host: evil\r\n"), rq("GET", "/").without("X-Forwarded-Host")),
		accepted("X-Forwarded-For", withFields("X-Forwarded-For: 1.2.3.4\r\n"), rq("GET", "/").withField("X-Forwarded-For", "127.0.0.1")),
		accepted("two X-Forwarded-For", withFields("X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n"), rq("GET", "/").withField("X-Forwarded-For", "127.0.0.1")),
		accepted("X-Real-IP", withFields("X-Real-IP: 6.6.6.6\r\n"), rq("GET", "/").withField("X-Real-IP", "127.0.0.1")),
		accepted("X-Forwarded-Proto", withFields("X-Forwarded-Proto: https\r\n"), rq("GET", "/").withField("X-Forwarded-Proto", "http")),
		accepted("all of them", withFields("Forwarded: for=x\r\nX-Forwarded-Host: evil\r\nX-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"),
			rq("GET", "/").without("Forwarded").without("X-Forwarded-Host").withField("X-Forwarded-For", "127.0.0.1").withField("X-Real-IP", "127.0.0.1").withField("X-Forwarded-Proto", "http")),
		accepted("Connection names X-Forwarded-Host", withFields("Connection: X-Forwarded-Host\r\nX-Forwarded-Host: evil\r\n"), rq("GET", "/").without("X-Forwarded-Host")),
	}
}

// responseCases script the backend's answer to GET /r.
func responseCases() []corpusCase {
	const (
		getR     = "GET /r HTTP/1.1\r\n" + hostCorpus + "\r\n"
		headR    = "HEAD /r HTTP/1.1\r\n" + hostCorpus + "\r\n"
		poisoned = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"
		ok2      = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	)
	r := rq("GET", "/r")
	answer := func(name, reply string, status int) corpusCase {
		return corpusCase{name: name, raw: getR, statuses: []int{status}, backend: []wantRequest{r}, script: &backendScript{reply: reply}}
	}
	withLater := func(c corpusCase, later string) corpusCase {
		s := *c.script
		s.later = later
		c.script = &s
		return c
	}
	closing := func(c corpusCase) corpusCase {
		s := *c.script
		s.close = true
		c.script = &s
		return c
	}
	body := func(c corpusCase, bodies ...string) corpusCase { c.bodies = bodies; return c }
	field := func(c corpusCase, name, value string) corpusCase {
		f := map[string]string{}
		for k, v := range c.fields {
			f[k] = v
		}
		f[name] = value
		c.fields = f
		return c
	}
	head := func(c corpusCase) corpusCase {
		c.raw, c.methods, c.backend = headR, []string{"HEAD"}, []wantRequest{rq("HEAD", "/r")}
		return c
	}
	http10 := func(c corpusCase) corpusCase {
		c.raw, c.closed = "GET /r HTTP/1.0\r\n\r\n", true
		return c
	}
	upgrade := func(c corpusCase, protocols string) corpusCase {
		c.raw = "GET /r HTTP/1.1\r\n" + hostCorpus + "Connection: Upgrade\r\nUpgrade: " + protocols + "\r\n\r\n"
		c.backend = []wantRequest{r.withField("Upgrade", protocols)}
		return c
	}
	closed := func(c corpusCase) corpusCase { c.closed = true; return c }
	truncated := func(c corpusCase) corpusCase { c.statuses, c.truncated, c.closed = nil, true, true; return c }
	tunnel := func(c corpusCase, bytes string) corpusCase { c.tunnel, c.closed = bytes, true; return closing(c) }
	chunkedHelloResp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedHello

	return []corpusCase{
		// Bodiless responses that carry framing, with the bytes it
		// announces now or later: the connection must not serve anyone
		// else (RFC 9112 6.3, 9.3).
		withLater(answer("204 with CL, a response later", "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n", 204), poisoned),
		answer("204 with CL and its bytes", "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\npoisoned", 204),
		answer("204 with CL and a response", "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n"+poisoned, 204),
		answer("204 with TE and a chunked body", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 204),
		withLater(answer("204 with TE, a response later", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 204), poisoned),
		answer("204 with CL 0", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 204),
		answer("204 plain", "HTTP/1.1 204 No Content\r\n\r\n", 204),
		withLater(answer("304 with CL, a response later", "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\n", 304), poisoned),
		answer("304 with CL and its bytes", "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\npoisoned", 304),
		withLater(answer("304 with TE, a response later", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 304), poisoned),
		head(answer("HEAD answered with a body", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned", 200)),
		head(answer("HEAD answered with a body and a response", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"+poisoned, 200)),
		head(withLater(answer("HEAD answered, a response later", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", 200), poisoned)),
		head(answer("HEAD answered with a chunked body", chunkedHelloResp, 200)),
		head(answer("HEAD answered with CL", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", 200)),
		head(answer("HEAD answered with TE", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200)),
		// An answer to HEAD has no content (RFC 9110 9.3.2), lbctl's own
		// error answers included: their body would be read as the next
		// response on the connection.
		head(answer("HEAD answered with a malformed head", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 502)),
		body(answer("bytes after a CL body", ok2+"EXTRA", 200), "ok"),
		body(answer("a response after a CL body", ok2+poisoned, 200), "ok"),
		body(withLater(answer("a response later after a CL body", ok2, 200), poisoned), "ok"),
		body(answer("bytes after a chunked body", chunkedHelloResp+"EXTRA", 200), "hello"),
		body(answer("a response after a chunked body", chunkedHelloResp+poisoned, 200), "hello"),
		body(withLater(answer("a response later after a chunked body", chunkedHelloResp, 200), poisoned), "hello"),

		// Transfer-Encoding a backend may not send, and what lbctl keeps
		// of the ones it may.
		answer("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"+chunkedHello, 502),
		answer("TE chunked twice in two fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 502),
		answer("TE gzip and chunked in two fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 502),
		answer("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 502),
		answer("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 502),
		answer("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"+chunkedHello, 502),
		field(body(answer("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"+chunkedHello, 200), "hello"), "Transfer-Encoding", "gzip, chunked"),
		field(body(answer("TE gzip, chunked with extensions", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;x=y\r\nhello\r\n0;z\r\n\r\n", 200), "hello"), "Transfer-Encoding", "gzip, chunked"),
		// chunked not final, or absent: the body runs until the backend
		// closes, and so does the client connection.
		closed(field(body(closing(answer("TE chunked, gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw bytes", 200)), "raw bytes"), "Transfer-Encoding", "chunked, gzip")),
		closed(field(body(closing(answer("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes", 200)), "raw bytes"), "Transfer-Encoding", "gzip")),
		closed(field(body(closing(answer("TE identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nraw bytes", 200)), "raw bytes"), "Transfer-Encoding", "identity")),
		body(answer("TE Chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"+chunkedHello, 200), "hello"),
		body(answer("chunk extensions", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0;c=\"d\"\r\n\r\n", 200), "hello"),
		body(answer("trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: v\r\n\r\n", 200), "hello"),

		// Bodies delimited by the backend closing: re-framed as chunked for
		// an HTTP/1.1 client, relayed until close to an HTTP/1.0 one.
		field(body(closing(answer("until close", "HTTP/1.1 200 OK\r\n\r\nuntil close", 200)), "until close"), "Transfer-Encoding", "chunked"),
		field(body(closing(answer("until close from HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\nold server", 200)), "old server"), "Transfer-Encoding", "chunked"),
		field(body(closing(answer("until close, empty", "HTTP/1.1 200 OK\r\n\r\n", 200)), ""), "Transfer-Encoding", "chunked"),
		body(closing(answer("until close with Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye", 200)), "bye"),
		body(http10(closing(answer("until close to an HTTP/1.0 client", "HTTP/1.1 200 OK\r\n\r\nuntil close", 200))), "until close"),
		body(http10(answer("CL to an HTTP/1.0 client", ok2, 200)), "ok"),
		body(http10(answer("chunked to an HTTP/1.0 client", chunkedHelloResp, 200)), "hello"),
		// An HTTP/1.0 client cannot be sent a transfer coding, and only
		// chunked can be undone for it.
		http10(answer("gzip, chunked to an HTTP/1.0 client", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"+chunkedHello, 502)),
		http10(closing(answer("gzip until close to an HTTP/1.0 client", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes", 502))),
		field(body(http10(answer("chunked with spaces to an HTTP/1.0 client", "HTTP/1.1 200 OK\r\nTransfer-Encoding:  chunked ,\r\n\r\n"+chunkedHello, 200)), "hello"), "Transfer-Encoding", ""),

		// 101 only for the protocol the client asked for.
		answer("101 without an upgrade request", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 502),
		upgrade(answer("101 for another protocol", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 502), "websocket"),
		upgrade(answer("101 without Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", 502), "websocket"),
		upgrade(answer("101 for two protocols", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n", 502), "websocket"),
		upgrade(tunnel(answer("101 for websocket", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\ntunnel bytes", 101), "tunnel bytes"), "websocket"),
		upgrade(tunnel(answer("101 for WebSocket, asked in another case", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\ntunnel bytes", 101), "tunnel bytes"), "WebSocket"),
		upgrade(tunnel(answer("101 for one of the protocols asked", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\ntunnel bytes", 101), "tunnel bytes"), "h2c, websocket"),

		// Malformed heads.
		answer("bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 502),
		answer("bare LF ends a field", "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", 502),
		answer("bare CR in a value", "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", 502),
		answer("two different CL", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", 502),
		answer("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!", 502),
		answer("signed CL", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", 502),
		answer("status 99", "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("status of four digits", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("HTTP/2.0 status line", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("lower-case version", "http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 502),
		answer("head too large", "HTTP/1.1 200 OK\r\nX: "+strings.Repeat("a", 70000)+"\r\nContent-Length: 2\r\n\r\nok", 502),
		body(answer("no reason phrase", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", 200), "ok"),
		body(answer("CL with leading zeros", "HTTP/1.1 200 OK\r\nContent-Length: 02\r\n\r\nok", 200), "ok"),
		body(answer("identical CL twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 200), "ok"),

		// Connection options cannot unframe a response.
		body(answer("Connection: Content-Length", "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", 200), "hello"),
		body(answer("Connection: close, Content-Length", "HTTP/1.1 200 OK\r\nConnection: close, Content-Length\r\nContent-Length: 5\r\n\r\nhello", 200), "hello"),
		body(answer("Connection: Transfer-Encoding", "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkedHello, 200), "hello"),
		body(answer("HTTP/1.0 with CL", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200), "ok"),

		// Bodies that end before their framing says, or break it: the
		// client must not take them for whole.
		truncated(closing(answer("CL body cut", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nshort", 200))),
		truncated(closing(answer("chunked body cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 200))),
		truncated(answer("no CRLF after chunk data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 200)),
		truncated(answer("chunk size 0x0", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n", 200)),
		truncated(answer("lone LF after chunk data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 200)),
		truncated(answer("101 trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"+strings.Repeat("X-T: v\r\n", 101)+"\r\n", 200)),
		truncated(answer("malformed trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T : v\r\n\r\n", 200)),

		// Interim responses.
		func() corpusCase {
			c := answer("100 then 200", "HTTP/1.1 100 Continue\r\n\r\n"+ok2, 0)
			c.statuses, c.bodies = []int{100, 200}, []string{"", "ok"}
			return c
		}(),
		func() corpusCase {
			c := answer("103 then 200", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"+ok2, 0)
			c.statuses, c.bodies = []int{103, 200}, []string{"", "ok"}
			return c
		}(),
		body(http10(answer("100 then 200 to an HTTP/1.0 client", "HTTP/1.1 100 Continue\r\n\r\n"+ok2, 200)), "ok"),
	}
}

// corpusConcurrency is how many cases run at once. A case spends nearly
// all its time waiting on loopback sockets, so many can share a small
// machine; -parallel, which defaults to the number of CPUs, would let a few
// failing cases that wait out their timeouts hold up the whole corpus.
const corpusConcurrency = 32

// TestCorpus replays the corpus (see corpusCase).
func TestCorpus(t *testing.T) {
	slots := make(chan struct{}, corpusConcurrency)
	for _, g := range corpusGroups() {
		t.Run(g.name, func(t *testing.T) {
			names := map[string]bool{}
			var wg sync.WaitGroup
			for _, c := range g.cases {
				if names[c.name] {
					t.Errorf("two cases named %q", c.name)
				}
				names[c.name] = true
				slots <- struct{}{}
				wg.Go(func() {
					defer func() { <-slots }()
					t.Run(c.name, func(t *testing.T) { runCorpusCase(t, c) })
				})
			}
			wg.Wait()
		})
	}
}

// corpusClient reads lbctl's answers on one connection with the strict
// parser.
type corpusClient struct {
	c   *net.TCPConn
	buf []byte
	eof bool
}

// errTruncated is a response whose head arrived and whose body did not end
// before the connection did.
var errTruncated = fmt.Errorf("connection ended inside a response body")

func dialCorpusClient(t *testing.T, addr string) *corpusClient {
	t.Helper()
	return &corpusClient{c: dialProxy(t, addr).(*net.TCPConn)}
}

// next returns the next response, to a request with method. At the end of
// the connection it returns io.EOF when no byte of another response came,
// and errTruncated with the head when a body was cut.
func (cl *corpusClient) next(method string) (*strictMessage, error) {
	tmp := make([]byte, 16<<10)
	for {
		if len(cl.buf) > 0 || cl.eof {
			m, n, err := parseStrict(cl.buf, strictOpts{response: true, method: method, atEOF: cl.eof})
			switch {
			case err == nil:
				cl.buf = cl.buf[n:]
				return m, nil
			case err != errStrictIncomplete:
				return nil, fmt.Errorf("malformed answer from lbctl: %w in %q", err, clip(cl.buf, 200))
			case cl.eof && m != nil:
				return m, errTruncated
			case cl.eof && len(cl.buf) == 0:
				return nil, io.EOF
			case cl.eof:
				return nil, fmt.Errorf("connection ended inside a response head: %q", clip(cl.buf, 200))
			}
		}
		n, err := cl.c.Read(tmp)
		cl.buf = append(cl.buf, tmp[:n]...)
		if err != nil {
			if err != io.EOF && !isReset(err) {
				return nil, fmt.Errorf("no complete answer: %w (have %q)", err, clip(cl.buf, 200))
			}
			cl.eof = true
		}
	}
}

// rest reads until the connection ends and returns what came.
func (cl *corpusClient) rest() (string, error) {
	b, err := io.ReadAll(cl.c)
	if isReset(err) {
		err = nil
	}
	s := string(cl.buf) + string(b)
	cl.buf = nil
	return s, err
}

// startCorpusProxy starts lbctl in front of backendAddr, with passive
// health that counts failures without ever marking the backend down.
func startCorpusProxy(t *testing.T, backendAddr string) (string, *Proxy) {
	t.Helper()
	var p *Proxy
	addr := newRawFixture(t, backendAddr, func(q *Proxy) {
		p = q
		q.Health = &backend.Prober{
			Pool:    q.Pool,
			Checker: backend.CheckFunc(func(context.Context, *backend.Backend) error { return nil }),
			Rise:    1, Fall: 1 << 20,
		}
	})
	return addr, p
}

// endCorpusProxy shuts lbctl down, which waits until every exchange has
// ended, so that the backend has been sent all it ever will be.
func endCorpusProxy(t *testing.T, p *Proxy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("lbctl was still busy 5s after the clients closed: %v", err)
	}
}

var canonicalChunkLine = regexp.MustCompile(`^(0|[1-9a-f][0-9a-f]*)$`)

func runCorpusCase(t *testing.T, c corpusCase) {
	defer func() {
		if t.Failed() {
			t.Logf("the client sent %q", clip([]byte(c.raw), 400))
			if c.script != nil {
				t.Logf("the backend answered /r with %q, later %q", clip([]byte(c.script.reply), 300), c.script.later)
			}
		}
	}()
	scripts := map[string]backendScript{}
	if c.script != nil {
		scripts["/r"] = *c.script
	}
	cb := startCorpusBackend(t, scripts)
	addr, p := startCorpusProxy(t, cb.addr)
	want := append([]wantRequest(nil), c.backend...)

	cl := dialCorpusClient(t, addr)
	if _, err := io.WriteString(cl.c, c.raw); err != nil && !isReset(err) {
		t.Errorf("writing the request: %v", err)
	}
	if c.halfClose {
		cl.c.CloseWrite()
	}

	// The answers.
	var got []int
	var finals []*strictMessage
	var bodies []string
	var readErr error
	for len(got) < len(c.statuses) && readErr == nil {
		method := "GET"
		if len(finals) < len(c.methods) {
			method = c.methods[len(finals)]
		}
		m, err := cl.next(method)
		if err != nil {
			readErr = err
			break
		}
		got = append(got, m.status)
		bodies = append(bodies, string(m.body))
		if m.status >= 200 || m.status == 101 {
			finals = append(finals, m)
		}
		if m.status == 101 {
			break
		}
	}
	statusesOK := fmt.Sprint(got) == fmt.Sprint(c.statuses)
	if !statusesOK {
		t.Errorf("client got statuses %v, want %v", got, c.statuses)
	}
	if readErr != nil {
		t.Errorf("reading the answers: %v", readErr)
	}
	if statusesOK && c.bodies != nil && fmt.Sprintf("%q", bodies) != fmt.Sprintf("%q", c.bodies) {
		t.Errorf("client got bodies %q, want %q", bodies, c.bodies)
	}
	if statusesOK && len(finals) > 0 {
		for name, v := range c.fields {
			vs := finals[0].get(name)
			switch {
			case v == "" && len(vs) > 0:
				t.Errorf("client got %s: %q, want none", name, vs)
			case v != "" && (len(vs) != 1 || vs[0] != v):
				t.Errorf("client got %s: %q, want %q", name, vs, v)
			}
		}
	}

	cb.sendLater()

	// Whether the connection goes on.
	switch {
	case !statusesOK || readErr != nil:
	case len(got) > 0 && got[len(got)-1] == 101:
		rest, err := cl.rest()
		if err != nil {
			t.Errorf("reading the tunnel: %v", err)
		}
		if rest != c.tunnel {
			t.Errorf("through the tunnel came %q, want %q", rest, c.tunnel)
		}
	case c.closed:
		m, err := cl.next("GET")
		switch {
		case err == io.EOF && !c.truncated:
		case err == errTruncated && c.truncated:
		case err == errTruncated:
			t.Errorf("client got a %d cut short after the answers, want the connection closed", m.status)
		case err == nil:
			t.Errorf("client got another answer, %s, want the connection closed", m)
		case c.truncated:
			t.Errorf("want a response cut short by the connection's end: %v", err)
		default:
			t.Errorf("want the connection closed: %v", err)
		}
	default:
		if len(finals) > 0 {
			if last := finals[len(finals)-1]; hasCloseOption(last) {
				t.Errorf("the last answer says Connection: close, want the connection kept")
			}
		}
		io.WriteString(cl.c, "GET /marker HTTP/1.1\r\n"+hostCorpus+"\r\n")
		want = append(want, rq("GET", "/marker"))
		m, err := cl.next("GET")
		switch {
		case err == io.EOF:
			t.Errorf("lbctl closed the connection, want it kept")
		case err != nil:
			t.Errorf("the next request on the connection: %v", err)
		case m.status != 200 || string(m.body) != "ok GET /marker":
			t.Errorf("the next request on the connection got %s, want its own answer (200 \"ok GET /marker\")", m)
		}
	}
	cl.c.Close()

	// Another client, after a scripted answer: it must get its own.
	if c.script != nil {
		cl2 := dialCorpusClient(t, addr)
		io.WriteString(cl2.c, "GET /second HTTP/1.1\r\n"+hostCorpus+"\r\n")
		want = append(want, rq("GET", "/second"))
		m, err := cl2.next("GET")
		switch {
		case err != nil:
			t.Errorf("second client: %v", err)
		case m.status != 200 || string(m.body) != "ok GET /second":
			t.Errorf("second client got %s, want its own answer (200 \"ok GET /second\")", m)
		}
		cl2.c.Close()
	}

	endCorpusProxy(t, p)
	seen, faults := cb.finish(t)
	for _, f := range faults {
		t.Errorf("the backend could not parse what lbctl sent: %s", f)
	}
	checkForwarded(t, seen)
	for _, problem := range matchRequests(seen, want) {
		t.Error(problem)
	}
	if c.script == nil {
		if n := p.Pool.Registry().All()[0].ConsecutiveFailures(); n != 0 {
			t.Errorf("the backend behaved, yet %d failures counted against its health", n)
		}
	}
}

// hasCloseOption reports whether m carries the connection option close.
func hasCloseOption(m *strictMessage) bool {
	for _, v := range m.get("connection") {
		for _, opt := range strictList(v) {
			if strings.EqualFold(opt, "close") {
				return true
			}
		}
	}
	return false
}

// checkForwarded checks what every request lbctl forwards must be: HTTP/1.1,
// chunk-size lines in lbctl's own canonical form (extensions stripped), and
// no client-sent Forwarded or X-Forwarded-Host.
func checkForwarded(t *testing.T, seen []*seenRequest) {
	t.Helper()
	for _, r := range seen {
		if r.msg.version != "HTTP/1.1" {
			t.Errorf("backend got %s as %s, want HTTP/1.1", r, r.msg.version)
		}
		for _, line := range r.msg.chunkLines {
			if !canonicalChunkLine.MatchString(line) {
				t.Errorf("backend got chunk line %q in %s, want bare lower-case hex without leading zeros", line, r)
			}
		}
		for _, name := range []string{"Forwarded", "X-Forwarded-Host"} {
			if vs := r.msg.get(name); len(vs) > 0 {
				t.Errorf("backend got %s: %q in %s", name, vs, r)
			}
		}
	}
}

// matchRequests compares what the backend parsed with what it should have,
// in order. A wanted partial request may be missing: lbctl may stop a
// malformed body before it forwards anything.
func matchRequests(seen []*seenRequest, want []wantRequest) []string {
	var problems []string
	i := 0
	for _, w := range want {
		if i == len(seen) || seen[i].msg.method != w.method || seen[i].msg.target != w.target || seen[i].partial != w.isPartial {
			if w.isPartial {
				continue
			}
			return append(problems, fmt.Sprintf("backend parsed %v, want %v", seen, want))
		}
		r := seen[i]
		i++
		if w.isPartial {
			continue
		}
		if string(r.msg.body) != w.body {
			problems = append(problems, fmt.Sprintf("backend got %s with body %q, want %q", r, clip(r.msg.body, 80), clip([]byte(w.body), 80)))
		}
		if w.framing != "" && r.msg.framing.String() != w.framing {
			problems = append(problems, fmt.Sprintf("backend got %s framed by %s, want %s", r, r.msg.framing, w.framing))
		}
		if hosts := r.msg.get("host"); w.host != "" && (len(hosts) != 1 || !strings.EqualFold(hosts[0], w.host)) {
			problems = append(problems, fmt.Sprintf("backend got %s with Host %q, want %q", r, hosts, w.host))
		}
		for name, v := range w.fields {
			vs := r.msg.get(name)
			switch {
			case v == "" && len(vs) > 0:
				problems = append(problems, fmt.Sprintf("backend got %s with %s: %q, want none", r, name, vs))
			case v != "" && (len(vs) != 1 || vs[0] != v):
				problems = append(problems, fmt.Sprintf("backend got %s with %s: %q, want %q", r, name, vs, v))
			}
		}
	}
	if i < len(seen) {
		problems = append(problems, fmt.Sprintf("backend parsed %v, want %v", seen, want))
	}
	return problems
}

// corpusRequests returns every payload clients send in the corpus, for the
// differential fuzz target's seeds.
func corpusRequests() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range corpusGroups() {
		for _, c := range g.cases {
			if !seen[c.raw] {
				seen[c.raw] = true
				out = append(out, c.raw)
			}
		}
	}
	return out
}

package l7

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// headCRLF joins lines with CRLF and ends the head with the empty line.
func headCRLF(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// headManyFields returns n field lines "X-Fn: v".
func headManyFields(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = "X-F" + strconv.Itoa(i) + ": v"
	}
	return lines
}

// headRequest is a request head: a request line plus fields.
func headRequest(requestLine string, fields ...string) string {
	return headCRLF(append([]string{requestLine}, fields...)...)
}

// headRequestSummary is what a test checks of an accepted request head.
type headRequestSummary struct {
	method, target, proto, host     string
	slash                           bool
	fields                          int
	contentLength                   int64
	chunked, close, upgrade, expect bool
}

func headSummarizeRequest(h *requestHead) headRequestSummary {
	return headRequestSummary{
		method: string(h.method), target: string(h.target), slash: h.slash, proto: string(h.proto), host: string(h.host),
		fields: len(h.fields), contentLength: h.contentLength,
		chunked: h.chunked, close: h.close, upgrade: h.upgrade, expect: h.expectContinue,
	}
}

// headBrowserRequest is a typical browser GET with 12 fields.
var headBrowserRequest = headRequest("GET /assets/app.js?v=3 HTTP/1.1",
	"Host: shop.example.com",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Accept: */*",
	"Accept-Language: en-US,en;q=0.5",
	"Accept-Encoding: gzip, deflate, br, zstd",
	"Referer: https://shop.example.com/cart",
	"Connection: keep-alive",
	"Cookie: SERVERID=app-02; session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark",
	"Sec-Fetch-Dest: script",
	"Sec-Fetch-Mode: no-cors",
	"Sec-Fetch-Site: same-origin",
	"Priority: u=2",
)

// headRequestCases are request heads with the status they must get (0: accepted).
// Each is also a fuzz seed.
var headRequestCases = []struct {
	name   string
	in     string
	status int
	want   headRequestSummary // checked when status is 0
}{
	// Accepted.
	{name: "minimal GET", in: headRequest("GET / HTTP/1.1", "Host: a"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 1, contentLength: -1}},
	{name: "browser GET with 12 fields", in: headBrowserRequest,
		want: headRequestSummary{method: "GET", target: "/assets/app.js?v=3", proto: "HTTP/1.1", host: "shop.example.com", fields: 12, contentLength: -1}},
	{name: "obs-text in value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-Name: caf\xc3\xa9 \xff\x80"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1}},
	{name: "absolute-form target becomes origin-form", in: headRequest("GET http://example.com:8080/a/b?c=d&e=%20 HTTP/1.1", "Host: example.com:8080"),
		want: headRequestSummary{method: "GET", target: "/a/b?c=d&e=%20", proto: "HTTP/1.1", host: "example.com:8080", fields: 1, contentLength: -1}},
	{name: "absolute-form authority replaces Host", in: headRequest("GET HTTPS://b/x HTTP/1.1", "Host: a"),
		want: headRequestSummary{method: "GET", target: "/x", proto: "HTTP/1.1", host: "b", fields: 1, contentLength: -1}},
	{name: "absolute-form with an empty path", in: headRequest("GET http://b?q=1 HTTP/1.1", "Host: b"),
		want: headRequestSummary{method: "GET", target: "?q=1", slash: true, proto: "HTTP/1.1", host: "b", fields: 1, contentLength: -1}},
	{name: "absolute-form OPTIONS with an empty path", in: headRequest("OPTIONS http://b:81 HTTP/1.1", "Host: b:81"),
		want: headRequestSummary{method: "OPTIONS", target: "*", proto: "HTTP/1.1", host: "b:81", fields: 1, contentLength: -1}},
	{name: "absolute-form in HTTP/1.0 gives the Host", in: headRequest("GET http://b/ HTTP/1.0"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.0", host: "b", contentLength: -1, close: true}},
	{name: "Host with IPv6 literal and port", in: headRequest("GET / HTTP/1.1", "Host: [::1]:8080"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "[::1]:8080", fields: 1, contentLength: -1}},
	{name: "Host with sub-delims and percent-encoding", in: headRequest("GET / HTTP/1.1", "Host: a-b.c_d~e!$&'()*+,;=%41:"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a-b.c_d~e!$&'()*+,;=%41:", fields: 1, contentLength: -1}},
	{name: "leading empty line", in: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 1, contentLength: -1}},
	{name: "HTTP/1.2 is served as HTTP/1.1", in: headRequest("GET / HTTP/1.2", "Host: a"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.2", host: "a", fields: 1, contentLength: -1}},
	{name: "OPTIONS asterisk", in: headRequest("OPTIONS * HTTP/1.1", "Host: a"),
		want: headRequestSummary{method: "OPTIONS", target: "*", proto: "HTTP/1.1", host: "a", fields: 1, contentLength: -1}},
	{name: "extension method", in: headRequest("PROPFIND /d HTTP/1.1", "Host: a"),
		want: headRequestSummary{method: "PROPFIND", target: "/d", proto: "HTTP/1.1", host: "a", fields: 1, contentLength: -1}},
	{name: "HTTP/1.0 without Host closes", in: headRequest("GET / HTTP/1.0"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.0", contentLength: -1, close: true}},
	{name: "HTTP/1.0 keep-alive", in: headRequest("GET / HTTP/1.0", "Host: a", "Connection: Keep-Alive"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.0", host: "a", fields: 2, contentLength: -1}},
	{name: "HTTP/1.0 keep-alive and close", in: headRequest("GET / HTTP/1.0", "Connection: keep-alive, close"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.0", fields: 1, contentLength: -1, close: true}},
	{name: "Connection close", in: headRequest("GET / HTTP/1.1", "Host: a", "Connection: CLOSE"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1, close: true}},
	{name: "Connection close in second field", in: headRequest("GET / HTTP/1.1", "Host: a", "Connection: foo", "Connection: bar ,\tclose ,"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: -1, close: true}},
	{name: "websocket upgrade", in: headRequest("GET /ws HTTP/1.1", "Host: a", "Connection: keep-alive, Upgrade", "Upgrade: websocket"),
		want: headRequestSummary{method: "GET", target: "/ws", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: -1, upgrade: true}},
	{name: "Connection upgrade without Upgrade field", in: headRequest("GET / HTTP/1.1", "Host: a", "Connection: upgrade"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1}},
	{name: "Upgrade field without Connection token", in: headRequest("GET / HTTP/1.1", "Host: a", "Upgrade: websocket"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1}},
	{name: "upgrade ignored in HTTP/1.0", in: headRequest("GET / HTTP/1.0", "Connection: keep-alive, upgrade", "Upgrade: websocket"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.0", fields: 2, contentLength: -1}},
	{name: "Expect 100-continue", in: headRequest("PUT /f HTTP/1.1", "Host: a", "Content-Length: 10", "Expect: 100-Continue"),
		want: headRequestSummary{method: "PUT", target: "/f", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: 10, expect: true}},
	{name: "Expect ignored in HTTP/1.0", in: headRequest("PUT /f HTTP/1.0", "Content-Length: 10", "Expect: 100-continue"),
		want: headRequestSummary{method: "PUT", target: "/f", proto: "HTTP/1.0", fields: 2, contentLength: 10, close: true}},
	{name: "other Expect", in: headRequest("PUT /f HTTP/1.1", "Host: a", "Content-Length: 10", "Expect: 100-continue-ish"),
		want: headRequestSummary{method: "PUT", target: "/f", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: 10}},
	{name: "Content-Length", in: headRequest("POST /f HTTP/1.1", "Host: a", "Content-Length: 5"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: 5}},
	{name: "Content-Length zero", in: headRequest("POST /f HTTP/1.1", "Host: a", "content-length:0"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: 0}},
	{name: "Content-Length 18 digits", in: headRequest("POST /f HTTP/1.1", "Host: a", "Content-Length: 999999999999999999"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: 999999999999999999}},
	{name: "Content-Length with OWS", in: headRequest("POST /f HTTP/1.1", "Host: a", "Content-Length: \t42 \t"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: 42}},
	{name: "identical Content-Length twice", in: headRequest("POST /f HTTP/1.1", "Host: a", "Content-Length: 5", "CONTENT-LENGTH: 5"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: 5}},
	{name: "chunked", in: headRequest("POST /f HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1, chunked: true}},
	{name: "Chunked in capitals with OWS", in: headRequest("POST /f HTTP/1.1", "Host: a", "transfer-encoding:\t CHUNKED \t"),
		want: headRequestSummary{method: "POST", target: "/f", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1, chunked: true}},
	{name: "empty value and tab inside value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-Empty:", "X-Tab: a\tb  "),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 3, contentLength: -1}},
	{name: "every tchar in a name", in: headRequest("GET / HTTP/1.1", "Host: a", "!#$%&'*+-.^_`|~09azAZ: v"),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: 2, contentLength: -1}},
	{name: "100 fields", in: headRequest("GET / HTTP/1.1", append([]string{"Host: a"}, headManyFields(maxFields-1)...)...),
		want: headRequestSummary{method: "GET", target: "/", proto: "HTTP/1.1", host: "a", fields: maxFields, contentLength: -1}},

	// Smuggling: ambiguous framing.
	{name: "CL+TE", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"), status: 400},
	{name: "TE+CL", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Content-Length: 0"), status: 400},
	{name: "two different CL", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 6"), status: 400},
	{name: "CL 5 and 05", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 05"), status: 400},
	{name: "CL list", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5, 5"), status: 400},
	{name: "Transfer-Encoding: chunked, chunked", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, chunked"), status: 400},
	{name: "Transfer-Encoding: xchunked", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: xchunked"), status: 400},
	{name: "Transfer-Encoding: gzip, chunked", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip, chunked"), status: 400},
	{name: "Transfer-Encoding: identity", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: identity"), status: 400},
	{name: "Transfer-Encoding empty", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding:"), status: 400},
	{name: "Transfer-Encoding: chunked;", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked;"), status: 400},
	{name: "two Transfer-Encoding fields", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), status: 400},
	{name: "Transfer-Encoding in HTTP/1.0", in: headRequest("POST / HTTP/1.0", "Transfer-Encoding: chunked"), status: 400},
	{name: "Transfer-Encoding : chunked (space before colon)", in: headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding : chunked"), status: 400},
	{name: "tab before colon", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length\t: 5"), status: 400},
	{name: "Content-Length: +5", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: +5"), status: 400},
	{name: "Content-Length: -5", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: -5"), status: 400},
	{name: "Content-Length: (empty)", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: "), status: 400},
	{name: "Content-Length: 5a", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5a"), status: 400},
	{name: "Content-Length: 5 5", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5 5"), status: 400},
	{name: "Content-Length: 0x5", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 0x5"), status: 400},
	{name: "Content-Length 19 digits", in: headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 1000000000000000000"), status: 400},
	{name: "NUL in a value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-A: a\x00b"), status: 400},
	{name: "DEL in a value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-A: a\x7fb"), status: 400},
	{name: "control byte in a value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-A: a\x1bb"), status: 400},
	{name: "vertical tab in a value", in: headRequest("GET / HTTP/1.1", "Host: a", "X-A: a\vb"), status: 400},
	{name: "bare LF", in: "GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\n", status: 400},
	{name: "bare LF ending the request line", in: "GET / HTTP/1.1\nHost: a\r\n\r\n", status: 400},
	{name: "bare LF only", in: "GET / HTTP/1.1\nHost: a\n\n", status: 400},
	{name: "bare LF ending the head", in: "GET / HTTP/1.1\r\nHost: a\r\n\n", status: 400},
	{name: "bare CR", in: "GET / HTTP/1.1\r\nHost: a\rContent-Length: 5\r\n\r\n", status: 400},
	{name: "bare CR in the request line", in: "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
	{name: "CR CR LF", in: "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", status: 400},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", status: 400},
	{name: "obs-fold with tab", in: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", status: 400},
	{name: "whitespace before the first field", in: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", status: 400},

	// Request line.
	{name: "empty head", in: "\r\n\r\n", status: 400},
	{name: "bare LF line before the request line", in: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
	{name: "double SP after method", in: headRequest("GET  / HTTP/1.1", "Host: a"), status: 400},
	{name: "double SP before version", in: headRequest("GET /  HTTP/1.1", "Host: a"), status: 400},
	{name: "leading SP", in: headRequest(" GET / HTTP/1.1", "Host: a"), status: 400},
	{name: "trailing SP", in: headRequest("GET / HTTP/1.1 ", "Host: a"), status: 400},
	{name: "tab separator", in: headRequest("GET\t/ HTTP/1.1", "Host: a"), status: 400},
	{name: "no version", in: headRequest("GET /", "Host: a"), status: 400},
	{name: "method only", in: headRequest("GET", "Host: a"), status: 400},
	{name: "method not a token", in: headRequest("GE(T / HTTP/1.1", "Host: a"), status: 400},
	{name: "space in target", in: headRequest("GET /a b HTTP/1.1", "Host: a"), status: 400},
	{name: "non-ASCII target", in: headRequest("GET /caf\xc3\xa9 HTTP/1.1", "Host: a"), status: 400},
	{name: "DEL in target", in: headRequest("GET /\x7f HTTP/1.1", "Host: a"), status: 400},
	{name: "control in target", in: headRequest("GET /\x01 HTTP/1.1", "Host: a"), status: 400},
	{name: "NUL in target", in: headRequest("GET /\x00 HTTP/1.1", "Host: a"), status: 400},
	{name: "HTTP/2.0", in: headRequest("GET / HTTP/2.0", "Host: a"), status: 505},
	{name: "HTTP/0.9", in: headRequest("GET / HTTP/0.9", "Host: a"), status: 505},
	{name: "lower-case version", in: headRequest("GET / http/1.1", "Host: a"), status: 400},
	{name: "HTTP/1.1x", in: headRequest("GET / HTTP/1.1x", "Host: a"), status: 400},
	{name: "HTTP/11", in: headRequest("GET / HTTP/11", "Host: a"), status: 400},
	{name: "HTTP/1.", in: headRequest("GET / HTTP/1.", "Host: a"), status: 400},

	// Field lines.
	{name: "no colon", in: headRequest("GET / HTTP/1.1", "Host: a", "X-A b"), status: 400},
	{name: "empty name", in: headRequest("GET / HTTP/1.1", "Host: a", ": b"), status: 400},
	{name: "name not a token", in: headRequest("GET / HTTP/1.1", "Host: a", "X(A): b"), status: 400},
	{name: "space inside name", in: headRequest("GET / HTTP/1.1", "Host: a", "X A: b"), status: 400},
	{name: "non-ASCII name", in: headRequest("GET / HTTP/1.1", "Host: a", "X-\xc3\xa9: b"), status: 400},
	{name: "101 fields", in: headRequest("GET / HTTP/1.1", append([]string{"Host: a"}, headManyFields(maxFields)...)...), status: 431},

	// Request-target forms (RFC 9112 3.2).
	{name: "CONNECT authority-form", in: headRequest("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"), status: 501},
	{name: "CONNECT origin-form", in: headRequest("CONNECT / HTTP/1.1", "Host: a"), status: 501},
	{name: "CONNECT hostname", in: headRequest("CONNECT hostname HTTP/1.1", "Host: a"), status: 501},
	{name: "asterisk on GET", in: headRequest("GET * HTTP/1.1", "Host: a"), status: 400},
	{name: "asterisk on an extension method", in: headRequest("M-SEARCH * HTTP/1.1", "Host: a"), status: 400},
	{name: "bang target", in: headRequest("GET ! HTTP/1.1", "Host: a"), status: 400},
	{name: "relative target", in: headRequest("GET admin HTTP/1.1", "Host: a"), status: 400},
	{name: "dot-dot target", in: headRequest("GET ../../../../etc/passwd HTTP/1.1", "Host: a"), status: 400},
	{name: "fragment in absolute-form", in: headRequest("GET http://hostname#frag HTTP/1.1", "Host: hostname"), status: 400},
	{name: "fragment in origin-form", in: headRequest("GET /a#b HTTP/1.1", "Host: a"), status: 400},
	{name: "userinfo in absolute-form", in: headRequest("GET http://user@b/ HTTP/1.1", "Host: b"), status: 400},
	{name: "other scheme", in: headRequest("GET ftp://b/ HTTP/1.1", "Host: b"), status: 400},
	{name: "absolute-form without authority", in: headRequest("GET http:///x HTTP/1.1", "Host: b"), status: 400},
	{name: "absolute-form with a bad authority", in: headRequest("GET http://a\"b/ HTTP/1.1", "Host: b"), status: 400},
	{name: "absolute-form without Host in HTTP/1.1", in: headRequest("GET http://b/ HTTP/1.1"), status: 400},

	// Host.
	{name: "missing Host", in: headRequest("GET / HTTP/1.1", "X-A: b"), status: 400},
	{name: "empty Host", in: headRequest("GET / HTTP/1.1", "Host:"), status: 400},
	{name: "empty Host with absolute-form", in: headRequest("GET http://a/ HTTP/1.1", "Host:"), status: 400},
	{name: "Host with a space", in: headRequest("GET / HTTP/1.1", "Host: a b"), status: 400},
	{name: "Host with a path", in: headRequest("GET / HTTP/1.1", "Host: a/../admin"), status: 400},
	{name: "Host list", in: headRequest("GET / HTTP/1.1", "Host: a, b"), status: 400},
	{name: "Host with userinfo", in: headRequest("GET / HTTP/1.1", "Host: u@a"), status: 400},
	{name: "Host with a bad port", in: headRequest("GET / HTTP/1.1", "Host: a:8x"), status: 400},
	{name: "Host with a long port", in: headRequest("GET / HTTP/1.1", "Host: a:123456"), status: 400},
	{name: "Host port only", in: headRequest("GET / HTTP/1.1", "Host: :80"), status: 400},
	{name: "Host with a bad percent-encoding", in: headRequest("GET / HTTP/1.1", "Host: a%4"), status: 400},
	{name: "Host with an unclosed IP literal", in: headRequest("GET / HTTP/1.1", "Host: [::1"), status: 400},
	{name: "Host with an empty IP literal", in: headRequest("GET / HTTP/1.1", "Host: []"), status: 400},
	{name: "Host with bytes after an IP literal", in: headRequest("GET / HTTP/1.1", "Host: [::1]x"), status: 400},
	{name: "Host with obs-text", in: headRequest("GET / HTTP/1.1", "Host: caf\xc3\xa9"), status: 400},
	{name: "two Host fields", in: headRequest("GET / HTTP/1.1", "Host: a", "Host: a"), status: 400},
	{name: "two Host fields in HTTP/1.0", in: headRequest("GET / HTTP/1.0", "Host: a", "host: b"), status: 400},

	// Not one head.
	{name: "incomplete head", in: "GET / HTTP/1.1\r\nHost: a\r\n", status: 400},
	{name: "bytes after the head", in: headRequest("GET / HTTP/1.1", "Host: a") + "GET", status: 400},
	{name: "no bytes", in: "", status: 400},
}

func TestHeadParseRequest(t *testing.T) {
	var h requestHead
	for _, tc := range headRequestCases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseRequestHead([]byte(tc.in), &h)
			if tc.status != 0 {
				var he *headError
				if !errors.As(err, &he) {
					t.Fatalf("parseRequestHead(%q) = %v, want a *headError with status %d", tc.in, err, tc.status)
				}
				if he.status != tc.status {
					t.Errorf("parseRequestHead(%q) status = %d (%s), want %d", tc.in, he.status, he.reason, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequestHead(%q) = %v, want nil", tc.in, err)
			}
			if got := headSummarizeRequest(&h); got != tc.want {
				t.Errorf("parseRequestHead(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
			if n := headEnd([]byte(tc.in), 0); n != len(tc.in) {
				t.Errorf("headEnd = %d, want %d", n, len(tc.in))
			}
		})
	}
}

// TestHeadSmugglingReasons pins the reason of the framing rejections, so that a
// refactoring cannot turn one into an accident of another check.
func TestHeadSmugglingReasons(t *testing.T) {
	tests := []struct{ in, reason string }{
		{headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"), "both Content-Length and Transfer-Encoding"},
		{headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Content-Length: 6"), "conflicting Content-Length fields"},
		{headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked, chunked"), "unsupported Transfer-Encoding: only a single chunked is accepted"},
		{headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), "multiple Transfer-Encoding fields"},
		{headRequest("POST / HTTP/1.1", "Host: a", "Transfer-Encoding : chunked"), "whitespace between field name and colon"},
		{headRequest("POST / HTTP/1.1", "Host: a", "Content-Length: +5"), "invalid Content-Length"},
		{headRequest("GET / HTTP/1.1", "Host: a", "X-A: a\x00b"), "NUL in field value"},
		{"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "bare LF in head"},
		{"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "bare CR in head"},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "obs-fold (line folding) in field line"},
	}
	var h requestHead
	for _, tc := range tests {
		err := parseRequestHead([]byte(tc.in), &h)
		var he *headError
		if !errors.As(err, &he) || he.reason != tc.reason {
			t.Errorf("parseRequestHead(%q) = %v, want reason %q", tc.in, err, tc.reason)
		}
	}
}

func TestHeadRequestFields(t *testing.T) {
	in := headRequest("GET / HTTP/1.1", "Host: a", "X-A:  b c \t", "x-b:", "X-C:\t\xff")
	var h requestHead
	if err := parseRequestHead([]byte(in), &h); err != nil {
		t.Fatalf("parseRequestHead: %v", err)
	}
	want := []struct{ name, value string }{{"Host", "a"}, {"X-A", "b c"}, {"x-b", ""}, {"X-C", "\xff"}}
	if len(h.fields) != len(want) {
		t.Fatalf("got %d fields, want %d", len(h.fields), len(want))
	}
	for i, w := range want {
		if got := h.fields[i]; string(got.name) != w.name || string(got.value) != w.value {
			t.Errorf("field %d = %q: %q, want %q: %q", i, got.name, got.value, w.name, w.value)
		}
	}
}

func TestHeadParseRequestReusesFields(t *testing.T) {
	var h requestHead
	if err := parseRequestHead([]byte(headBrowserRequest), &h); err != nil {
		t.Fatalf("parseRequestHead: %v", err)
	}
	first := &h.fields[0]
	if err := parseRequestHead([]byte(headRequest("GET / HTTP/1.0")), &h); err != nil {
		t.Fatalf("parseRequestHead: %v", err)
	}
	if len(h.fields) != 0 || h.host != nil || h.contentLength != -1 {
		t.Errorf("after a second parse: fields %d, host %q, contentLength %d; want 0, nil, -1", len(h.fields), h.host, h.contentLength)
	}
	if err := parseRequestHead([]byte(headBrowserRequest), &h); err != nil {
		t.Fatalf("parseRequestHead: %v", err)
	}
	if &h.fields[0] != first {
		t.Errorf("fields were reallocated; want the backing array reused")
	}
}

func TestHeadParseRequestNoAllocs(t *testing.T) {
	b := []byte(headBrowserRequest)
	var h requestHead
	if err := parseRequestHead(b, &h); err != nil { // warm h.fields
		t.Fatalf("parseRequestHead: %v", err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := parseRequestHead(b, &h); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("parseRequestHead allocates %v times per run, want 0", allocs)
	}
	var r responseHead
	rb := []byte(headBrowserResponse)
	if err := parseResponseHead(rb, &r); err != nil {
		t.Fatalf("parseResponseHead: %v", err)
	}
	allocs = testing.AllocsPerRun(100, func() {
		if err := parseResponseHead(rb, &r); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("parseResponseHead allocates %v times per run, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		if headEnd(b, 0) != len(b) {
			panic("headEnd")
		}
	})
	if allocs != 0 {
		t.Errorf("headEnd allocates %v times per run, want 0", allocs)
	}
}

// headResponseSummary is what a test checks of an accepted response head.
type headResponseSummary struct {
	proto, reason  string
	status, fields int
	contentLength  int64
	chunked, close bool
}

func headSummarizeResponse(h *responseHead) headResponseSummary {
	return headResponseSummary{
		proto: string(h.proto), reason: string(h.reason), status: h.status, fields: len(h.fields),
		contentLength: h.contentLength, chunked: h.chunked, close: h.close,
	}
}

var headBrowserResponse = headCRLF("HTTP/1.1 200 OK",
	"Date: Tue, 14 Jan 2025 10:00:00 GMT",
	"Content-Type: application/javascript; charset=utf-8",
	"Content-Length: 48213",
	"Cache-Control: public, max-age=31536000, immutable",
	"ETag: \"5f3e-1a2b\"",
	"Vary: Accept-Encoding",
)

// headResponseCases are response heads with the status they must get (0:
// accepted). Each is also a fuzz seed.
var headResponseCases = []struct {
	name   string
	in     string
	status int
	want   headResponseSummary // checked when status is 0
}{
	{name: "200 with Content-Length", in: headBrowserResponse,
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 6, contentLength: 48213}},
	{name: "no reason, no SP", in: headCRLF("HTTP/1.1 204"),
		want: headResponseSummary{proto: "HTTP/1.1", status: 204, contentLength: -1}},
	{name: "no reason, with SP", in: headCRLF("HTTP/1.1 304 "),
		want: headResponseSummary{proto: "HTTP/1.1", status: 304, contentLength: -1}},
	{name: "reason with spaces, tab and obs-text", in: headCRLF("HTTP/1.1 404 Not\tFound \xe9", "Content-Length: 0"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "Not\tFound \xe9", status: 404, fields: 1, contentLength: 0}},
	{name: "chunked", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1, chunked: true}},
	{name: "gzip, chunked", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, Chunked"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1, chunked: true}},
	{name: "HTTP/1.2 is read as HTTP/1.1", in: headCRLF("HTTP/1.2 200 OK", "Content-Length: 2"),
		want: headResponseSummary{proto: "HTTP/1.2", reason: "OK", status: 200, fields: 1, contentLength: 2}},
	{name: "chunked, gzip runs until close", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, gzip"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1, close: true}},
	{name: "gzip runs until close", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: gzip"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1, close: true}},
	{name: "empty TE runs until close", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding:"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1, close: true}},
	{name: "no framing", in: headCRLF("HTTP/1.1 200 OK", "Content-Type: text/plain"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 1, contentLength: -1}},
	{name: "Connection close", in: headCRLF("HTTP/1.1 200 OK", "Connection: close", "Content-Length: 2"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 2, contentLength: 2, close: true}},
	{name: "HTTP/1.0 closes", in: headCRLF("HTTP/1.0 200 OK", "Content-Length: 2"),
		want: headResponseSummary{proto: "HTTP/1.0", reason: "OK", status: 200, fields: 1, contentLength: 2, close: true}},
	{name: "HTTP/1.0 keep-alive", in: headCRLF("HTTP/1.0 200 OK", "Connection: keep-alive", "Content-Length: 2"),
		want: headResponseSummary{proto: "HTTP/1.0", reason: "OK", status: 200, fields: 2, contentLength: 2}},
	{name: "101 switching protocols", in: headCRLF("HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", "Upgrade: websocket"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "Switching Protocols", status: 101, fields: 2, contentLength: -1}},
	{name: "identical Content-Length twice", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: 7", "Content-Length: 7"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: 2, contentLength: 7}},
	{name: "status 599", in: headCRLF("HTTP/1.1 599 x"),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "x", status: 599, contentLength: -1}},
	{name: "100 fields", in: headCRLF(append([]string{"HTTP/1.1 200 OK"}, headManyFields(maxFields)...)...),
		want: headResponseSummary{proto: "HTTP/1.1", reason: "OK", status: 200, fields: maxFields, contentLength: -1}},

	{name: "CL+TE", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: 5", "Transfer-Encoding: chunked"), status: 502},
	{name: "chunked, chunked", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, chunked"), status: 502},
	{name: "chunked twice around gzip", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, gzip, Chunked"), status: 502},
	{name: "two TE fields", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked"), status: 502},
	{name: "CL+TE not chunked", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding: gzip", "Content-Length: 5"), status: 502},
	{name: "two different CL", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 6"), status: 502},
	{name: "Content-Length: +5", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: +5"), status: 502},
	{name: "Content-Length: (empty)", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: "), status: 502},
	{name: "Content-Length: 5a", in: headCRLF("HTTP/1.1 200 OK", "Content-Length: 5a"), status: 502},
	{name: "Transfer-Encoding : chunked (space before colon)", in: headCRLF("HTTP/1.1 200 OK", "Transfer-Encoding : chunked"), status: 502},
	{name: "Transfer-Encoding in HTTP/1.0", in: headCRLF("HTTP/1.0 200 OK", "Transfer-Encoding: chunked"), status: 502},
	{name: "NUL in a value", in: headCRLF("HTTP/1.1 200 OK", "X-A: \x00"), status: 502},
	{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", status: 502},
	{name: "bare CR", in: "HTTP/1.1 200 OK\r\nX-A: b\rContent-Length: 0\r\n\r\n", status: 502},
	{name: "obs-fold", in: "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n", status: 502},
	{name: "control byte in reason", in: headCRLF("HTTP/1.1 200 O\x01K"), status: 502},
	{name: "HTTP/2.0", in: headCRLF("HTTP/2.0 200 OK"), status: 502},
	{name: "lower-case version", in: headCRLF("http/1.1 200 OK"), status: 502},
	{name: "status 99", in: headCRLF("HTTP/1.1 099 x"), status: 502},
	{name: "status 600", in: headCRLF("HTTP/1.1 600 x"), status: 502},
	{name: "two-digit status", in: headCRLF("HTTP/1.1 20 OK"), status: 502},
	{name: "four-digit status", in: headCRLF("HTTP/1.1 2000 OK"), status: 502},
	{name: "tab after status", in: headCRLF("HTTP/1.1 200\tOK"), status: 502},
	{name: "double SP after version", in: headCRLF("HTTP/1.1  200 OK"), status: 502},
	{name: "version only", in: headCRLF("HTTP/1.1"), status: 502},
	{name: "leading empty line", in: "\r\nHTTP/1.1 200 OK\r\n\r\n", status: 502},
	{name: "101 fields", in: headCRLF(append([]string{"HTTP/1.1 200 OK"}, headManyFields(maxFields+1)...)...), status: 502},
	{name: "incomplete head", in: "HTTP/1.1 200 OK\r\n", status: 502},
}

func TestHeadParseResponse(t *testing.T) {
	var h responseHead
	for _, tc := range headResponseCases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseResponseHead([]byte(tc.in), &h)
			if tc.status != 0 {
				var he *headError
				if !errors.As(err, &he) {
					t.Fatalf("parseResponseHead(%q) = %v, want a *headError with status %d", tc.in, err, tc.status)
				}
				if he.status != tc.status {
					t.Errorf("parseResponseHead(%q) status = %d (%s), want %d", tc.in, he.status, he.reason, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseResponseHead(%q) = %v, want nil", tc.in, err)
			}
			if got := headSummarizeResponse(&h); got != tc.want {
				t.Errorf("parseResponseHead(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestHeadEnd(t *testing.T) {
	head := headRequest("GET / HTTP/1.1", "Host: a")
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", -1},
		{"request line only", "GET / HTTP/1.1\r\n", -1},
		{"no empty line", "GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"half the empty line", "GET / HTTP/1.1\r\nHost: a\r\n\r", -1},
		{"complete", head, len(head)},
		{"pipelined request after the head", head + headRequest("POST /b HTTP/1.1", "Host: a", "Content-Length: 0"), len(head)},
		{"body after the head", head + "\r\n\r\nabc", len(head)},
		{"bare LF ends the head", "GET / HTTP/1.1\nHost: a\n\nrest", len("GET / HTTP/1.1\nHost: a\n\n")},
		{"LF CRLF ends the head", "GET / HTTP/1.1\r\nHost: a\n\r\nrest", len("GET / HTTP/1.1\r\nHost: a\n\r\n")},
		{"CR CR is no end", "GET / HTTP/1.1\r\r\r\r", -1},
		{"a leading CRLF alone does not end the head", "\r\nGET / HTTP/1.1\r\n\r\n", len("\r\nGET / HTTP/1.1\r\n\r\n")},
		{"empty line first", "\r\n\r\nGET", 4},
	}
	for _, tc := range tests {
		if got := headEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("%s: headEnd(%q, 0) = %d, want %d", tc.name, tc.in, got, tc.want)
		}
	}
}

// TestHeadEndResume feeds heads in steps of every size, resuming each scan where
// the previous one stopped, and checks the end is found exactly when it arrives.
func TestHeadEndResume(t *testing.T) {
	inputs := []string{
		headBrowserRequest + "GET /next HTTP/1.1\r\n",
		headRequest("GET / HTTP/1.1", "Host: a") + "\r\n",
		"GET / HTTP/1.1\nHost: a\n\nrest",
		"GET / HTTP/1.1\r\nHost: a\n\r\nrest",
		"\r\n\r\n",
	}
	for _, in := range inputs {
		b := []byte(in)
		want := headEnd(b, 0)
		if want < 0 {
			t.Fatalf("headEnd(%q, 0) = -1, want a complete head", in)
		}
		for step := 1; step <= 9; step++ {
			from := 0
			for k := step; ; k += step {
				k = min(k, len(b))
				got := headEnd(b[:k], from)
				if k < want && got != -1 {
					t.Fatalf("step %d: headEnd(%q, %d) = %d, want -1", step, b[:k], from, got)
				}
				if k >= want {
					if got != want {
						t.Fatalf("step %d: headEnd(%q, %d) = %d, want %d", step, b[:k], from, got, want)
					}
					break
				}
				from = k
			}
		}
	}
}

func TestHeadAsciiEqualFold(t *testing.T) {
	tests := []struct {
		b, s string
		want bool
	}{
		{"chunked", "chunked", true},
		{"ChUnKeD", "chunked", true},
		{"chunke", "chunked", false},
		{"chunkedx", "chunked", false},
		{"", "", true},
		{"100-Continue", "100-continue", true},
		{"100\rcontinue", "100-continue", false}, // CR|0x20 is '-'
		{"KEEP-ALIVE", "keep-alive", true},
		{"keep\x0dalive", "keep-alive", false},
		{"@", "`", false}, // '@'|0x20 is '`'
		{"\xc3", "c", false},
	}
	for _, tc := range tests {
		if got := asciiEqualFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("asciiEqualFold(%q, %q) = %v, want %v", tc.b, tc.s, got, tc.want)
		}
	}
}

func TestHeadHasToken(t *testing.T) {
	tests := []struct {
		v, tok string
		want   bool
	}{
		{"close", "close", true},
		{"Close", "close", true},
		{" close ", "close", true},
		{"keep-alive, Upgrade", "upgrade", true},
		{"keep-alive,upgrade", "upgrade", true},
		{"keep-alive ,\tupgrade\t,", "upgrade", true},
		{",,close,,", "close", true},
		{"closed", "close", false},
		{"x-close", "close", false},
		{"clo se", "close", false},
		{"", "close", false},
		{",", "close", false},
		{"keep-alive", "close", false},
	}
	for _, tc := range tests {
		if got := hasToken([]byte(tc.v), tc.tok); got != tc.want {
			t.Errorf("hasToken(%q, %q) = %v, want %v", tc.v, tc.tok, got, tc.want)
		}
	}
}

func TestHeadErrorMessage(t *testing.T) {
	err := parseRequestHead([]byte(headRequest("GET / HTTP/1.1")), new(requestHead))
	const want = "http head rejected (400): missing Host field in an HTTP/1.1 request"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// headBenchRequest is a ~500-byte browser GET with cookies.
var headBenchRequest = headRequest("GET /catalog/shoes?size=42&color=blue HTTP/1.1",
	"Host: shop.example.com",
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"Accept-Language: en-US,en;q=0.5",
	"Accept-Encoding: gzip, deflate, br, zstd",
	"Referer: https://shop.example.com/",
	"Connection: keep-alive",
	"Cookie: SERVERID=app-02; session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; cart=3; theme=dark",
	"Upgrade-Insecure-Requests: 1",
	"Sec-Fetch-Dest: document",
	"Sec-Fetch-Mode: navigate",
	"Sec-Fetch-Site: same-origin",
	"Priority: u=0, i",
)

func BenchmarkParseRequestHead(b *testing.B) {
	in := []byte(headBenchRequest)
	var h requestHead
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := parseRequestHead(in, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponseHead(b *testing.B) {
	in := []byte(headBrowserResponse)
	var h responseHead
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := parseResponseHead(in, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHeadEnd(b *testing.B) {
	in := []byte(headBenchRequest)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if headEnd(in, 0) != len(in) {
			b.Fatal("headEnd")
		}
	}
}

// TestHeadBadValueByte checks the word-at-a-time scan against the byte loop for
// every byte value at every position of words and tails.
func TestHeadBadValueByte(t *testing.T) {
	for c := range 256 {
		for n := 1; n <= 19; n++ {
			for at := range n {
				v := []byte(strings.Repeat("a\xff", n)[:n])
				v[at] = byte(c)
				if got, want := headBadValueByte(v), headBadValueByteSlow(v); got != want {
					t.Fatalf("headBadValueByte(%q) = %d, want %d", v, got, want)
				}
			}
		}
	}
	for _, v := range []string{"", "\t\t\t\t\t\t\t\t\t", "a\tb\tc\td\te\tf\x7f", "abcdefgh\x00"} {
		if got, want := headBadValueByte([]byte(v)), headBadValueByteSlow([]byte(v)); got != want {
			t.Errorf("headBadValueByte(%q) = %d, want %d", v, got, want)
		}
	}
}

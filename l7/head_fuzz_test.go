package l7

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// headFuzzSeeds returns the inputs every head fuzz target starts from.
func headFuzzSeeds() []string {
	seeds := []string{headBrowserRequest, headBenchRequest, headBrowserResponse}
	for _, tc := range headRequestCases {
		seeds = append(seeds, tc.in)
	}
	for _, tc := range headResponseCases {
		seeds = append(seeds, tc.in)
	}
	return seeds
}

func FuzzParseRequestHead(f *testing.F) {
	for _, s := range headFuzzSeeds() {
		f.Add([]byte(s))
	}
	var h requestHead // reused across inputs, as the proxy reuses it
	f.Fuzz(func(t *testing.T, b []byte) {
		headCheckEnd(t, b)
		err := parseRequestHead(b, &h)
		if err != nil {
			var he *headError
			if !errors.As(err, &he) {
				t.Fatalf("error %v is not a *headError", err)
			}
			if !slices.Contains([]int{400, 431, 501, 505}, he.status) || he.reason == "" {
				t.Fatalf("error %v: status %d, reason %q", err, he.status, he.reason)
			}
			return
		}
		if n := headEnd(b, 0); n != len(b) {
			t.Fatalf("accepted a head of %d bytes, but headEnd = %d", len(b), n)
		}
		if !headIsToken(h.method) || !headIsTarget(h.target) && !h.slash {
			t.Fatalf("accepted method %q, target %q", h.method, h.target)
		}
		http10 := string(h.proto) == "HTTP/1.0"
		if _, status := headVersion(h.proto); status != 0 {
			t.Fatalf("accepted proto %q", h.proto)
		}
		if string(h.method) == "CONNECT" {
			t.Fatalf("accepted CONNECT")
		}
		if h.slash && len(h.target) > 0 && h.target[0] != '?' || !h.slash && h.target[0] != '/' && string(h.target) != "*" {
			t.Fatalf("accepted target %q (slash %v): not origin-form", h.target, h.slash)
		}
		if h.host != nil && !headValidHost(h.host) || h.host == nil && !http10 {
			t.Fatalf("accepted host %q in an %s request", h.host, h.proto)
		}
		hosts := headCheckFields(t, h.fields, h.contentLength, h.chunked)
		if hosts > 1 || hosts == 0 && !http10 {
			t.Fatalf("accepted %d Host fields in an %s request", hosts, h.proto)
		}
		if h.chunked && http10 {
			t.Fatalf("accepted chunked in an %s request", h.proto)
		}
		headCompareRequest(t, b, &h)
	})
}

func FuzzParseResponseHead(f *testing.F) {
	for _, s := range headFuzzSeeds() {
		f.Add([]byte(s))
	}
	var h responseHead
	f.Fuzz(func(t *testing.T, b []byte) {
		headCheckEnd(t, b)
		err := parseResponseHead(b, &h)
		if err != nil {
			var he *headError
			if !errors.As(err, &he) || he.status != 502 || he.reason == "" {
				t.Fatalf("error %v, want a *headError with status 502 and a reason", err)
			}
			return
		}
		if n := headEnd(b, 0); n != len(b) {
			t.Fatalf("accepted a head of %d bytes, but headEnd = %d", len(b), n)
		}
		if h.status < 100 || h.status > 599 {
			t.Fatalf("accepted status %d", h.status)
		}
		if headBadValueByte(h.reason) >= 0 {
			t.Fatalf("accepted reason %q", h.reason)
		}
		headCheckFields(t, h.fields, h.contentLength, h.chunked)
		if !h.chunked && h.contentLength < 0 && headHasField(h.fields, "transfer-encoding") && !h.close {
			t.Fatalf("a body that runs until close does not close")
		}
		headCompareResponse(t, b, &h)
	})
}

// headCheckFields checks the properties every accepted head has, and returns how
// many Host fields it holds.
func headCheckFields(t *testing.T, fields []field, contentLength int64, chunked bool) (hosts int) {
	t.Helper()
	if contentLength < -1 {
		t.Fatalf("contentLength = %d", contentLength)
	}
	if chunked && contentLength >= 0 {
		t.Fatalf("both chunked and contentLength %d", contentLength)
	}
	if len(fields) > maxFields {
		t.Fatalf("accepted %d fields", len(fields))
	}
	for _, f := range fields {
		if !headIsToken(f.name) {
			t.Fatalf("field name %q is not a token", f.name)
		}
		if bytes.ContainsAny(f.value, "\r\n\x00") || headBadValueByte(f.value) >= 0 {
			t.Fatalf("field %q has value %q", f.name, f.value)
		}
		if len(headTrimOWS(f.value)) != len(f.value) {
			t.Fatalf("field %q value %q keeps OWS", f.name, f.value)
		}
		if asciiEqualFold(f.name, "host") {
			hosts++
		}
		if asciiEqualFold(f.name, "content-length") {
			if n, ok := headContentLength(f.value); !ok || n != contentLength {
				t.Fatalf("Content-Length %q accepted as %d", f.value, contentLength)
			}
		}
	}
	return hosts
}

func headHasField(fields []field, name string) bool {
	for _, f := range fields {
		if asciiEqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// headCheckEnd checks that headEnd finds the same end however b arrives.
func headCheckEnd(t *testing.T, b []byte) {
	t.Helper()
	want := headEnd(b, 0)
	for _, step := range []int{1, 2, 3, 5} {
		from := 0
		got := -1
		for k := 0; k < len(b) && got < 0; {
			k = min(k+step, len(b))
			got = headEnd(b[:k], from)
			from = k
		}
		if got != want {
			t.Fatalf("headEnd in steps of %d = %d, want %d", step, got, want)
		}
	}
}

// headCompareRequest parses b with net/http too. When both accept it, they
// must agree on where the head ends and how the body is framed: a disagreement
// between two parsers is what request smuggling is made of.
func headCompareRequest(t *testing.T, b []byte, h *requestHead) {
	t.Helper()
	r := bytes.NewReader(b)
	br := bufio.NewReader(r)
	req, err := http.ReadRequest(br)
	if err != nil {
		return // net/http is stricter here (Host syntax, for one)
	}
	if rest := br.Buffered() + r.Len(); rest != 0 {
		t.Fatalf("net/http ends the head %d bytes before us", rest)
	}
	switch {
	case h.chunked:
		if !slices.Equal(req.TransferEncoding, []string{"chunked"}) {
			t.Fatalf("chunked, net/http says TransferEncoding %q", req.TransferEncoding)
		}
	case h.contentLength >= 0:
		if req.ContentLength != h.contentLength {
			t.Fatalf("contentLength %d, net/http says %d", h.contentLength, req.ContentLength)
		}
	default:
		if req.ContentLength != 0 || req.TransferEncoding != nil {
			t.Fatalf("no body, net/http says ContentLength %d, TransferEncoding %q", req.ContentLength, req.TransferEncoding)
		}
	}
	if req.Close != h.close {
		t.Fatalf("close %v, net/http says %v", h.close, req.Close)
	}
	// An absolute-form target is forwarded in origin-form, for the
	// authority it names.
	target, path := string(h.target), string(h.target)
	switch {
	case h.slash:
		target = "/" + target
	case target == "*" && req.RequestURI != "*":
		path = "" // absolute-form OPTIONS with an empty path
	}
	if req.Method != string(h.method) || req.RequestURI != target && !strings.HasSuffix(req.RequestURI, "://"+req.Host+path) {
		t.Fatalf("%q %q, net/http says %q %q", h.method, target, req.Method, req.RequestURI)
	}
	if req.Host != string(h.host) {
		t.Fatalf("host %q, net/http says %q", h.host, req.Host)
	}
}

// headCompareResponse is headCompareRequest for responses.
func headCompareResponse(t *testing.T, b []byte, h *responseHead) {
	t.Helper()
	r := bytes.NewReader(b)
	br := bufio.NewReader(r)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return
	}
	if rest := br.Buffered() + r.Len(); rest != 0 {
		t.Fatalf("net/http ends the head %d bytes before us", rest)
	}
	if resp.StatusCode != h.status {
		t.Fatalf("status %d, net/http says %d", h.status, resp.StatusCode)
	}
	if h.status < 200 || h.status == 204 || h.status == 304 {
		return // no body whatever the fields say
	}
	switch {
	case h.chunked:
		if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
			t.Fatalf("chunked, net/http says TransferEncoding %q", resp.TransferEncoding)
		}
	case h.contentLength >= 0:
		if resp.ContentLength != h.contentLength {
			t.Fatalf("contentLength %d, net/http says %d", h.contentLength, resp.ContentLength)
		}
	default:
		if resp.ContentLength != -1 {
			t.Fatalf("body until close, net/http says ContentLength %d", resp.ContentLength)
		}
	}
}

// TestHeadAgreesWithNetHTTP runs the fuzz targets' comparison with net/http on
// the accepted table cases, so the comparison is known to bite.
func TestHeadAgreesWithNetHTTP(t *testing.T) {
	var h requestHead
	for _, tc := range headRequestCases {
		if tc.status == 0 {
			if err := parseRequestHead([]byte(tc.in), &h); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			headCompareRequest(t, []byte(tc.in), &h)
		}
	}
	var r responseHead
	for _, tc := range headResponseCases {
		if tc.status == 0 {
			if err := parseResponseHead([]byte(tc.in), &r); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			headCompareResponse(t, []byte(tc.in), &r)
		}
	}
}

package l7

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// memConn is an in-memory deadlineReader for body tests.
type memConn struct{ io.Reader }

func (memConn) SetReadDeadline(time.Time) error { return nil }

func readerOf(s string, size int) *connReader {
	var r connReader
	r.reset(memConn{strings.NewReader(s)}, make([]byte, size), nil)
	return &r
}

func TestCopyChunked(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
		out      string // what is forwarded, when valid: "" means in unchanged
		data     string // the unwrapped data, when valid
	}{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", nil, "", "hello"},
		{"trailers", "5\r\nhello\r\n0\r\nX-T: 1\r\nY: \r\n\r\n", nil, "", "hello"},
		{"upper-case hex and leading zeros", "00A\r\n0123456789\r\n000\r\n\r\n", nil, "a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},

		// Extensions (RFC 9112 7.1.1) are checked, then dropped.
		{"extension", "5;a=b\r\nhello\r\n0\r\n\r\n", nil, "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"extensions with BWS", "5 ; a = b ;c\t;d=\"x y\\\"z\"\r\nhello\r\n6 ; c\r\n world\r\n0;last\r\nX-T: 1\r\n\r\n", nil,
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", "hello world"},
		{"quoted extension with obs-text", "5;a=\"\xe9\t\\\x80\"\r\nhello\r\n0\r\n\r\n", nil, "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"extension without name", "5;\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"extension without value", "5;a=\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"extension name not a token", "5;a@b\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"extension value not a token", "5;a=b/c\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"unclosed quoted extension", "5;a=\"b\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"control byte in quoted extension", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"escaped control byte in quoted extension", "5;a=\"\\\x7f\"\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"bytes after quoted extension", "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"control byte in extension", "5;\x01\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"no semicolon", "5 a\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		// Trailing whitespace is tolerated, as HAProxy and nginx do; the
		// size line is written afresh.
		{"whitespace after size", "5 \r\nhello\r\n0\t\r\n\r\n", nil, "5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"whitespace after extension", "5;a \r\nhello\r\n0\r\n\r\n", nil, "5\r\nhello\r\n0\r\n\r\n", "hello"},

		{"bad size", "zz\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"hex prefix", "0x5\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"empty size", "\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"signed size", "+5\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"size overflow", "1000000000000000\r\n", errBadChunk, "", ""},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"bad size after the first chunk", "5\r\nhello\r\nzz\r\n", errBadChunk, "", ""},
		{"0x0 after the first chunk", "5\r\nhello\r\n0x0\r\n\r\n", errBadChunk, "", ""},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
		{"lone CR after data", "5\r\nhello\r0\r\n\r\n", errBadChunk, "", ""},
		{"lone LF after data", "5\r\nhello\n0\r\n\r\n", errBadChunk, "", ""},
		{"bad trailer", "0\r\nno colon\r\n\r\n", errBadChunk, "", ""},
		{"space before trailer colon", "0\r\nX-T : 1\r\n\r\n", errBadChunk, "", ""},
		{"folded trailer", "0\r\nX-T: 1\r\n 2\r\n\r\n", errBadChunk, "", ""},
		{"bare LF ends trailers", "0\r\nX-T: 1\r\n\n", errBadChunk, "", ""},
		{"100 trailers", "0\r\n" + strings.Repeat("X-T: 1\r\n", maxTrailers) + "\r\n", nil, "", ""},
		{"101 trailers", "0\r\n" + strings.Repeat("X-T: 1\r\n", maxTrailers+1) + "\r\n", errBadChunk, "", ""},
		{"cut in data", "5\r\nhel", io.ErrUnexpectedEOF, "", ""},
		{"cut before last chunk", "5\r\nhello\r\n", io.ErrUnexpectedEOF, "", ""},
		{"long size line", strings.Repeat("0", 5000) + "5\r\nhello\r\n0\r\n\r\n", errBadChunk, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var framed, data bytes.Buffer
			err := copyChunked(&framed, readerOf(tt.in, 8192), true)
			if !errors.Is(err, tt.want) {
				t.Fatalf("copyChunked = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			want := tt.out
			if want == "" {
				want = tt.in
			}
			if framed.String() != want {
				t.Errorf("forwarded %q, want %q", framed.String(), want)
			}
			if err := copyChunked(&data, readerOf(tt.in, 8192), false); err != nil || data.String() != tt.data {
				t.Errorf("unwrapped %q, %v; want %q", data.String(), err, tt.data)
			}
		})
	}
}

// TestCopyUntilEOF covers a response body delimited by the backend's close:
// relayed as it comes, or re-framed as chunks ending with the last chunk.
// A body cut by an error gets no last chunk, so it cannot pass for whole.
func TestCopyUntilEOF(t *testing.T) {
	body := strings.Repeat("until close ", 100)
	var plain, chunked bytes.Buffer
	if err := copyUntilEOF(&plain, readerOf(body, 64), false); err != nil || plain.String() != body {
		t.Fatalf("plain copy = %.40q, %v; want the body", plain.String(), err)
	}
	if err := copyUntilEOF(&chunked, readerOf(body, 64), true); err != nil {
		t.Fatalf("chunked copy: %v", err)
	}
	if !strings.HasPrefix(chunked.String(), "40\r\n") || !strings.HasSuffix(chunked.String(), "\r\n0\r\n\r\n") {
		t.Errorf("re-framed body %.40q...%q, want 64-byte chunks and the last chunk", chunked.String(), chunked.String()[chunked.Len()-10:])
	}
	var data bytes.Buffer
	if err := copyChunked(&data, readerOf(chunked.String(), 8192), false); err != nil || data.String() != body {
		t.Errorf("re-framed body reads back as %.40q, %v; want the body", data.String(), err)
	}

	var cut bytes.Buffer
	r := readerOf("", 64)
	r.rd = memConn{io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(io.ErrUnexpectedEOF))}
	if err := copyUntilEOF(&cut, r, true); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut body: %v, want the read error", err)
	}
	if got := cut.String(); got != "7\r\npartial\r\n" {
		t.Errorf("cut body forwarded as %q, want its data without a last chunk", got)
	}
}

func TestCopyFixedLeavesTheRest(t *testing.T) {
	r := readerOf("helloGET / HTTP/1.1\r\n", 64)
	var out bytes.Buffer
	if err := copyFixed(&out, r, 5); err != nil || out.String() != "hello" {
		t.Fatalf("copyFixed = %q, %v", out.String(), err)
	}
	if got := string(r.buf[r.r:r.w]); !strings.HasPrefix("GET / HTTP/1.1\r\n", got) {
		t.Errorf("left in the buffer %q, want the next request", got)
	}
	if err := copyFixed(io.Discard, readerOf("abc", 64), 5); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body: %v, want unexpected EOF", err)
	}
}

// FuzzChunkedBody feeds arbitrary bytes to the chunked body copier: it must
// never panic, and whatever it accepts it forwards as a chunked body that
// carries the same data and that it accepts again unchanged: lbctl's own
// framing, with nothing of the input's left to be read two ways.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n", "zz\r\n", "\r\n",
		"ffffffffffffffffff\r\n", "5\nhello", "0\r\n\r\n", "3\r\nabc\r\n0\r\nbad\r\n\r\n",
		"00A ; a = \"b\\\"c\"\r\n0123456789\r\n0\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		if err := copyChunked(&out, readerOf(in, 4096), true); err != nil {
			return
		}
		var again, data, dataAgain bytes.Buffer
		if err := copyChunked(&again, readerOf(out.String(), 4096), true); err != nil || again.String() != out.String() {
			t.Errorf("accepted %q, forwarded %q, which forwards as %q, %v", in, out.String(), again.String(), err)
		}
		copyChunked(&data, readerOf(in, 4096), false)
		copyChunked(&dataAgain, readerOf(out.String(), 4096), false)
		if data.String() != dataAgain.String() {
			t.Errorf("accepted %q carries %q, forwarded %q carries %q", in, data.String(), out.String(), dataAgain.String())
		}
	})
}

func TestReaderGrowsForALargeHeadAndReleasesAfter(t *testing.T) {
	pool := &sync.Pool{New: func() any { b := make([]byte, 1024); return &b }}
	big := "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 300) + "\r\n\r\n"
	next := "GET /next HTTP/1.1\r\n\r\n"
	var r connReader
	small := make([]byte, 64)
	r.reset(memConn{strings.NewReader(big + next)}, small, pool)
	head, _, err := r.readHead()
	if err != nil || string(head) != big {
		t.Fatalf("readHead = %q, %v; want the large head", head, err)
	}
	if r.large == nil {
		t.Fatal("the reader did not move to a large buffer")
	}
	r.release()
	if r.large != nil || &r.buf[0] != &small[0] {
		t.Fatal("release did not return to the small buffer")
	}
	if got, _, err := r.readHead(); err != nil || string(got) != next {
		t.Errorf("after release readHead = %q, %v; want the pipelined request", got, err)
	}

	// A head larger than the large buffer is refused.
	r.reset(memConn{strings.NewReader("GET / HTTP/1.1\r\nX: " + strings.Repeat("x", 2000) + "\r\n\r\n")}, small, pool)
	if _, _, err := r.readHead(); !errors.Is(err, errHeadTooLarge) {
		t.Errorf("oversized head: %v, want errHeadTooLarge", err)
	}
}

func TestGrowKeepsOffsetsAndTheSmallBuffer(t *testing.T) {
	pool := &sync.Pool{New: func() any { b := make([]byte, 256); return &b }}
	small := make([]byte, 16)
	var r connReader
	r.reset(memConn{strings.NewReader("0123456789abcdefMORE")}, small, pool)
	if err := r.fill(); err != nil {
		t.Fatal(err)
	}
	r.r = 10 // as if a head of 10 bytes had been parsed from small
	headBefore := string(small[:10])
	if !r.grow() {
		t.Fatal("grow refused")
	}
	if err := r.fill(); err != nil {
		t.Fatal(err)
	}
	if string(small[:10]) != headBefore || string(r.buf[r.r:r.w]) != "abcdefMORE" {
		t.Errorf("after grow and fill: small %q, unread %q", small[:10], r.buf[r.r:r.w])
	}
}

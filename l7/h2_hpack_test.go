package l7

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// hpackStaticNames are the names of the static table (RFC 7541 Appendix
// A), each once.
var hpackStaticNames = []string{
	":authority", ":method", ":path", ":scheme", ":status", "accept-charset",
	"accept-encoding", "accept-language", "accept-ranges", "accept",
	"access-control-allow-origin", "age", "allow", "authorization",
	"cache-control", "content-disposition", "content-encoding",
	"content-language", "content-length", "content-location", "content-range",
	"content-type", "cookie", "date", "etag", "expect", "expires", "from", "host",
	"if-match", "if-modified-since", "if-none-match", "if-range",
	"if-unmodified-since", "last-modified", "link", "location", "max-forwards",
	"proxy-authenticate", "proxy-authorization", "range", "referer", "refresh",
	"retry-after", "server", "set-cookie", "strict-transport-security",
	"transfer-encoding", "user-agent", "vary", "via", "www-authenticate",
}

// TestHpackStaticNamesAreTheTables: h2StaticName gives a name an index
// when golang.org/x/net/http2/hpack's encoder finds it in the table, 0
// when not, and the entry at that index has that name (a name with
// several entries may be named by any of them).
func TestHpackStaticNamesAreTheTables(t *testing.T) {
	var buf bytes.Buffer
	for _, name := range append(hpackStaticNames, "x-backend", "content", "servers", "") {
		buf.Reset()
		enc := hpack.NewEncoder(&buf)
		// A value no entry has: the encoder names the field by its
		// name's index, as a literal with incremental indexing (6.2.1).
		enc.WriteField(hpack.HeaderField{Name: name, Value: "\x7f"})
		b := buf.Bytes()
		if b[0]&0xc0 != 0x40 {
			t.Fatalf("%q: encoder wrote %x, not a literal with incremental indexing", name, b)
		}
		inTable := b[0]&0x3f != 0
		got := h2StaticName([]byte(name))
		if (got != 0) != inTable {
			t.Errorf("h2StaticName(%q) = %d; in the table: %v", name, got, inTable)
			continue
		}
		if got == 0 {
			continue
		}
		field := appendHpackString(appendHpackInt(nil, 0, 4, uint64(got)), []byte("v"))
		fields, err := hpack.NewDecoder(4096, nil).DecodeFull(field)
		if err != nil || len(fields) != 1 || fields[0].Name != name {
			t.Errorf("h2StaticName(%q) = %d, which decodes to %v (%v)", name, got, fields, err)
		}
	}
}

// TestHpackFieldsDecode: what appendH2Status and appendH2Field write
// decodes, with a size update before it, to the status and to each field
// with its name lower-cased, for names in the table and not, short and
// long values and names, and every representation is a literal that
// leaves the decoder's dynamic table alone.
func TestHpackFieldsDecode(t *testing.T) {
	names := append([]string{"X-Backend", "x-a", strings.Repeat("Long-Name-", 4), strings.Repeat("n", 200)}, hpackStaticNames...)
	values := []string{"", "v", strings.Repeat("a", 126), strings.Repeat("b", 127), strings.Repeat("c", 128), strings.Repeat("d", 20000)}
	for status := 100; status <= 599; status++ {
		block := appendH2Status([]byte{h2SizeUpdate}, status)
		var want []hpack.HeaderField
		want = append(want, hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
		n := status % len(names)
		name, value := names[n], values[status%len(values)]
		if status%2 == 0 {
			name = strings.ToUpper(name)
		}
		block = appendH2Field(block, []byte(name), []byte(value))
		want = append(want, hpack.HeaderField{Name: strings.ToLower(name), Value: value})

		dec := hpack.NewDecoder(4096, nil)
		dec.SetMaxStringLength(1 << 20)
		got, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatalf("status %d with %q: %v\n%x", status, name, err, block)
		}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("status %d with %q decoded to %v, want %v", status, name, got, want)
		}
		// Without the size update, which empties a decoder's table, the
		// block leaves a decoder's dynamic table empty: its first entry,
		// index 62 (RFC 7541 2.3.3), names nothing.
		fresh := hpack.NewDecoder(4096, nil)
		fresh.SetMaxStringLength(1 << 20)
		if _, err := fresh.DecodeFull(block[1:]); err != nil {
			t.Fatalf("status %d with %q, without the size update: %v", status, name, err)
		}
		if got, err := fresh.DecodeFull([]byte{0x80 | 62}); err == nil {
			t.Fatalf("status %d with %q left %v in the decoder's dynamic table", status, name, got)
		}
		if s := block[1]; s&0x80 != 0 && s&0x7f > 14 || s&0x80 == 0 && s != 8 {
			t.Fatalf("status %d written as %#x..., neither a static :status entry nor a literal without indexing", status, s)
		}
		field := appendH2Field(nil, []byte(name), []byte(value))
		if field[0]&0xf0 != 0 {
			t.Fatalf("%q written as %#x..., not a literal without indexing", name, field[0])
		}
	}
}

// TestH2TableSizeUpdateIsOwedAfterSettings: a client that sets
// SETTINGS_HEADER_TABLE_SIZE gets a dynamic table size update at the start
// of the first header block after lbctl's ACK, as RFC 7541 4.2 says, and
// only there; a client that does not gets none.
func TestH2TableSizeUpdateIsOwedAfterSettings(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	var seen h2Seen
	for _, id := range []uint32{1, 3} {
		if err := h.headers(id, "/", true); err != nil {
			t.Fatal(err)
		}
		h.readUntil(t, &seen, "a response", func() bool { _, ok := seen.ended[id]; return ok })
	}
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{5, 7} {
		if err := h.headers(id, "/", true); err != nil {
			t.Fatal(err)
		}
		h.readUntil(t, &seen, "a response", func() bool { _, ok := seen.ended[id]; return ok })
	}
	for id, update := range map[uint32]bool{1: false, 3: false, 5: true, 7: false} {
		if got := seen.blocks[id][0] == h2SizeUpdate; got != update || seen.status[id] != "200" {
			t.Errorf("stream %d: status %q, block % x...: size update %v, want %v",
				id, seen.status[id], seen.blocks[id][:min(4, len(seen.blocks[id]))], got, update)
		}
	}
}

// BenchmarkH2HeadEncode encodes a backend's typical response head, with a
// persistence cookie, as a stream does for each answer.
func BenchmarkH2HeadEncode(b *testing.B) {
	fields := [][2][]byte{
		{[]byte("Server"), []byte("nginx/1.22.1")},
		{[]byte("Date"), []byte("Mon, 30 Nov 2026 21:40:01 GMT")},
		{[]byte("Content-Type"), []byte("text/plain")},
		{[]byte("Content-Length"), []byte("18")},
		{[]byte("Set-Cookie"), []byte("SERVERID=app-01; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax")},
		{[]byte("X-Request-Id"), []byte("8f14e45fceea167a5a36dedd4bea2543")},
	}
	var block []byte
	b.ReportAllocs()
	for b.Loop() {
		block = appendH2Status(append(block[:0], h2SizeUpdate), 200)
		for _, f := range fields {
			block = appendH2Field(block, f[0], f[1])
		}
	}
	b.SetBytes(int64(len(block)))
}

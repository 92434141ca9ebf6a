package l7

import (
	"bytes"
	"strings"
	"testing"
)

// cookieRefPairs splits a Cookie header the simple way, for checking
// findCookie and stripCookie against: on ';', without surrounding spaces
// and tabs, empty elements dropped.
func cookieRefPairs(header string) []string {
	var pairs []string
	for _, p := range strings.Split(header, ";") {
		if p = strings.Trim(p, " \t"); p != "" {
			pairs = append(pairs, p)
		}
	}
	return pairs
}

// cookieRefName returns the name of a pair, and false for a pair without '='.
func cookieRefName(pair string) (string, bool) {
	name, _, found := strings.Cut(pair, "=")
	return strings.TrimRight(name, " \t"), found
}

// cookieRefValue returns the value of a pair named name as findCookie should
// read it, and whether it is well-formed.
func cookieRefValue(pair string) (string, bool) {
	_, v, _ := strings.Cut(pair, "=")
	v = strings.TrimLeft(v, " \t")
	if len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) {
		v = v[1 : len(v)-1]
	}
	if len(v) > 256 {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`",;\`, c) >= 0 {
			return "", false
		}
	}
	return v, true
}

func FuzzFindCookie(f *testing.F) {
	for _, tt := range cookieFindCases {
		f.Add([]byte(tt.header), "SERVERID")
	}
	for _, tt := range cookieStripCases {
		f.Add([]byte(tt.header), "SERVERID")
	}
	f.Add([]byte("=x; =; a=b"), "")
	f.Add([]byte("a=1; a=2"), "a")
	f.Add([]byte("SERVERID=app-01"), "SERVER ID")
	f.Add([]byte("SERVERID=app-01"), "SERVERID;")
	f.Add([]byte("\tSERVERID\t=\t\"app-01\"\t"), "SERVERID")
	f.Add([]byte("SERVERID=\x00; SERVERID=\r\n"), "SERVERID")

	f.Fuzz(func(t *testing.T, header []byte, name string) {
		value, ok := findCookie(header, name)

		// The reference reading: the first well-formed pair named name.
		var pairs, kept []string
		wantValue, wantOK, named := "", false, false
		for _, p := range cookieRefPairs(string(header)) {
			n, isPair := cookieRefName(p)
			if !isPair || n != name {
				kept = append(kept, p)
				continue
			}
			named = true
			if v, good := cookieRefValue(p); good && !wantOK {
				wantValue, wantOK = v, true
			}
			pairs = append(pairs, p)
		}
		if ok != wantOK || string(value) != wantValue {
			t.Fatalf("findCookie(%q, %q): got %q, %v; want %q, %v", header, name, value, ok, wantValue, wantOK)
		}
		if !ok && value != nil {
			t.Fatalf("findCookie(%q, %q): got %q with ok false, want nil", header, name, value)
		}
		if len(value) > 256 {
			t.Fatalf("findCookie(%q, %q): value of %d bytes", header, name, len(value))
		}
		for _, c := range value {
			if c <= ' ' || c >= 0x7f || c == ';' || c == '"' || c == ',' || c == '\\' {
				t.Fatalf("findCookie(%q, %q): value %q holds byte %#x", header, name, value, c)
			}
		}

		dst := []byte("Cookie: ")
		out, removed := stripCookie(dst, header, name)
		if removed != named {
			t.Fatalf("stripCookie(%q, %q): removed %v, want %v (pairs named so: %q)", header, name, removed, named, pairs)
		}
		if ok && !removed {
			t.Fatalf("stripCookie(%q, %q) removed nothing, but findCookie found %q", header, name, value)
		}
		rest, found := bytes.CutPrefix(out, []byte("Cookie: "))
		if !found {
			t.Fatalf("stripCookie(%q, %q): overwrote dst: %q", header, name, out)
		}
		if !removed {
			if len(rest) != 0 {
				t.Fatalf("stripCookie(%q, %q): removed nothing but appended %q", header, name, rest)
			}
			return
		}
		if got, want := string(rest), strings.Join(kept, "; "); got != want {
			t.Fatalf("stripCookie(%q, %q): got %q, want %q", header, name, got, want)
		}
		for _, p := range cookieRefPairs(string(rest)) {
			if n, isPair := cookieRefName(p); isPair && n == name {
				t.Fatalf("stripCookie(%q, %q): output %q still holds %q", header, name, rest, p)
			}
		}
		if v, ok := findCookie(rest, name); ok {
			t.Fatalf("stripCookie(%q, %q): findCookie still finds %q in %q", header, name, v, rest)
		}
	})
}

func FuzzCookieValue(f *testing.F) {
	pool := cookieTestPool("app-01", "app-02", "app-03")
	plain := newCookieCodec(cookieTestOptions(), pool)
	opts := cookieTestOptions()
	opts.Secrets = []string{"new", "old"}
	tokens := newCookieCodec(opts, pool)
	opts.Secrets = []string{"old"}
	old := newCookieCodec(opts, pool)

	for _, b := range pool {
		f.Add([]byte(b.ID))
		f.Add([]byte(tokens.value(b)))
		f.Add([]byte(old.value(b)))
		f.Add([]byte(cookieTestToken("other", b.ID)))
		v := []byte(tokens.value(b))
		v[21] ^= 1 // the spare bits of the last character
		f.Add(v)
	}
	for _, tt := range cookieFindCases {
		f.Add([]byte(tt.value))
	}
	f.Add([]byte{})
	f.Add([]byte("app-01\x00"))
	f.Add(bytes.Repeat([]byte{0xff}, 22))

	f.Fuzz(func(t *testing.T, value []byte) {
		if b := plain.backendFor(value); b != nil {
			if string(value) != b.ID || (b != pool[0] && b != pool[1] && b != pool[2]) {
				t.Fatalf("plain backendFor(%q): got %s (%p), want nil or the pool backend of that id", value, b.ID, b)
			}
		}
		if b := tokens.backendFor(value); b != nil {
			if b != pool[0] && b != pool[1] && b != pool[2] {
				t.Fatalf("token backendFor(%q): got %p, not a backend of the pool", value, b)
			}
			if string(value) != tokens.value(b) && string(value) != old.value(b) {
				t.Fatalf("token backendFor(%q): got %s, but the value is neither of its tokens", value, b.ID)
			}
		}
		// Through the header, as the proxy reads it.
		header := append([]byte("a=b; SERVERID="), value...)
		if v, ok := findCookie(header, "SERVERID"); ok {
			if b := tokens.backendFor(v); b != nil && string(v) != tokens.value(b) && string(v) != old.value(b) {
				t.Fatalf("token backendFor(findCookie(%q)): got %s for %q", header, b.ID, v)
			}
		}
	})
}

package l7

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// cookieTestPool returns backends with the given ids, addressed on the
// documentation network.
func cookieTestPool(ids ...string) []*backend.Backend {
	pool := make([]*backend.Backend, len(ids))
	for i, id := range ids {
		pool[i] = backend.New(id, fmt.Sprintf("192.0.2.%d:80", i+1), 1)
	}
	return pool
}

// cookieTestOptions returns the config defaults of the [cookie] table.
func cookieTestOptions() CookieOptions {
	return CookieOptions{
		Name:     "SERVERID",
		MaxAge:   time.Hour,
		Path:     "/",
		HTTPOnly: true,
		SameSite: "lax",
	}
}

func TestCookieAppendSetCookie(t *testing.T) {
	// A zone other than UTC, so that the GMT conversion shows.
	now := time.Date(2026, time.March, 4, 23, 30, 7, 500_000_000, time.FixedZone("UTC+5", 5*3600))
	pool := cookieTestPool("app-01", "app-02")

	type want struct {
		maxAge   int       // net/http's MaxAge: 0 means absent
		expires  time.Time // zero means absent
		path     string
		domain   string
		secure   bool
		httpOnly bool
		sameSite http.SameSite
		order    []string // attribute names as written
	}
	defaultExpires := time.Date(2026, time.March, 4, 19, 30, 7, 0, time.UTC)
	tests := []struct {
		name string
		edit func(*CookieOptions)
		want want
	}{
		{"defaults", func(*CookieOptions) {}, want{
			maxAge: 3600, expires: defaultExpires, path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"session cookie", func(o *CookieOptions) { o.MaxAge = 0 }, want{
			path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "HttpOnly", "SameSite"},
		}},
		{"negative max age is a session cookie", func(o *CookieOptions) { o.MaxAge = -time.Hour }, want{
			path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "HttpOnly", "SameSite"},
		}},
		{"sub-second max age rounds up", func(o *CookieOptions) { o.MaxAge = 1500 * time.Millisecond }, want{
			maxAge: 2, expires: time.Date(2026, time.March, 4, 18, 30, 9, 0, time.UTC), path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"long max age", func(o *CookieOptions) { o.MaxAge = 400 * 24 * time.Hour }, want{
			maxAge: 400 * 24 * 3600, expires: time.Date(2027, time.April, 8, 18, 30, 7, 0, time.UTC), path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"domain", func(o *CookieOptions) { o.Domain = ".example.com" }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", domain: ".example.com", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Domain", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"secure", func(o *CookieOptions) { o.Secure = true }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", secure: true, httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "Secure", "HttpOnly", "SameSite"},
		}},
		{"same_site none", func(o *CookieOptions) { o.SameSite, o.Secure = "none", true }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", secure: true, httpOnly: true, sameSite: http.SameSiteNoneMode,
			order: []string{"Path", "Max-Age", "Expires", "Secure", "HttpOnly", "SameSite"},
		}},
		{"same_site strict", func(o *CookieOptions) { o.SameSite = "strict" }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", httpOnly: true, sameSite: http.SameSiteStrictMode,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"same_site lax", func(o *CookieOptions) { o.SameSite = "lax" }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"same_site omitted", func(o *CookieOptions) { o.SameSite = "" }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", httpOnly: true,
			order: []string{"Path", "Max-Age", "Expires", "HttpOnly"},
		}},
		{"http_only false", func(o *CookieOptions) { o.HTTPOnly = false }, want{
			maxAge: 3600, expires: defaultExpires, path: "/", sameSite: http.SameSiteLaxMode,
			order: []string{"Path", "Max-Age", "Expires", "SameSite"},
		}},
		{"path omitted", func(o *CookieOptions) { o.Path = "" }, want{
			maxAge: 3600, expires: defaultExpires, httpOnly: true, sameSite: http.SameSiteLaxMode,
			order: []string{"Max-Age", "Expires", "HttpOnly", "SameSite"},
		}},
		{"everything", func(o *CookieOptions) {
			o.Name, o.Path, o.Domain, o.Secure, o.SameSite = "lb", "/app", "example.com", true, "none"
		}, want{
			maxAge: 3600, expires: defaultExpires, path: "/app", domain: "example.com", secure: true, httpOnly: true, sameSite: http.SameSiteNoneMode,
			order: []string{"Path", "Domain", "Max-Age", "Expires", "Secure", "HttpOnly", "SameSite"},
		}},
		{"nothing", func(o *CookieOptions) {
			*o = CookieOptions{Name: "SERVERID"}
		}, want{order: []string{}}},
	}
	for _, tt := range tests {
		for _, secrets := range [][]string{nil, {"k1"}} {
			t.Run(fmt.Sprintf("%s/secrets=%d", tt.name, len(secrets)), func(t *testing.T) {
				opts := cookieTestOptions()
				tt.edit(&opts)
				opts.Secrets = secrets
				c := newCookieCodec(opts, pool)
				for _, b := range pool {
					line := string(c.appendSetCookie([]byte("HTTP/1.1 200 OK\r\n"), b, now))
					line, ok := strings.CutPrefix(line, "HTTP/1.1 200 OK\r\n")
					if !ok {
						t.Fatalf("appendSetCookie overwrote dst: %q", line)
					}
					cookieCheckSetCookie(t, line, opts.Name, c.value(b), tt.want.maxAge, tt.want.expires,
						tt.want.path, tt.want.domain, tt.want.secure, tt.want.httpOnly, tt.want.sameSite, tt.want.order)
				}
			})
		}
	}
}

func cookieCheckSetCookie(t *testing.T, line, name, value string, maxAge int, expires time.Time,
	path, domain string, secure, httpOnly bool, sameSite http.SameSite, order []string) {
	t.Helper()
	body, ok := strings.CutPrefix(line, "Set-Cookie: ")
	if !ok {
		t.Fatalf("line %q does not start with %q", line, "Set-Cookie: ")
	}
	body, ok = strings.CutSuffix(body, "\r\n")
	if !ok || strings.ContainsAny(body, "\r\n") {
		t.Fatalf("line %q is not one line ending with CRLF", line)
	}
	var gotOrder []string
	for _, attr := range strings.Split(body, "; ")[1:] {
		n, _, _ := strings.Cut(attr, "=")
		gotOrder = append(gotOrder, n)
	}
	if strings.Join(gotOrder, ",") != strings.Join(order, ",") {
		t.Errorf("attributes %q: got order %v, want %v", body, gotOrder, order)
	}
	if strings.Contains(body, "Expires=") && !strings.HasSuffix(strings.SplitN(strings.SplitN(body, "Expires=", 2)[1], ";", 2)[0], " GMT") {
		t.Errorf("Expires in %q is not in GMT", body)
	}

	ck, err := http.ParseSetCookie(body)
	if err != nil {
		t.Fatalf("http.ParseSetCookie(%q): %v", body, err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"Name", ck.Name, name},
		{"Value", ck.Value, value},
		{"Path", ck.Path, path},
		{"Domain", ck.Domain, domain},
		{"MaxAge", ck.MaxAge, maxAge},
		{"Secure", ck.Secure, secure},
		{"HttpOnly", ck.HttpOnly, httpOnly},
		{"SameSite", ck.SameSite, sameSite},
		{"Unparsed", len(ck.Unparsed), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%q: %s: got %v, want %v", body, c.what, c.got, c.want)
		}
	}
	if !ck.Expires.Equal(expires) {
		t.Errorf("%q: Expires: got %v, want %v", body, ck.Expires, expires)
	}
}

func TestCookieAppendSetCookieExactLine(t *testing.T) {
	c := newCookieCodec(cookieTestOptions(), cookieTestPool("app-01"))
	now := time.Date(1994, time.November, 6, 7, 49, 37, 0, time.UTC)
	got := string(c.appendSetCookie(nil, c.backendFor([]byte("app-01")), now))
	want := "Set-Cookie: SERVERID=app-01; Path=/; Max-Age=3600; Expires=Sun, 06 Nov 1994 08:49:37 GMT; HttpOnly; SameSite=Lax\r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCookieUnknownBackendGetsNoCookie(t *testing.T) {
	pool := cookieTestPool("app-01", "bad id", "bad;id", "", strings.Repeat("x", 257))
	stranger := backend.New("app-99", "192.0.2.99:80", 1)
	now := time.Now()
	tests := []struct {
		name    string
		secrets []string
		b       *backend.Backend
		want    string
	}{
		{"plain, not in pool", nil, stranger, ""},
		{"token, not in pool", []string{"k"}, stranger, ""},
		{"plain, id with a space", nil, pool[1], ""},
		{"plain, id with ';'", nil, pool[2], ""},
		{"plain, empty id", nil, pool[3], ""},
		{"plain, id over 256 bytes", nil, pool[4], ""},
		{"token, id with ';'", []string{"k"}, pool[2], cookieTestToken("k", "bad;id")},
		{"same id, other *Backend", nil, backend.New("app-01", "198.51.100.1:80", 1), "app-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := cookieTestOptions()
			opts.Secrets = tt.secrets
			c := newCookieCodec(opts, pool)
			if got := c.value(tt.b); got != tt.want {
				t.Errorf("value: got %q, want %q", got, tt.want)
			}
			line := c.appendSetCookie([]byte("x"), tt.b, now)
			if tt.want == "" && string(line) != "x" {
				t.Errorf("appendSetCookie: got %q, want nothing appended", line)
			}
			if tt.want != "" && !bytes.HasPrefix(line, []byte("xSet-Cookie: SERVERID="+tt.want+";")) {
				t.Errorf("appendSetCookie: got %q, want value %q", line, tt.want)
			}
		})
	}
}

func TestCookieCodecRejectsUnsafeOptions(t *testing.T) {
	tests := []struct {
		name string
		edit func(*CookieOptions)
	}{
		{"empty name", func(o *CookieOptions) { o.Name = "" }},
		{"name with space", func(o *CookieOptions) { o.Name = "SERVER ID" }},
		{"name with '='", func(o *CookieOptions) { o.Name = "A=B" }},
		{"path with ';'", func(o *CookieOptions) { o.Path = "/; Domain=evil.example" }},
		{"path with CRLF", func(o *CookieOptions) { o.Path = "/\r\nX-Evil: 1" }},
		{"domain with CRLF", func(o *CookieOptions) { o.Domain = "a.example\r\n" }},
		{"unknown same_site", func(o *CookieOptions) { o.SameSite = "sometimes" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := cookieTestOptions()
			tt.edit(&opts)
			defer func() {
				if recover() == nil {
					t.Errorf("newCookieCodec(%+v) did not panic", opts)
				}
			}()
			newCookieCodec(opts, cookieTestPool("app-01"))
		})
	}
}

func TestCookiePlainRoundTrip(t *testing.T) {
	pool := cookieTestPool("app-01", "app-02", "app.03_x")
	c := newCookieCodec(cookieTestOptions(), pool)
	for _, b := range pool {
		t.Run(b.ID, func(t *testing.T) {
			if got := c.value(b); got != b.ID {
				t.Errorf("value: got %q, want the id %q", got, b.ID)
			}
			if got := c.backendFor([]byte(c.value(b))); got != b {
				t.Errorf("backendFor(value): got %v, want %s", got, b.ID)
			}
		})
	}
	for _, v := range []string{"", "app-99", "APP-01", "app-01 ", "app-0", "app-011", cookieTestToken("k", "app-01")} {
		t.Run("unknown "+v, func(t *testing.T) {
			if got := c.backendFor([]byte(v)); got != nil {
				t.Errorf("backendFor(%q): got %s, want nil", v, got.ID)
			}
		})
	}
}

func TestCookieDuplicateIDsNameTheFirst(t *testing.T) {
	pool := cookieTestPool("app-01", "app-01", "app-02")
	for _, secrets := range [][]string{nil, {"k"}} {
		opts := cookieTestOptions()
		opts.Secrets = secrets
		c := newCookieCodec(opts, append([]*backend.Backend{nil}, pool...))
		if got := c.backendFor([]byte(c.value(pool[1]))); got != pool[0] {
			t.Errorf("secrets=%d: got %p, want the first backend %p", len(secrets), got, pool[0])
		}
	}
}

// cookieTestToken computes a token the way the format says, independently
// of the code under test.
func cookieTestToken(secret, id string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("lbctl-cookie-v1:" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func TestCookieTokenRoundTrip(t *testing.T) {
	pool := cookieTestPool("app-01", "app-02", "app-03")
	opts := cookieTestOptions()
	opts.Secrets = []string{"s3cret"}
	c := newCookieCodec(opts, pool)
	seen := map[string]string{}
	for _, b := range pool {
		t.Run(b.ID, func(t *testing.T) {
			v := c.value(b)
			if want := cookieTestToken("s3cret", b.ID); v != want {
				t.Errorf("value: got %q, want %q", v, want)
			}
			if len(v) != 22 {
				t.Errorf("value %q: got %d characters, want 22", v, len(v))
			}
			if strings.Contains(v, b.ID) {
				t.Errorf("value %q contains the id %q", v, b.ID)
			}
			if !cookieValueOK([]byte(v)) {
				t.Errorf("value %q is not a valid cookie value", v)
			}
			if again := newCookieCodec(opts, pool).value(b); again != v {
				t.Errorf("value is not deterministic: got %q then %q", v, again)
			}
			if other, dup := seen[v]; dup {
				t.Errorf("%s and %s share the token %q", b.ID, other, v)
			}
			seen[v] = b.ID
			if got := c.backendFor([]byte(v)); got != b {
				t.Errorf("backendFor(value): got %v, want %s", got, b.ID)
			}
			if got := c.backendFor([]byte(b.ID)); got != nil {
				t.Errorf("backendFor(id %q) with secrets: got %s, want nil", b.ID, got.ID)
			}
		})
	}
}

// TestCookieTokenKnownAnswer pins the token format: changing it logs every
// user out of their backend. The want was computed outside Go:
//
//	python3 -c "import hmac,hashlib,base64; print(base64.urlsafe_b64encode(hmac.new(
//	  b'correct horse battery staple', b'lbctl-cookie-v1:app-01', hashlib.sha256).digest()[:16]))"
func TestCookieTokenKnownAnswer(t *testing.T) {
	opts := cookieTestOptions()
	opts.Secrets = []string{"correct horse battery staple"}
	pool := cookieTestPool("app-01")
	if got, want := newCookieCodec(opts, pool).value(pool[0]), "nT9j3hHUuRFYiUOa8faZxQ"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCookieTokenRejectsTampering(t *testing.T) {
	pool := cookieTestPool("app-01", "app-02", "app-03")
	opts := cookieTestOptions()
	opts.Secrets = []string{"s3cret"}
	c := newCookieCodec(opts, pool)
	other := opts
	other.Secrets = []string{"another"}
	forger := newCookieCodec(other, pool)

	for _, b := range pool {
		t.Run(b.ID+"/other secret", func(t *testing.T) {
			if got := c.backendFor([]byte(forger.value(b))); got != nil {
				t.Errorf("a token made with another secret decodes to %s", got.ID)
			}
		})
	}

	// Every single-character change of a token must fail, including those
	// that only touch the spare low bits of the last base64 character, which
	// a decoding comparison would let through.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.~!"
	for _, b := range pool {
		v := c.value(b)
		for i := range len(v) {
			for _, r := range []byte(alphabet) {
				if r == v[i] {
					continue
				}
				mut := []byte(v)
				mut[i] = r
				if got := c.backendFor(mut); got != nil {
					t.Errorf("%s: flipped token %q (position %d) decodes to %s", b.ID, mut, i, got.ID)
				}
			}
		}
		for _, mut := range []string{v[:21], v + "A", " " + v[1:], strings.ToUpper(v), `"` + v + `"`} {
			if got := c.backendFor([]byte(mut)); got != nil {
				t.Errorf("%s: altered token %q decodes to %s", b.ID, mut, got.ID)
			}
		}
	}
}

func TestCookieTokenNeverNamesAnotherBackend(t *testing.T) {
	pool := cookieTestPool("app-01", "app-02", "app-03", "app-04")
	secrets := []string{"a", "b", "c"}
	opts := cookieTestOptions()
	opts.Secrets = secrets
	c := newCookieCodec(opts, pool)
	for _, s := range secrets {
		for _, a := range pool {
			tok := cookieTestToken(s, a.ID)
			if got := c.backendFor([]byte(tok)); got != a {
				t.Errorf("token of %s under %q: got %v, want %s", a.ID, s, got, a.ID)
			}
		}
	}
}

func TestCookieKeyRotation(t *testing.T) {
	pool := cookieTestPool("app-01", "app-02")
	codec := func(secrets ...string) *cookieCodec {
		opts := cookieTestOptions()
		opts.Secrets = secrets
		return newCookieCodec(opts, pool)
	}
	oldOnly, rotated, newOnly := codec("old"), codec("new", "old"), codec("new")
	for _, b := range pool {
		t.Run(b.ID, func(t *testing.T) {
			if got, want := rotated.value(b), newOnly.value(b); got != want {
				t.Errorf("value under [new, old]: got %q, want the new secret's %q", got, want)
			}
			oldCookie := []byte(oldOnly.value(b))
			if got := rotated.backendFor(oldCookie); got != b {
				t.Errorf("old cookie under [new, old]: got %v, want %s", got, b.ID)
			}
			if got := rotated.backendFor([]byte(rotated.value(b))); got != b {
				t.Errorf("new cookie under [new, old]: got %v, want %s", got, b.ID)
			}
			if got := newOnly.backendFor(oldCookie); got != nil {
				t.Errorf("old cookie under [new]: got %s, want nil", got.ID)
			}
		})
	}
}

// cookieFindCases are findCookie's cases for SERVERID, shared with the fuzz
// seeds.
var cookieFindCases = []struct {
	name   string
	header string
	value  string
	ok     bool
}{
	{"empty header", "", "", false},
	{"absent", "a=1; b=2", "", false},
	{"only cookie", "SERVERID=app-01", "app-01", true},
	{"first of two", "SERVERID=app-01; SERVERID=app-02", "app-01", true},
	{"quoted", `SERVERID="app-01"`, "app-01", true},
	{"quoted empty", `SERVERID=""`, "", true},
	{"lone quote", `SERVERID="`, "", false},
	{"unbalanced quote", `SERVERID="app-01`, "", false},
	{"two pairs of quotes", `SERVERID=""app-01""`, "", false},
	{"quote inside", `SERVERID=ap"p`, "", false},
	{"among others", "a=1; SERVERID=app-02; b=2", "app-02", true},
	{"no spaces", "a=1;SERVERID=app-02;b=2", "app-02", true},
	{"odd spacing", "  a=1 ;\t SERVERID = app-03\t;b ", "app-03", true},
	{"last, trailing semicolon", "a=1; SERVERID=app-01;", "app-01", true},
	{"garbage before", ";;%%%; SERVERID=app-01", "app-01", true},
	{"garbage around", "%%%;;SERVERID=app-01;;%%%", "app-01", true},
	{"empty names", "=;=x;SERVERID=app-01", "app-01", true},
	{"other values with spaces and quotes", `x="a b"; y=é; SERVERID=app-01; z`, "app-01", true},
	{"4 KB value", "SERVERID=" + strings.Repeat("a", 4096), "", false},
	{"256-byte value", "SERVERID=" + strings.Repeat("a", 256), strings.Repeat("a", 256), true},
	{"257-byte value", "SERVERID=" + strings.Repeat("a", 257), "", false},
	{"257-byte value quoted", `SERVERID="` + strings.Repeat("a", 257) + `"`, "", false},
	{"non-ASCII", "SERVERID=app-é", "", false},
	{"high byte", "SERVERID=app\xff", "", false},
	{"control byte", "SERVERID=app\x01", "", false},
	{"DEL", "SERVERID=app\x7f", "", false},
	{"space inside", "SERVERID=app 01", "", false},
	{"comma", "SERVERID=app,01", "", false},
	{"backslash", `SERVERID=app\01`, "", false},
	{"equals sign in value", "SERVERID=a=b", "a=b", true},
	{"name as a prefix", "SERVERIDX=1", "", false},
	{"name as a suffix", "XSERVERID=1", "", false},
	{"prefix before the real one", "SERVERIDX=1; SERVERID=app-01", "app-01", true},
	{"other case", "serverid=app-01", "", false},
	{"empty value", "SERVERID=", "", true},
	{"empty value, then others", "SERVERID=; a=b", "", true},
	{"without =", "SERVERID", "", false},
	{"without =, then others", "SERVERID; a=b", "", false},
	{"malformed first, well-formed second", "SERVERID=bad value; SERVERID=app-02", "app-02", true},
	{"token", "SERVERID=nT9j3hHUuRFYiUOa8faZxQ", "nT9j3hHUuRFYiUOa8faZxQ", true},
}

func TestFindCookie(t *testing.T) {
	for _, tt := range cookieFindCases {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := findCookie([]byte(tt.header), "SERVERID")
			if string(v) != tt.value || ok != tt.ok {
				t.Errorf("findCookie(%q): got %q, %v; want %q, %v", tt.header, v, ok, tt.value, tt.ok)
			}
		})
	}
}

// cookieStripCases are stripCookie's cases for SERVERID, shared with the
// fuzz seeds. out is the stripped header when removed is true.
var cookieStripCases = []struct {
	name    string
	header  string
	out     string
	removed bool
}{
	{"empty header", "", "", false},
	{"only cookie", "SERVERID=app-01", "", true},
	{"only cookie, spaces and semicolons", " ; SERVERID=app-01 ;; ", "", true},
	{"first", "SERVERID=app-01; a=1; b=2", "a=1; b=2", true},
	{"middle", "a=1; SERVERID=app-01; b=2", "a=1; b=2", true},
	{"last", "a=1; b=2; SERVERID=app-01", "a=1; b=2", true},
	{"several occurrences", `SERVERID=1; a=1; SERVERID=2; b=2; SERVERID="3"`, "a=1; b=2", true},
	{"only several occurrences", "SERVERID=1;SERVERID=2", "", true},
	{"malformed values are removed too", "a=1; SERVERID=bad value; SERVERID=é; SERVERID=", "a=1", true},
	{"spaces around =", "a=1; SERVERID = app-01", "a=1", true},
	{"others byte-for-byte", `x="y z";%%%;SERVERID=app-01; é=ü; tok=abc==;c;  d = e `, `x="y z"; %%%; é=ü; tok=abc==; c; d = e`, true},
	{"nothing to strip", "a=1; b=2", "", false},
	{"prefix and bare name are not the cookie", "SERVERIDX=1; SERVERID; serverid=2", "", false},
	{"garbage only", ";;%%%", "", false},
}

func TestStripCookie(t *testing.T) {
	for _, tt := range cookieStripCases {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("Cookie: ")
			out, removed := stripCookie(dst, []byte(tt.header), "SERVERID")
			if removed != tt.removed {
				t.Errorf("stripCookie(%q): removed %v, want %v", tt.header, removed, tt.removed)
			}
			if want := "Cookie: " + tt.out; string(out) != want {
				t.Errorf("stripCookie(%q): got %q, want %q", tt.header, out, want)
			}
		})
	}
}

// Sinks keep the compiler from discarding the calls under test.
var (
	cookieSinkBackend *backend.Backend
	cookieSinkBytes   []byte
	cookieSinkBool    bool
)

func TestCookieHotPathDoesNotAllocate(t *testing.T) {
	ids := []string{"app-01", "app-02", "app-03", "app-04", "app-05", "app-06", "app-07", "app-08", "app-09", "app-10"}
	pool := cookieTestPool(ids...)
	plain := newCookieCodec(cookieTestOptions(), pool)
	opts := cookieTestOptions()
	opts.Secrets = []string{"k1", "k2", "k3"}
	tokens := newCookieCodec(opts, pool)
	plainValue := []byte("app-07")
	tokenValue := []byte(cookieTestToken("k3", "app-07"))
	header := []byte(`_ga=GA1.2.3; theme="dark mode"; SERVERID=app-07; sid=abcdef0123456789`)
	dst := make([]byte, 0, 512)
	now := time.Now()

	tests := []struct {
		name string
		f    func()
	}{
		{"backendFor plain", func() { cookieSinkBackend = plain.backendFor(plainValue) }},
		{"backendFor plain miss", func() { cookieSinkBackend = plain.backendFor(tokenValue) }},
		{"backendFor tokens", func() { cookieSinkBackend = tokens.backendFor(tokenValue) }},
		{"backendFor tokens miss", func() { cookieSinkBackend = tokens.backendFor(plainValue) }},
		{"findCookie", func() { cookieSinkBytes, cookieSinkBool = findCookie(header, "SERVERID") }},
		{"stripCookie", func() { cookieSinkBytes, cookieSinkBool = stripCookie(dst[:0], header, "SERVERID") }},
		{"appendSetCookie plain", func() { cookieSinkBytes = plain.appendSetCookie(dst[:0], pool[6], now) }},
		{"appendSetCookie tokens", func() { cookieSinkBytes = tokens.appendSetCookie(dst[:0], pool[6], now) }},
		{"value", func() { cookieSinkBool = tokens.value(pool[6]) == "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tt.f); got != 0 {
				t.Errorf("got %v allocations per run, want 0", got)
			}
		})
	}
}

func BenchmarkCookieBackendFor(b *testing.B) {
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("app-%02d", i+1)
	}
	pool := cookieTestPool(ids...)
	plain := newCookieCodec(cookieTestOptions(), pool)
	opts := cookieTestOptions()
	opts.Secrets = []string{"k1", "k2", "k3"}
	tokens := newCookieCodec(opts, pool)

	cases := []struct {
		name  string
		c     *cookieCodec
		value []byte
	}{
		{"plain/10", plain, []byte("app-07")},
		{"tokens/3x10/first", tokens, []byte(cookieTestToken("k1", "app-01"))},
		{"tokens/3x10/last", tokens, []byte(cookieTestToken("k3", "app-10"))},
		{"tokens/3x10/miss", tokens, []byte(cookieTestToken("k4", "app-10"))},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cookieSinkBackend = bc.c.backendFor(bc.value)
			}
		})
	}
}

func BenchmarkCookieAppendSetCookie(b *testing.B) {
	pool := cookieTestPool("app-01")
	c := newCookieCodec(cookieTestOptions(), pool)
	dst := make([]byte, 0, 256)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		cookieSinkBytes = c.appendSetCookie(dst[:0], pool[0], now)
	}
}

func BenchmarkFindCookie(b *testing.B) {
	header := []byte(`_ga=GA1.2.3; theme="dark mode"; SERVERID=app-07; sid=abcdef0123456789`)
	b.ReportAllocs()
	for b.Loop() {
		cookieSinkBytes, cookieSinkBool = findCookie(header, "SERVERID")
	}
}

func BenchmarkStripCookie(b *testing.B) {
	header := []byte(`_ga=GA1.2.3; theme="dark mode"; SERVERID=app-07; sid=abcdef0123456789`)
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		cookieSinkBytes, cookieSinkBool = stripCookie(dst[:0], header, "SERVERID")
	}
}

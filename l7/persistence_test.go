package l7

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestNewClientGetsCookieAndCacheControl(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	c := f.client(t)
	id, resp := get(t, c, f.url("/"))
	sc := resp.Header.Values("Set-Cookie")
	if len(sc) != 1 {
		t.Fatalf("Set-Cookie = %q, want one", sc)
	}
	ck, err := http.ParseSetCookie(sc[0])
	if err != nil {
		t.Fatalf("parse %q: %v", sc[0], err)
	}
	if ck.Name != "SERVERID" || ck.Value != id || ck.Path != "/" || ck.MaxAge != 3600 || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie = %+v, want SERVERID=%s; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax", ck, id)
	}
	if d := time.Until(ck.Expires); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("Expires %v is %v from now, want about an hour", ck.Expires, d)
	}
	if got := resp.Header.Get("Cache-Control"); got != "private" {
		t.Errorf("Cache-Control = %q, want private", got)
	}
}

func TestCookieAttributesFollowConfig(t *testing.T) {
	tests := []struct {
		name string
		opts CookieOptions
		want []string // substrings of the Set-Cookie line
		not  []string
	}{
		{"session cookie", CookieOptions{Name: "SERVERID", Path: "/", HTTPOnly: true, SameSite: "lax"},
			[]string{"SERVERID=app-01; Path=/; HttpOnly; SameSite=Lax"}, []string{"Max-Age", "Expires"}},
		{"domain secure strict", CookieOptions{Name: "LB", MaxAge: 90 * time.Second, Path: "/app", Domain: "example.com", Secure: true, SameSite: "strict"},
			[]string{"LB=app-01; Path=/app; Domain=example.com; Max-Age=90; Expires=", "; Secure", "SameSite=Strict"}, []string{"HttpOnly"}},
		{"samesite none", CookieOptions{Name: "SERVERID", MaxAge: time.Hour, Path: "/", Secure: true, SameSite: "none"},
			[]string{"SameSite=None", "Secure"}, nil},
		{"samesite omitted", CookieOptions{Name: "SERVERID", MaxAge: time.Hour, Path: "/"},
			nil, []string{"SameSite", "HttpOnly", "Secure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{n: 1, cookie: tt.opts})
			_, resp := get(t, &http.Client{}, f.url("/"))
			line := resp.Header.Get("Set-Cookie")
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("Set-Cookie %q lacks %q", line, w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(line, n) {
					t.Errorf("Set-Cookie %q has %q", line, n)
				}
			}
		})
	}
}

func TestStickyOver100KeptAliveRequests(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	c := f.client(t)
	first, resp := get(t, c, f.url("/"))
	if resp.Header.Get("Set-Cookie") == "" {
		t.Fatal("first response has no Set-Cookie")
	}
	for i := range 100 {
		id, resp := get(t, c, f.url(fmt.Sprintf("/r%d", i)))
		if id != first {
			t.Fatalf("request %d went to %s, want %s", i, id, first)
		}
		if sc := resp.Header.Get("Set-Cookie"); sc != "" {
			t.Fatalf("request %d with a valid cookie got Set-Cookie %q", i, sc)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "" {
			t.Fatalf("request %d with a valid cookie got Cache-Control %q", i, cc)
		}
	}
	// Browsers without the cookie are spread by the policy.
	seen := map[string]bool{}
	for range 3 {
		id, _ := get(t, &http.Client{}, f.url("/"))
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Errorf("three new browsers reached %v, want all three backends", seen)
	}
}

func TestPersistenceCookieIsStrippedOthersPass(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	for _, tt := range []struct{ sent, want string }{
		{"SERVERID=app-01", ""},
		{"a=1; SERVERID=app-01; b=two", "a=1; b=two"},
		{"SERVERID=app-01; theme=dark", "theme=dark"},
		{"session=xyz==; SERVERID=app-01", "session=xyz=="},
		{"a=1;b=2", "a=1;b=2"}, // untouched when there is nothing to strip
	} {
		get(t, &http.Client{}, f.url("/"), "Cookie", tt.sent)
		got := f.backends[0].lastHeader().Get("Cookie")
		if got != tt.want {
			t.Errorf("Cookie %q reached the backend as %q, want %q", tt.sent, got, tt.want)
		}
	}
}

func TestBadCookiesArePlacedAfresh(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	for _, value := range []string{
		"SERVERID=app-99",                       // names no backend
		"SERVERID=;;%%%",                        // garbage
		"SERVERID=" + strings.Repeat("a", 4096), // 4 KB value
		"SERVERID=app-01\u00e9",                 // non-ASCII
		";;%%%; SERVERID",                       // no value at all
	} {
		_, resp := get(t, &http.Client{}, f.url("/"), "Cookie", value)
		if resp.StatusCode != 200 {
			t.Errorf("cookie %.40q: status %d, want 200", value, resp.StatusCode)
		}
		ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
		if err != nil || ck.Name != "SERVERID" || f.byID[ck.Value] == nil {
			t.Errorf("cookie %.40q: Set-Cookie %q, want a fresh valid cookie", value, resp.Header.Get("Set-Cookie"))
		}
	}
}

func TestSignedCookies(t *testing.T) {
	opts := defaultCookie()
	opts.Secrets = []string{"new-key", "old-key"}
	f := newFixture(t, fixtureOpts{n: 3, cookie: opts})
	c := f.client(t)
	id, resp := get(t, c, f.url("/"))
	ck, _ := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if ck == nil || strings.Contains(ck.Value, id) || strings.Contains(ck.Value, "app") {
		t.Fatalf("signed cookie %q reveals the backend id %s", resp.Header.Get("Set-Cookie"), id)
	}
	for range 5 {
		if got, resp := get(t, c, f.url("/")); got != id || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("with its token the browser went to %s (Set-Cookie %q), want %s and no new cookie", got, resp.Header.Get("Set-Cookie"), id)
		}
	}

	t.Run("tampered token is replaced", func(t *testing.T) {
		v := []byte(ck.Value)
		v[3] ^= 1
		_, resp := get(t, &http.Client{}, f.url("/"), "Cookie", "SERVERID="+string(v))
		if resp.Header.Get("Set-Cookie") == "" {
			t.Error("a tampered token was accepted (no new cookie)")
		}
	})
	t.Run("plain id is not accepted", func(t *testing.T) {
		_, resp := get(t, &http.Client{}, f.url("/"), "Cookie", "SERVERID="+id)
		if resp.Header.Get("Set-Cookie") == "" {
			t.Error("a forged plain id was accepted in token mode")
		}
	})
	t.Run("token from the old key still pins", func(t *testing.T) {
		old := newCookieCodec(CookieOptions{Name: "SERVERID", Secrets: []string{"old-key"}}, f.registry.All())
		target := f.registry.Get("app-02")
		got, resp := get(t, &http.Client{}, f.url("/"), "Cookie", "SERVERID="+old.value(target))
		if got != "app-02" || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("old-key token for app-02 went to %s (Set-Cookie %q), want app-02 and no new cookie", got, resp.Header.Get("Set-Cookie"))
		}
	})
}

func TestFailoverOnKilledBackendRepinsWithoutFlapBack(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3, prober: true})
	c := f.client(t)
	first, _ := get(t, c, f.url("/"))
	f.byID[first].Kill()

	second, resp := get(t, c, f.url("/"))
	if second == first || resp.StatusCode != 200 {
		t.Fatalf("after killing %s: answered by %s with %d, want another backend and 200", first, second, resp.StatusCode)
	}
	ck, _ := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if ck == nil || ck.Value != second {
		t.Fatalf("re-pin answer Set-Cookie %q, want SERVERID=%s", resp.Header.Get("Set-Cookie"), second)
	}

	f.byID[first].revive(t)
	f.proxy.Health.Round(context.Background())
	if !f.registry.Get(first).Available() {
		t.Fatalf("%s not available after revive and a passing check", first)
	}
	for i := range 10 {
		if got, _ := get(t, c, f.url("/")); got != second {
			t.Fatalf("request %d after %s came back went to %s, want %s", i, first, got, second)
		}
	}
}

func TestFailoverOnFailingHealthCheck(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, prober: true})
	c := f.client(t)
	first, _ := get(t, c, f.url("/"))
	f.byID[first].SetHealthy(false)
	f.proxy.Health.Round(context.Background())
	second, resp := get(t, c, f.url("/"))
	if second == first {
		t.Fatalf("still on %s after its health check failed", first)
	}
	if ck, _ := http.ParseSetCookie(resp.Header.Get("Set-Cookie")); ck == nil || ck.Value != second {
		t.Errorf("Set-Cookie %q, want SERVERID=%s", resp.Header.Get("Set-Cookie"), second)
	}
	f.byID[first].SetHealthy(true)
	f.proxy.Health.Round(context.Background())
	if got, _ := get(t, c, f.url("/")); got != second {
		t.Errorf("after %s recovered the browser went to %s, want %s", first, got, second)
	}
}

func TestForwardedHeadersReplaceSpoofedOnes(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	get(t, &http.Client{}, f.url("/"),
		"X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6", "X-Forwarded-Proto", "https")
	h := f.backends[0].lastHeader()
	for name, want := range map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Proto": "http"} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s at the backend = %q, want [%s]", name, got, want)
		}
	}
}

func TestCacheControlOnRepinKeepsBackendDirectives(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	_, resp := get(t, &http.Client{}, f.url("/cached"))
	if got := resp.Header.Values("Cache-Control"); len(got) != 1 || got[0] != "max-age=60, private" {
		t.Errorf("Cache-Control = %q, want [max-age=60, private]", got)
	}
}

func TestHopByHopFieldsAreRemoved(t *testing.T) {
	addr := scriptedBackend(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: X-Private, keep-alive\r\n"+
			"X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n"+
			"Upgrade: h2c\r\nX-Kept: yes\r\n\r\nok\n")
	})
	// The scripted backend does not echo the request, so a second backend
	// records what a request looks like after forwarding.
	f := newFixture(t, fixtureOpts{n: 1})
	// Raw, so that every field is sent exactly as written.
	rawExchange(t, f.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\n"+
		"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\n"+
		"Upgrade: websocket\r\nX-End-To-End: kept\r\n\r\n")
	h := f.backends[0].lastHeader()
	for _, name := range []string{"X-Hop", "Keep-Alive", "Te", "Trailer", "Proxy-Connection", "Upgrade"} {
		if v := h.Values(name); len(v) > 0 {
			t.Errorf("request field %s reached the backend: %q", name, v)
		}
	}
	if h.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end field lost: %v", h)
	}

	proxy := newRawFixture(t, addr, nil)
	got := rawExchange(t, proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, name := range []string{"X-Private", "Keep-Alive", "Proxy-Connection", "Trailer", "Upgrade", "keep-alive"} {
		if strings.Contains(got, name) {
			t.Errorf("response field %s reached the client:\n%s", name, got)
		}
	}
	if !strings.Contains(got, "X-Kept: yes") || !strings.HasSuffix(got, "ok\n") {
		t.Errorf("response lost its end-to-end parts:\n%s", got)
	}
}

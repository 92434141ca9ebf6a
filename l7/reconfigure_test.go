package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/underload"
)

// keptAlive is one client connection that sends requests one after the
// other, as a browser's kept-alive connection does.
type keptAlive struct {
	c net.Conn
	r *bufio.Reader
}

func openKeptAlive(t *testing.T, addr string) *keptAlive {
	t.Helper()
	c := dialProxy(t, addr)
	return &keptAlive{c: c, r: bufio.NewReader(c)}
}

// get sends a GET of path with the given Cookie field (none when empty)
// and returns the response and its body, trimmed.
func (k *keptAlive) get(t *testing.T, path, cookie string) (*http.Response, string) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	if cookie != "" {
		req += "Cookie: " + cookie + "\r\n"
	}
	if _, err := io.WriteString(k.c, req+"\r\n"); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	resp, body := readResponse(t, k.r, "GET")
	return resp, strings.TrimSpace(body)
}

// A secret rotation (the new secret first, the old one after it) keeps
// browsers with an old token where they are, without a new cookie, and
// signs new cookies with the new secret; a connection kept alive across the
// change sees it at its next request.
func TestReconfigureRotatesCookieSecret(t *testing.T) {
	opts := defaultCookie()
	opts.Secrets = []string{"old-key"}
	f := newFixture(t, fixtureOpts{n: 3, cookie: opts})
	k := openKeptAlive(t, f.addr)
	resp, id := k.get(t, "/", "")
	ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if err != nil {
		t.Fatalf("first cookie: %v", err)
	}
	oldToken := "SERVERID=" + ck.Value

	s := f.proxy.fields()
	s.Cookie.Secrets = []string{"new-key", "old-key"}
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, got := k.get(t, "/", oldToken)
		if got != id || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("old-key token went to %s (Set-Cookie %q), want %s and no new cookie", got, resp.Header.Get("Set-Cookie"), id)
		}
	}
	resp, got := k.get(t, "/", "")
	ck, err = http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if err != nil {
		t.Fatalf("cookie after the rotation: %v", err)
	}
	signed := newCookieCodec(CookieOptions{Name: "SERVERID", Secrets: []string{"new-key"}}, f.registry.All())
	if want := signed.value(f.registry.Get(got)); ck.Value != want {
		t.Errorf("new cookie %q for %s, want %q, signed with the new secret", ck.Value, got, want)
	}

	// Once the old secret is dropped, its tokens no longer pin.
	s.Cookie.Secrets = []string{"new-key"}
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	if resp, _ := k.get(t, "/", oldToken); resp.Header.Get("Set-Cookie") == "" {
		t.Error("an old-key token was still accepted after the old secret was dropped")
	}
}

// New cookie attributes and a new name show in the next Set-Cookie; the
// old name then no longer pins (and is forwarded as any other cookie).
func TestReconfigureCookieAttributes(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	k := openKeptAlive(t, f.addr)
	resp, _ := k.get(t, "/", "")
	if line := resp.Header.Get("Set-Cookie"); !strings.Contains(line, "SERVERID=app-01; Path=/; Max-Age=3600") {
		t.Fatalf("Set-Cookie %q before the change", line)
	}
	s := f.proxy.fields()
	s.Cookie = CookieOptions{Name: "LB", MaxAge: 90 * time.Second, Path: "/app", Domain: "example.com", Secure: true, SameSite: "strict"}
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	resp, id := k.get(t, "/", "SERVERID=app-01")
	line := resp.Header.Get("Set-Cookie")
	for _, w := range []string{"LB=" + id + "; Path=/app; Domain=example.com; Max-Age=90; Expires=", "; Secure", "SameSite=Strict"} {
		if !strings.Contains(line, w) {
			t.Errorf("Set-Cookie %q after the change lacks %q", line, w)
		}
	}
	if strings.Contains(line, "HttpOnly") {
		t.Errorf("Set-Cookie %q after the change keeps HttpOnly", line)
	}
	if got := f.byID[id].lastHeader().Get("Cookie"); got != "SERVERID=app-01" {
		t.Errorf("backend got Cookie %q, want the cookie of the old name forwarded", got)
	}
	if resp, got := k.get(t, "/", "LB="+id); got != id || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("cookie of the new name went to %s (Set-Cookie %q), want %s and no new cookie", got, resp.Header.Get("Set-Cookie"), id)
	}
}

// A shorter idle timeout applies to new connections, and to a kept-alive
// connection from its next request on.
func TestReconfigureIdleTimeout(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1}) // 10 s idle timeout
	kept := openKeptAlive(t, f.addr)
	kept.get(t, "/", "")
	// The wait for the next request takes the settings in force when it
	// starts: it must have started before the change.
	eventually.True(t, "the kept connection to wait for its next request", func() bool {
		return waitingForRequest(f.proxy)
	})

	const idle = 200 * time.Millisecond
	s := f.proxy.fields()
	s.IdleTimeout = idle
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	closedAfterIdle := func(k *keptAlive, what string) {
		t.Helper()
		start := time.Now() // before the response the idle timeout runs from
		k.get(t, "/", "")
		if _, err := k.r.ReadByte(); err != io.EOF {
			t.Fatalf("read on %s: %v, want EOF from the proxy", what, err)
		}
		if took := time.Since(start); took < idle-50*time.Millisecond || took > idle+4*time.Second {
			t.Errorf("%s closed after %v, want about %v", what, took, idle)
		}
	}
	closedAfterIdle(openKeptAlive(t, f.addr), "a connection opened after the change")
	closedAfterIdle(kept, "a connection kept alive across the change")
}

// A new balance policy places the requests without a cookie that arrive
// after the change. A request held in flight on one backend makes the
// difference: round robin still sends newcomers there in turn, least
// connections sends every one to the other backend.
func TestReconfigurePolicy(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	// A request whose body has not all come holds its backend.
	held := dialProxy(t, f.addr)
	if _, err := io.WriteString(held, "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab"); err != nil {
		t.Fatal(err)
	}
	var busy, other *backend.Backend
	eventually.True(t, "the held request to reach a backend", func() bool {
		for _, b := range f.registry.All() {
			if b.Active() == 1 {
				busy = b
			}
		}
		return busy != nil
	})
	for _, b := range f.registry.All() {
		if b != busy {
			other = b
		}
	}
	newcomer := func() string {
		t.Helper()
		resp, id := openKeptAlive(t, f.addr).get(t, "/", "")
		if resp.StatusCode != 200 {
			t.Fatalf("newcomer got %d", resp.StatusCode)
		}
		return id
	}
	got := map[string]int{}
	for range 2 {
		got[newcomer()]++
	}
	if got[busy.ID] != 1 {
		t.Fatalf("round robin placed newcomers %v, want one on %s", got, busy.ID)
	}
	s := f.proxy.fields()
	s.Selector = &backend.LeastConn{}
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		// The previous newcomer's backend is released just after its
		// answer went out.
		eventually.True(t, "the other backend to be free", func() bool { return other.Active() == 0 })
		if id := newcomer(); id != other.ID {
			t.Fatalf("newcomer %d after the change to leastconn went to %s, want %s", i, id, other.ID)
		}
	}
	if _, err := io.WriteString(held, "cd"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, bufio.NewReader(held), "POST")
	if want := fmt.Sprintf("%s 4 <nil>\n", busy.ID); resp.StatusCode != 200 || body != want {
		t.Errorf("held request: %d %q, want 200 %q", resp.StatusCode, body, want)
	}
}

// A lower head limit applies from the next connection: a head it would
// have taken now gets 431, both above and below the size of a
// connection's own buffer; raising it again takes such heads again.
func TestReconfigureMaxHeaderBytes(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	head := func(size int) string {
		return "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", size) + "\r\n\r\n"
	}
	status := func(raw string) string {
		t.Helper()
		got := rawExchange(t, f.addr, raw)
		if len(got) < 12 {
			t.Fatalf("answer %q", got)
		}
		return got[9:12]
	}
	if got := status(head(10 << 10)); got != "200" {
		t.Fatalf("10 KiB head under the default limit: %s", got)
	}
	s := f.proxy.fields()
	for _, tt := range []struct {
		limit, size int
		want        string
	}{
		{8 << 10, 10 << 10, "431"},
		{8 << 10, 6 << 10, "200"},
		{1 << 10, 2 << 10, "431"},
		{1 << 10, 512, "200"},
		{32 << 10, 10 << 10, "200"},
	} {
		s.MaxHeaderBytes = tt.limit
		if err := f.proxy.Reconfigure(s); err != nil {
			t.Fatal(err)
		}
		if got := status(head(tt.size)); got != tt.want {
			t.Errorf("head of %d bytes under a limit of %d: %s, want %s", tt.size, tt.limit, got, tt.want)
		}
	}

	// A kept-alive connection takes the new limit from the first request
	// it waits for after the change.
	k := openKeptAlive(t, f.addr)
	k.get(t, "/", "")
	s.MaxHeaderBytes = 8 << 10
	if err := f.proxy.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	k.get(t, "/", "") // waited for under the old limit
	if _, err := io.WriteString(k.c, head(10<<10)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := readResponse(t, k.r, "GET"); resp.StatusCode != 431 {
		t.Errorf("10 KiB head on a kept-alive connection under a limit of 8 KiB: %d, want 431", resp.StatusCode)
	}
}

// Settings without a selector are refused and change nothing.
func TestReconfigureNeedsSelector(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	before := f.proxy.tuned.Load()
	if err := f.proxy.Reconfigure(Settings{}); !errors.Is(err, errNoSelector) {
		t.Fatalf("Reconfigure without a selector: %v, want errNoSelector", err)
	}
	if f.proxy.tuned.Load() != before {
		t.Fatal("refused settings were applied")
	}
}

// Settings change again and again while browsers keep their connections
// busy: every request is answered, and the race detector sees the data
// path read the settings only through the proxy's published pointers.
func TestReconfigureUnderLoad(t *testing.T) {
	opts := defaultCookie()
	opts.Secrets = []string{"a"}
	f := newFixture(t, fixtureOpts{n: 3, cookie: opts})
	variants := []Settings{f.proxy.fields(), f.proxy.fields()}
	variants[1].Selector = &backend.LeastConn{}
	variants[1].Cookie.Secrets = []string{"b", "a"}
	variants[1].Cookie.Path = "/app"
	variants[1].IdleTimeout = 5 * time.Second
	variants[1].MaxHeaderBytes = 16 << 10
	variants[1].ServerTimeout = 30 * time.Second

	clients := []*http.Client{f.client(t), f.client(t), f.client(t), f.client(t)}
	underload.Run(t, "changes", len(clients), 40,
		func(g, _ int) error {
			// Heads of 8 KiB outgrow a connection's own buffer.
			return okGet(clients[g], f.url("/"), "X-Pad", strings.Repeat("p", 8<<10))
		},
		func(i int) error { return f.proxy.Reconfigure(variants[(i+1)%2]) })
}

package instance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// l7Config is an L7 config over one backend; the idle timeout and the
// cookie secrets are the test's.
const l7Config = `
mode = "l7"
listen = "127.0.0.1:8080" # the tests serve their own listener
[health]
check = "none"
[timeouts]
idle = %q
[cookie]
secret = %s
[[backend]]
id = "app-01"
address = %q
`

// startHTTPBackend serves "app-01" on loopback (see
// testbackend.StartHTTP) until the test ends, and returns its address.
func startHTTPBackend(t *testing.T) string {
	t.Helper()
	b, err := testbackend.StartHTTP("app-01", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b.Addr()
}

// ask sends a GET with the given Cookie field (none when empty) on c and
// returns the response's Set-Cookie value.
func ask(t *testing.T, c net.Conn, r *bufio.Reader, cookie string) string {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: x\r\n"
	if cookie != "" {
		req += "Cookie: " + cookie + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "app-01" {
		t.Fatalf("response %d %q, %v", resp.StatusCode, body, err)
	}
	return resp.Header.Get("Set-Cookie")
}

// A reload that changes the timeouts and rotates the cookie secret is
// applied to the running proxy, and its summary names both.
func TestReloadAppliesTimeoutsAndCookieSecret(t *testing.T) {
	backendAddr := startHTTPBackend(t)
	parse := func(idle, secrets string) *config.Config {
		t.Helper()
		cfg, err := config.Parse(fmt.Appendf(nil, l7Config, idle, secrets, backendAddr), "lbctl.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in, err := New(parse("60s", `"old-key"`), log)
	if err != nil {
		t.Fatal(err)
	}
	next := parse("200ms", `["new-key", "old-key"]`)
	in.Load = func() (*config.Config, error) { return next, nil }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilEnd(t, in, ln)
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	c, r := dial()
	oldCookie, _, _ := strings.Cut(ask(t, c, r, ""), ";")
	if !strings.HasPrefix(oldCookie, "SERVERID=") {
		t.Fatalf("first cookie %q", oldCookie)
	}

	res, err := in.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, want := range []string{"~timeouts(idle 1m->200ms)", "~cookie(secret changed)"} {
		if !strings.Contains(res.Summary, want) {
			t.Errorf("summary %q lacks %q", res.Summary, want)
		}
	}
	if strings.Contains(res.Summary, "key") {
		t.Errorf("summary %q shows a secret", res.Summary)
	}

	// The old token still pins, without a new cookie; a new browser gets
	// a token signed with the new secret, so a different one.
	if got := ask(t, c, r, oldCookie); got != "" {
		t.Errorf("old-key token answered with Set-Cookie %q, want none", got)
	}
	newCookie, _, _ := strings.Cut(ask(t, c, r, ""), ";")
	if !strings.HasPrefix(newCookie, "SERVERID=") || newCookie == oldCookie {
		t.Errorf("cookie after the rotation %q, want a new token (before: %q)", newCookie, oldCookie)
	}

	// A new connection is closed after the new idle timeout.
	c2, r2 := dial()
	ask(t, c2, r2, "")
	start := time.Now()
	if _, err := r2.ReadByte(); err != io.EOF {
		t.Fatalf("read on an idle connection after the reload: %v, want EOF", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", took)
	}

	// A reload of the same file changes nothing.
	if res, err := in.Reload(context.Background()); err != nil || res.Summary != "reloaded: no change" {
		t.Errorf("second reload: %+v, %v; want no change", res, err)
	}
}

// A reload that changes a setting applied only at start is refused, and
// the settings that could change with it are not applied either.
func TestReloadRefusesRestartOnlyChanges(t *testing.T) {
	backendAddr := startHTTPBackend(t)
	cfg, err := config.Parse(fmt.Appendf(nil, l7Config, "60s", `"k"`, backendAddr), "lbctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	next := *cfg
	next.Mode = "l4"
	next.Timeouts.Idle = config.Duration(time.Second)
	in.Load = func() (*config.Config, error) { return &next, nil }
	_, err = in.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("reload changing mode: %v, want it refused naming mode", err)
	}
	if in.cfg.Timeouts.Idle != cfg.Timeouts.Idle {
		t.Error("a refused reload changed the idle timeout")
	}
	// The state file is opened and its saver started at start only.
	next = *cfg
	next.Affinity.StateFile = filepath.Join(t.TempDir(), "pins")
	next.Affinity.SaveInterval = config.Duration(time.Second)
	_, err = in.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "affinity.state_file") || !strings.Contains(err.Error(), "affinity.save_interval") {
		t.Fatalf("reload changing the state file: %v, want it refused naming both keys", err)
	}
}

// Each section of the proxy's own settings shows with the keys that
// changed, secrets never by their value.
func TestTuningChanges(t *testing.T) {
	cur := config.Default()
	next := config.Default()
	if got := tuningChanges(&cur, &next); len(got) != 0 {
		t.Fatalf("no change: %q", got)
	}
	next.Balance.Policy = "leastconn"
	next.Timeouts.Connect = config.Duration(5 * time.Second)
	next.Timeouts.Server = config.Duration(30 * time.Second)
	next.Limits.HeaderBytes = 32 << 10
	next.Limits.BackendIdleConns = 0
	next.Cookie.Path = "/app"
	next.Cookie.Secret = config.Secrets{"s3cret"}
	want := []string{
		"~balance(policy " + cur.Balance.Policy + "->leastconn)",
		"~timeouts(connect " + cur.Timeouts.Connect.String() + "->5s, server " + cur.Timeouts.Server.String() + "->30s)",
		fmt.Sprintf("~limits(header_bytes %d->32768, backend_idle_conns %d->0)", cur.Limits.HeaderBytes, cur.Limits.BackendIdleConns),
		"~cookie(path " + cur.Cookie.Path + "->/app, secret changed)",
	}
	got := tuningChanges(&cur, &next)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("changes\n%q, want\n%q", got, want)
	}
}

// In L7 a reload that moves listen serves the new address at once, and the
// old one refuses new clients while its kept-alive connection goes on
// serving requests.
func TestReloadMovesL7Listen(t *testing.T) {
	backendAddr := startHTTPBackend(t)
	cfg, err := config.Parse(fmt.Appendf(nil, l7Config, "60s", `"k"`, backendAddr), "lbctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	next := *cfg
	next.Listen = "127.0.0.1:0"
	in.Load = func() (*config.Config, error) { return &next, nil }
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilEnd(t, in, ln)
	dial := func(addr string) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	oldAddr := ln.Addr().String()
	c, r := dial(oldAddr)
	ask(t, c, r, "")

	res, err := in.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload moving listen: %v", err)
	}
	if !strings.Contains(res.Summary, "~listen(127.0.0.1:8080->127.0.0.1:0)") {
		t.Errorf("summary %q, want the listen move", res.Summary)
	}
	newAddr := in.frontListener().Addr().String()
	nc, nr := dial(newAddr)
	ask(t, nc, nr, "")
	if c, err := net.Dial("tcp", oldAddr); err == nil {
		c.Close()
		t.Errorf("the old listener %s still accepts after the reload returned", oldAddr)
	}
	ask(t, c, r, "")
}

// A reload that changes limits.backend_idle_conns applies it to the
// running proxy: with 0, a backend connection is closed after its
// exchange instead of being kept for the next one.
func TestReloadAppliesBackendIdleConns(t *testing.T) {
	var dialed atomic.Int64
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "app-01\n")
	}))
	app.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	app.Start()
	t.Cleanup(app.Close)
	parse := func(limits string) *config.Config {
		t.Helper()
		cfg, err := config.Parse(fmt.Appendf(nil, l7Config+limits, "60s", `"k"`, app.Listener.Addr().String()), "lbctl.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	in, err := New(parse(""), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	next := parse("[limits]\nbackend_idle_conns = 0\n")
	in.Load = func() (*config.Config, error) { return next, nil }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilEnd(t, in, ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)

	for range 3 {
		ask(t, c, r, "")
	}
	if n := dialed.Load(); n != 1 {
		t.Fatalf("three requests with the default cap made %d backend connections, want 1 kept alive", n)
	}
	res, err := in.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if want := fmt.Sprintf("~limits(backend_idle_conns %d->0)", config.DefaultBackendIdleConns); !strings.Contains(res.Summary, want) {
		t.Errorf("summary %q lacks %q", res.Summary, want)
	}
	// The connection kept before the reload serves one more request;
	// from then on each request dials.
	for range 3 {
		ask(t, c, r, "")
	}
	if n := dialed.Load(); n != 3 {
		t.Errorf("three requests with backend_idle_conns = 0 made %d backend connections in all, want 3 (the kept one, then two dials)", n)
	}
}

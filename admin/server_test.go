package admin_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/admin/admintest"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/logtest"
)

// lockedBuffer is where a logger writes from the server's goroutines
// while the test reads it.
type lockedBuffer = logtest.Buffer

// apiFixture is an admin.Server over an in-memory instance, listening on
// loopback.
type apiFixture struct {
	inst  *admintest.Instance
	addr  string
	log   *lockedBuffer
	token string
}

// startAPI serves the API of a new in-memory instance on 127.0.0.1 until
// the test ends, then checks that Serve returned nil and that no goroutine
// or descriptor is left.
func startAPI(t *testing.T, token string) *apiFixture {
	t.Helper()
	base := leakcheck.Take(t)
	f := &apiFixture{inst: admintest.NewInstance(), log: &lockedBuffer{}, token: token}
	ln, err := admin.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	srv := &admin.Server{Instance: f.inst, Token: token, Logger: slog.New(slog.NewTextHandler(f.log, nil))}
	admintest.Serve(t, srv, ln, base)
	return f
}

// answer is one response of the API.
type answer struct {
	status int
	header http.Header
	body   string
}

// errorText returns the "error" of an error answer.
func (a answer) errorText(t *testing.T) string {
	t.Helper()
	var e admin.Error
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d is not a JSON error: %q (%v)", a.status, a.body, err)
	}
	return e.Error
}

// call sends one request with the fixture's token and returns the answer.
func (f *apiFixture) call(t *testing.T, method, path, body string) answer {
	t.Helper()
	return f.callAs(t, method, path, body, func(r *http.Request) {
		if f.token != "" {
			r.Header.Set("Authorization", "Bearer "+f.token)
		}
	})
}

// callAs sends one request, prepared by edit, on a connection of its own.
func (f *apiFixture) callAs(t *testing.T, method, path, body string, edit func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+f.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	edit(req)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("answer %d: %v\n%s", a.status, err, a.body)
	}
	return v
}

func TestBackends(t *testing.T) {
	f := startAPI(t, "")
	a := f.call(t, "GET", "/api/backends", "")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	list := decode[admin.BackendList](t, a)
	if got, want := fmt.Sprint(list.Backends), fmt.Sprint(f.inst.Backends()); got != want {
		t.Errorf("backends:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(a.body, "drain_until") {
		t.Errorf("drain_until shown for backends that are not draining:\n%s", a.body)
	}
}

func TestSetState(t *testing.T) {
	f := startAPI(t, "")
	a := f.call(t, "POST", "/api/backends/app-02/state", `{"state":"drain","for":"10m"}`)
	if a.status != 200 {
		t.Fatalf("drain: status %d: %s", a.status, a.body)
	}
	st := decode[admin.BackendStatus](t, a)
	if st.ID != "app-02" || st.State != "drain" || !st.DrainUntil.Equal(f.inst.Now().Add(10*time.Minute)) {
		t.Errorf("drain answer = %+v, want app-02 draining until %v", st, f.inst.Now().Add(10*time.Minute))
	}
	for _, body := range []string{`{"state":"maint"}`, `{"state":"drain"}`, `{"state":"ready"}`, `{"state":"maint","kill":false}`} {
		if a := f.call(t, "POST", "/api/backends/app-02/state", body); a.status != 200 {
			t.Errorf("%s: status %d: %s", body, a.status, a.body)
		}
	}
	a = f.call(t, "POST", "/api/backends/app-01/state", `{"state":"maint","kill":true}`)
	if a.status != 200 {
		t.Fatalf("maint with kill: status %d: %s", a.status, a.body)
	}
	if st := decode[admin.BackendStatus](t, a); st.ID != "app-01" || st.State != "maint" || st.Active != 0 {
		t.Errorf("maint with kill answer = %+v, want app-01 in maint with no active connection", st)
	}
	want := []string{"app-02 drain 10m0s api", "app-02 maint 0s api", "app-02 drain 0s api", "app-02 ready 0s api", "app-02 maint 0s api", "app-01 maint 0s api kill"}
	if got := f.inst.Changes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("instance saw %q, want %q", got, want)
	}
	logs := f.log.String()
	if n := strings.Count(logs, "backend admin state set"); n != 6 {
		t.Errorf("%d state lines logged, want 6:\n%s", n, logs)
	}
	if !strings.Contains(logs, "backend=app-01 state=maint source=api kill=true") {
		t.Errorf("log lacks the kill:\n%s", logs)
	}
	if !strings.Contains(logs, "backend=app-02 state=drain source=api for=10m0s") {
		t.Errorf("log lacks who and how long:\n%s", logs)
	}
}

// Each bad request gets a clear answer with a fitting status and changes
// nothing.
func TestBadInput(t *testing.T) {
	f := startAPI(t, "")
	f.inst.AddPin("203.0.113.7", "app-01", time.Minute)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"unknown backend", "POST", "/api/backends/app-09/state", `{"state":"maint"}`, 404, `no backend with id "app-09"`},
		{"bad state", "POST", "/api/backends/app-01/state", `{"state":"drained"}`, 400, `unknown admin state "drained": want ready, drain or maint`},
		{"empty state", "POST", "/api/backends/app-01/state", `{}`, 400, `unknown admin state ""`},
		{"forever", "POST", "/api/backends/app-01/state", `{"state":"drain","for":"forever"}`, 400, `"for": "forever" is not a positive duration`},
		{"negative", "POST", "/api/backends/app-01/state", `{"state":"drain","for":"-1m"}`, 400, `"-1m" is not a positive duration`},
		{"for without drain", "POST", "/api/backends/app-01/state", `{"state":"maint","for":"10m"}`, 400, `"for" bounds a drain only`},
		{"kill without maint", "POST", "/api/backends/app-01/state", `{"state":"drain","kill":true}`, 400, `"kill" closes connections only with "maint", not "drain"`},
		{"kill with ready", "POST", "/api/backends/app-01/state", `{"state":"ready","kill":true}`, 400, `"kill" closes connections only with "maint", not "ready"`},
		{"kill not a boolean", "POST", "/api/backends/app-01/state", `{"state":"maint","kill":"yes"}`, 400, `body:`},
		{"unknown field", "POST", "/api/backends/app-01/state", `{"state":"maint","force":true}`, 400, `unknown field "force"`},
		{"empty body", "POST", "/api/backends/app-01/state", ``, 400, `body is empty`},
		{"not JSON", "POST", "/api/backends/app-01/state", `state=maint`, 400, `not the expected JSON object`},
		{"two objects", "POST", "/api/backends/app-01/state", `{"state":"maint"}{"state":"ready"}`, 400, `more than one JSON value`},
		{"pin not pinned", "GET", "/api/pins?key=198.51.100.1", ``, 404, `198.51.100.1 is not pinned`},
		{"pin bad key", "GET", "/api/pins?key=not-an-ip", ``, 400, `key "not-an-ip" is not an IP address`},
		{"pin empty key", "GET", "/api/pins?key=", ``, 400, `key is empty`},
		{"pin key and backend", "GET", "/api/pins?key=203.0.113.7&backend=app-01", ``, 400, `takes no backend or limit`},
		{"pins unknown backend", "GET", "/api/pins?backend=app-09", ``, 404, `no backend with id "app-09"`},
		{"pins limit 0", "GET", "/api/pins?limit=0", ``, 400, `limit "0" is not a number from 1 to 10000`},
		{"pins limit over max", "GET", "/api/pins?limit=10001", ``, 400, `limit "10001" is not a number`},
		{"pins limit not a number", "GET", "/api/pins?limit=all", ``, 400, `limit "all"`},
		{"pins unknown parameter", "GET", "/api/pins?backnd=app-01", ``, 400, `unknown query parameter "backnd"`},
		{"pins repeated parameter", "GET", "/api/pins?backend=app-01&backend=app-02", ``, 400, `"backend" given 2 times`},
		{"forget not pinned", "DELETE", "/api/pins/198.51.100.1", ``, 404, `198.51.100.1 is not pinned`},
		{"forget bad key", "DELETE", "/api/pins/nope", ``, 400, `key "nope" is not an IP address`},
		{"unknown path", "GET", "/api/backend", ``, 404, `no API call at /api/backend`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.inst.Snapshot()
			a := f.call(t, c.method, c.path, c.body)
			if a.status != c.status {
				t.Errorf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if got := a.errorText(t); !strings.Contains(got, c.want) {
				t.Errorf("error %q, want it to contain %q", got, c.want)
			}
			if after := f.inst.Snapshot(); after != before {
				t.Errorf("a refused call changed the instance:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if strings.Contains(f.log.String(), "state set") || strings.Contains(f.log.String(), "forgotten") {
		t.Errorf("a refused call was logged as a change:\n%s", f.log.String())
	}
}

// State changes are POST and DELETE only; any other method is 405 with
// the Allow header.
func TestWrongMethod(t *testing.T) {
	f := startAPI(t, "")
	cases := []struct{ method, path, allow string }{
		{"POST", "/api/backends", "GET"},
		{"GET", "/api/backends/app-01/state", "POST"},
		{"PUT", "/api/backends/app-01/state", "POST"},
		{"DELETE", "/api/pins", "GET"},
		{"GET", "/api/pins/203.0.113.7", "DELETE"},
		{"GET", "/api/reload", "POST"},
	}
	for _, c := range cases {
		before := f.inst.Snapshot()
		a := f.call(t, c.method, c.path, `{"state":"maint"}`)
		if a.status != 405 || a.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: status %d, Allow %q; want 405, Allow %q", c.method, c.path, a.status, a.header.Get("Allow"), c.allow)
		}
		a.errorText(t)
		if f.inst.Snapshot() != before {
			t.Errorf("%s %s changed the instance", c.method, c.path)
		}
	}
}

// A body over 64 KiB is answered 413 without being read to its end, and
// changes nothing. The request is written raw, alongside reading the
// answer, because the server answers before the body is sent.
func TestBodyTooLarge(t *testing.T) {
	f := startAPI(t, "")
	for _, path := range []string{"/api/backends/app-01/state", "/api/reload", "/api/pins/203.0.113.7"} {
		method := "POST"
		if strings.HasPrefix(path, "/api/pins/") {
			method = "DELETE"
			f.inst.AddPin("203.0.113.7", "app-01", time.Minute)
		}
		before := f.inst.Snapshot()
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		const size = 10 << 20
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"state\":\"maint\",\"x\":\"", method, path, size)
			chunk := bytes.Repeat([]byte("a"), 64<<10)
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return // the server closed: expected once it answered
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s %s with 10 MB: %v", method, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		<-wrote
		if resp.StatusCode != 413 || !strings.Contains(string(body), "request body over 64 KiB") {
			t.Errorf("%s %s with 10 MB: %s %s", method, path, resp.Status, body)
		}
		if f.inst.Snapshot() != before {
			t.Errorf("%s %s with 10 MB changed the instance", method, path)
		}
	}
}

// A body of exactly 64 KiB is read; one byte more is not.
func TestBodyLimitBoundary(t *testing.T) {
	f := startAPI(t, "")
	body := `{"state":"maint"}`
	padded := body + strings.Repeat(" ", admin.MaxBodyBytes-len(body))
	if a := f.call(t, "POST", "/api/backends/app-01/state", padded); a.status != 200 {
		t.Errorf("body of 64 KiB: %d %s", a.status, a.body)
	}
	if a := f.call(t, "POST", "/api/backends/app-02/state", padded+" "); a.status != 413 {
		t.Errorf("body of 64 KiB and a byte: %d %s", a.status, a.body)
	}
	if got := f.inst.Changes(); len(got) != 1 || got[0] != "app-01 maint 0s api" {
		t.Errorf("instance saw %q, want only app-01's change", got)
	}
}

func TestToken(t *testing.T) {
	f := startAPI(t, "s3cret-token")
	bearer := func(v string) func(*http.Request) {
		return func(r *http.Request) {
			if v != "" {
				r.Header.Set("Authorization", v)
			}
		}
	}
	cases := []struct {
		name, auth string
		status     int
		want       string
	}{
		{"missing", "", 401, "missing token"},
		{"wrong", "Bearer s3cret-tokem", 401, "wrong token"},
		{"prefix of the token", "Bearer s3cret", 401, "wrong token"},
		{"longer", "Bearer s3cret-token-and-more", 401, "wrong token"},
		{"basic", "Basic czNjcmV0LXRva2Vu", 401, "not a Bearer token"},
		{"right", "Bearer s3cret-token", 200, ""},
		{"scheme in lower case", "bearer s3cret-token", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Token first: a state change, and even an unknown path,
			// are refused alike without it.
			for _, p := range []struct{ method, path, body string }{
				{"GET", "/api/backends", ""},
				{"POST", "/api/backends/app-01/state", `{"state":"maint"}`},
				{"GET", "/no/such/path", ""},
			} {
				before := f.inst.Snapshot()
				a := f.callAs(t, p.method, p.path, p.body, bearer(c.auth))
				if c.status == 200 {
					if a.status == 401 {
						t.Errorf("%s %s with the right token: %s", p.method, p.path, a.body)
					}
					continue
				}
				if a.status != 401 || a.header.Get("WWW-Authenticate") != `Bearer realm="lbctl"` {
					t.Errorf("%s %s: status %d, WWW-Authenticate %q; want 401 with a Bearer challenge", p.method, p.path, a.status, a.header.Get("WWW-Authenticate"))
				}
				if got := a.errorText(t); !strings.Contains(got, c.want) {
					t.Errorf("%s %s: error %q, want %q", p.method, p.path, got, c.want)
				}
				if f.inst.Snapshot() != before {
					t.Errorf("%s %s without the token changed the instance", p.method, p.path)
				}
			}
		})
	}
	// With a token, any Host is fine: the token is the protection.
	a := f.callAs(t, "GET", "/api/backends", "", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer s3cret-token")
		r.Host = "lb1.example.com:9090"
	})
	if a.status != 200 {
		t.Errorf("named host with the token: %d %s", a.status, a.body)
	}
}

// Without a token the API answers only requests to an IP address or
// localhost, and refuses state changes from another site's page.
func TestBrowserRequestsRefused(t *testing.T) {
	f := startAPI(t, "")
	cases := []struct {
		name   string
		edit   func(*http.Request)
		status int
	}{
		{"localhost", func(r *http.Request) { r.Host = "localhost:9090" }, 200},
		{"ipv6 literal", func(r *http.Request) { r.Host = "[::1]:9090" }, 200},
		{"rebound name", func(r *http.Request) { r.Host = "attacker.example:9090" }, 403},
		{"cross-site", func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, 403},
		{"other origin", func(r *http.Request) { r.Header.Set("Origin", "http://attacker.example") }, 403},
	}
	for _, c := range cases {
		before := f.inst.Snapshot()
		a := f.callAs(t, "POST", "/api/backends/app-01/state", `{"state":"maint"}`, c.edit)
		if a.status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, a.status, c.status, a.body)
		}
		if c.status != 200 && f.inst.Snapshot() != before {
			t.Errorf("%s: a refused request changed the instance", c.name)
		}
	}
}

func TestPins(t *testing.T) {
	f := startAPI(t, "")
	f.inst.AddPin("203.0.113.7", "app-01", time.Minute)
	f.inst.AddPin("203.0.113.8", "app-01", 2*time.Minute)
	f.inst.AddPin("203.0.113.9", "app-01", 3*time.Minute)
	f.inst.AddPin("198.51.100.1", "app-02", time.Minute)

	a := f.call(t, "GET", "/api/pins?key=203.0.113.8", "")
	if p := decode[admin.PinStatus](t, a); a.status != 200 || p.Backend != "app-01" || !p.Expires.Equal(f.inst.Now().Add(2*time.Minute)) {
		t.Errorf("pin of 203.0.113.8: %d %+v", a.status, p)
	}

	a = f.call(t, "GET", "/api/pins?backend=app-01&limit=2", "")
	list := decode[admin.PinList](t, a)
	if a.status != 200 || len(list.Pins) != 2 || !list.More || list.Pins[0].Key != "203.0.113.7" {
		t.Errorf("2 of app-01's 3 pins: %d %+v", a.status, list)
	}
	a = f.call(t, "GET", "/api/pins?backend=app-01&limit=3", "")
	if list := decode[admin.PinList](t, a); len(list.Pins) != 3 || list.More {
		t.Errorf("3 of app-01's 3 pins: %+v", list)
	}
	a = f.call(t, "GET", "/api/pins", "")
	if list := decode[admin.PinList](t, a); len(list.Pins) != 4 || list.More {
		t.Errorf("every pin: %+v", list)
	}
	if got := f.inst.PinsLimit(); got != 101 {
		t.Errorf("default limit asked the instance for %d pins, want 101 (100 and one to tell whether there are more)", got)
	}
	a = f.call(t, "GET", "/api/pins?backend=app-03", "")
	if a.status != 200 || !strings.Contains(a.body, `"pins": []`) {
		t.Errorf("no pins: want an empty list, got %d %s", a.status, a.body)
	}
	f.call(t, "GET", "/api/pins?limit=10000", "")
	if got := f.inst.PinsLimit(); got != 10001 {
		t.Errorf("limit 10000 asked the instance for %d", got)
	}
}

func TestForgetPin(t *testing.T) {
	f := startAPI(t, "")
	f.inst.AddPin("203.0.113.7", "app-02", time.Minute)
	f.inst.AddPin("2001:db8::/64", "app-01", time.Minute)

	a := f.call(t, "DELETE", "/api/pins/203.0.113.7", "")
	if p := decode[admin.PinStatus](t, a); a.status != 200 || p.Key != "203.0.113.7" || p.Backend != "app-02" {
		t.Errorf("forget: %d %+v", a.status, p)
	}
	if _, ok, _ := f.inst.Pin("203.0.113.7"); ok {
		t.Error("the pin is still there after DELETE")
	}
	if a := f.call(t, "DELETE", "/api/pins/203.0.113.7", ""); a.status != 404 {
		t.Errorf("forget twice: %d %s", a.status, a.body)
	}
	// An IPv6 prefix key has a slash: the client escapes it.
	if a := f.call(t, "DELETE", "/api/pins/2001:db8::%2F64", ""); a.status != 200 {
		t.Errorf("forget an IPv6 prefix: %d %s", a.status, a.body)
	}
	if !strings.Contains(f.log.String(), `msg="pin forgotten" key=203.0.113.7 backend=app-02 source=api`) {
		t.Errorf("log lacks the forgotten pin:\n%s", f.log.String())
	}
}

func TestReload(t *testing.T) {
	f := startAPI(t, "")
	a := f.call(t, "POST", "/api/reload", "")
	if r := decode[admin.ReloadResult](t, a); a.status != 200 || r.Summary != "reloaded: +app-04" {
		t.Errorf("reload: %d %+v", a.status, r)
	}
	msgs := []string{`lbctl.toml:4: unterminated table "[health"`, `lbctl.toml:9: backend[1].address: "10.0.0.2" has no port`}
	f.inst.SetReload(func() (admin.ReloadResult, error) {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: msgs}
	})
	a = f.call(t, "POST", "/api/reload", "")
	e := decode[admin.Error](t, a)
	if a.status != 422 || fmt.Sprint(e.Messages) != fmt.Sprint(msgs) || !strings.Contains(e.Error, "running config is unchanged") {
		t.Errorf("refused reload: %d %+v", a.status, e)
	}
	f.inst.SetReload(func() (admin.ReloadResult, error) {
		return admin.ReloadResult{}, errors.New("reload interrupted: shutting down")
	})
	if a := f.call(t, "POST", "/api/reload", ""); a.status != 500 || a.errorText(t) != "reload interrupted: shutting down" {
		t.Errorf("failed reload: %d %s", a.status, a.body)
	}
	logs := f.log.String()
	for _, want := range []string{`msg="config reloaded" source=api summary="reloaded: +app-04"`, `msg="config reload refused" source=api problems=2`, `msg="config reload failed" source=api`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

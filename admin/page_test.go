package admin_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
)

// getPage fetches the stats page as a browser would, without a token.
func getPage(t *testing.T, f *apiFixture, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+f.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "none")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

var pageTokenRE = regexp.MustCompile(`<meta name="lbctl-page-token" content="([^"]+)">`)

func TestPageRenderedByServer(t *testing.T) {
	f := startAPI(t, "")
	f.inst.SetNAT(admin.NATView{Mode: "l4", WindowSeconds: 61, TotalSessions: 900, IPAffinitySkew: 1.84, Capacity: 256, Followed: 1,
		Sources: []admin.NATSource{{Key: "198.51.100.7", Sessions: 412, SessionsError: 12, Share: 412.0 / 900, NAT: true}}})
	status, h, body := getPage(t, f, "/")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", status, h.Get("Content-Type"))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'nonce-") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// Readable without JavaScript: the backends, their states and the
	// NAT view are in the HTML itself.
	for _, want := range []string{`data-id="app-01"`, "127.0.0.1:9002", `<span class="pill down">down</span>`,
		"198.51.100.7", "412", "1.84×", `<span class="pill nat">NAT</span>`, "2 / 3"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("page refers to an external resource")
	}
	if pageTokenRE.FindStringSubmatch(body) == nil {
		t.Error("page carries no token")
	}
	for _, path := range []string{"/index.html", "/api", "/x/"} {
		if a := f.call(t, "GET", path, ""); a.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, a.status)
		}
	}
}

// TestPageTokenGuardsBrowserChanges refuses a state change from a browser
// that does not carry the page's token, and takes one that does.
func TestPageTokenGuardsBrowserChanges(t *testing.T) {
	f := startAPI(t, "")
	_, _, body := getPage(t, f, "/")
	token := pageTokenRE.FindStringSubmatch(body)[1]
	post := func(pageToken string) answer {
		return f.callAs(t, "POST", "/api/backends/app-01/state", `{"state":"drain"}`, func(r *http.Request) {
			r.Header.Set("Origin", "http://"+f.addr)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			if pageToken != "" {
				r.Header.Set(admin.PageTokenHeader, pageToken)
			}
		})
	}
	before := f.inst.Snapshot()
	for _, bad := range []string{"", "forged", token + "x"} {
		if a := post(bad); a.status != 403 {
			t.Errorf("page token %q: %d, want 403", bad, a.status)
		}
	}
	if f.inst.Snapshot() != before {
		t.Fatal("a refused change changed the instance")
	}
	if a := post(token); a.status != 200 {
		t.Fatalf("with the page token: %d %s", a.status, a.body)
	}
	if got := f.inst.Changes(); len(got) != 1 || !strings.HasPrefix(got[0], "app-01 drain") {
		t.Errorf("changes %v", got)
	}
	// lbctl's own client is no browser: it needs no page token.
	if a := f.call(t, "POST", "/api/backends/app-01/state", `{"state":"ready"}`); a.status != 200 {
		t.Errorf("without browser headers: %d %s", a.status, a.body)
	}
}

// TestPageWithAdminToken serves the page without the token, but the page
// then shows nothing of the instance: it asks for the token.
func TestPageWithAdminToken(t *testing.T) {
	f := startAPI(t, "s3cret")
	status, _, body := getPage(t, f, "/")
	if status != 200 {
		t.Fatalf("GET / with a token set: %d", status)
	}
	if !strings.Contains(body, `id="login-form"`) || strings.Contains(body, "127.0.0.1:9001") {
		t.Error("page with admin.token: want the token form and no backend")
	}
	a := f.callAs(t, "GET", "/api/backends", "", func(*http.Request) {})
	if a.status != 401 {
		t.Errorf("API without the token: %d, want 401", a.status)
	}
}

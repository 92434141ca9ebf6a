package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/internal/browsertest"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// browse plays users behind gateways against an L7 front door: users[i]
// browsers behind the source address 127.0.70.(i+1), each with its own
// cookie jar, sending requests requests.
func browse(t *testing.T, listen string, users []int, requests int) {
	t.Helper()
	for g, n := range users {
		src := fmt.Sprintf("127.0.70.%d", g+1)
		for range n {
			jar, _ := cookiejar.New(nil)
			tr := &http.Transport{DisableKeepAlives: true,
				DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
			c := &http.Client{Transport: tr, Jar: jar, Timeout: 10 * time.Second}
			for range requests {
				resp, err := c.Get("http://" + listen + "/")
				if err != nil {
					t.Fatalf("user behind %s: %v", src, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			tr.CloseIdleConnections()
		}
	}
}

// getAPI GETs path of the admin API at adminAddr (with no token) and
// decodes the answer as a T.
func getAPI[T any](t *testing.T, adminAddr, path string) T {
	t.Helper()
	var v T
	resp, err := http.Get("http://" + adminAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return v
}

// backendState returns the state and health of backend id through the API.
func backendState(t *testing.T, adminAddr, id string) (state, health string) {
	t.Helper()
	list := getAPI[admin.BackendList](t, adminAddr, "/api/backends")
	for _, b := range list.Backends {
		if b.ID == id {
			return b.State, b.Health
		}
	}
	t.Fatalf("no backend %s in %+v", id, list.Backends)
	return "", ""
}

// TestStatsPageInBrowser loads the stats page of a running L7 lbctl in
// headless Chromium: it loads without a console error, shows every backend
// and the NAT view, shows a backend going down within 2 seconds, and its
// drain button drains a backend. Set LBCTL_STATS_PNG to a path to keep a
// screenshot there too (docs/stats.png is made so).
func TestStatsPageInBrowser(t *testing.T) {
	listen, adminAddr := freeAddr(t), freeAddr(t)
	app3, err := testbackend.StartHTTP("app-03", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app3.Kill() })
	cfg := "mode = \"l7\"\n" + fmt.Sprintf(liveConfig, listen, "60s", adminAddr) +
		liveBackends("app-01", idBackend(t, "app-01"), "app-02", idBackend(t, "app-02"), "app-03", app3.Addr())
	startServe(t, "--config", writeConfig(t, cfg), "--grace", "2s")
	// Two offices and a carrier's NAT, and a few users on their own.
	browse(t, listen, []int{24, 9, 5, 1, 1, 1, 1}, 3)

	br := browsertest.Start(t)
	page := "http://" + adminAddr + "/"
	if err := chromedp.Do(br.Ctx, chromedp.Navigate(page), chromedp.WaitVisible(`#backends tr[data-id="app-03"]`)); err != nil {
		t.Fatalf("loading %s: %v", page, err)
	}
	text := func(sel string) string { t.Helper(); return br.Text(t, sel) }
	for _, id := range []string{"app-01", "app-02", "app-03"} {
		if row := text(`#backends tr[data-id="` + id + `"]`); !strings.Contains(row, id) || !strings.Contains(row, "up") {
			t.Errorf("row of %s reads %q", id, row)
		}
	}
	if nat := text("#nat-sources"); !strings.Contains(nat, "127.0.70.1") || !strings.Contains(nat, "NAT") {
		t.Errorf("NAT view reads %q, want 127.0.70.1 flagged", nat)
	}
	// The script has replaced the server's rendering at least once.
	eventually.True(t, "the page to update itself", func() bool {
		return strings.HasPrefix(text("#updated"), "as of") && text("#dot") == "" && br.HasClass(t, "#dot", "on")
	})

	// From two snapshots of /api/stats the page works out rates.
	eventually.True(t, "the page to show request rates", func() bool {
		return rateRE.MatchString(text(`#backends tr[data-id="app-01"] td:nth-child(7)`)) &&
			strings.HasSuffix(text("#front-rate"), "req/s")
	})
	if totals := text("#front-totals"); !strings.Contains(totals, "requests in all") {
		t.Errorf("front door totals read %q", totals)
	}

	// Rows are updated in place: a button under the pointer stays the
	// same element from one update to the next.
	mark := `document.querySelector('#backends tr[data-id="app-01"] button[data-state="drain"]')`
	if _, err := chromedp.Run(br.Ctx, chromedp.Evaluate[bool](mark+`.dataset.mark = "1"; true`)); err != nil {
		t.Fatal(err)
	}
	updated := text("#updated")
	eventually.True(t, "the page to update again", func() bool { return text("#updated") != updated })
	if kept, err := chromedp.Run(br.Ctx, chromedp.Evaluate[bool](mark+`.dataset.mark === "1"`)); err != nil || !kept {
		t.Errorf("an update replaced app-01's drain button (%v)", err)
	}

	// A backend goes down: the page shows it within 2s of the API.
	app3.Kill()
	eventually.True(t, "app-03 to be down in the API", func() bool { _, h := backendState(t, adminAddr, "app-03"); return h == "down" })
	downAt := time.Now()
	eventually.True(t, "the page to show app-03 down", func() bool {
		return br.HasClass(t, `#backends tr[data-id="app-03"] td:nth-child(4) .pill`, "down")
	})
	if took := time.Since(downAt); took > 2*time.Second {
		t.Errorf("the page showed app-03 down %v after the API did, want within 2s", took)
	}

	// More traffic; once the page shows it, its screenshot is the
	// README's when LBCTL_STATS_PNG names a file.
	browse(t, listen, []int{6, 3, 2}, 2)
	total := natTotal(t, adminAddr)
	eventually.True(t, fmt.Sprintf("the page to count %d sessions", total), func() bool {
		return strings.Contains(text("#nat-finding"), fmt.Sprintf(" of %d sessions", total))
	})
	if path := os.Getenv("LBCTL_STATS_PNG"); path != "" {
		br.Screenshot(t, path)
	}

	// The drain button drains app-01.
	if err := chromedp.Do(br.Ctx, chromedp.Click(`#backends tr[data-id="app-01"] button[data-state="drain"]`)); err != nil {
		t.Fatalf("clicking drain: %v", err)
	}
	eventually.True(t, "app-01 to be draining in the API", func() bool { s, _ := backendState(t, adminAddr, "app-01"); return s == "drain" })
	eventually.True(t, "the page to show app-01 draining", func() bool {
		return br.HasClass(t, `#backends tr[data-id="app-01"] td:nth-child(5) .pill`, "drain")
	})
	br.Screenshot(t, filepath.Join(t.TempDir(), "stats.png"))
	for _, p := range br.Problems() {
		t.Errorf("browser: %s", p)
	}
}

// rateRE matches a rate as the page writes it.
var rateRE = regexp.MustCompile(`^[0-9]+\.[0-9]{2}$`)

// natTotal returns the sessions the NAT view counts now, through the API.
func natTotal(t *testing.T, adminAddr string) int {
	t.Helper()
	return getAPI[admin.NATView](t, adminAddr, "/api/nat").TotalSessions
}

// TestStatsPageAsksForToken serves the page of an API with admin.token:
// the page shows a token form and no backend; once the token is typed it
// shows the backends, and its buttons change states with it.
func TestStatsPageAsksForToken(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "s3cret-token")
	br := browsertest.Start(t)
	if err := chromedp.Do(br.Ctx, chromedp.Navigate("http://"+o.addr+"/"), chromedp.WaitVisible("#token")); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	if visible, err := chromedp.Run(br.Ctx, chromedp.Evaluate[bool](`!document.getElementById("content").hidden`)); err != nil || visible {
		t.Fatalf("the stats show before the token is typed (%v)", err)
	}
	if err := chromedp.Do(br.Ctx, chromedp.SendKeys("#token", "s3cret-token"), chromedp.Click("#login-form button"),
		chromedp.WaitVisible(`#backends tr[data-id="app-02"]`)); err != nil {
		t.Fatalf("typing the token: %v", err)
	}
	if err := chromedp.Do(br.Ctx, chromedp.Click(`#backends tr[data-id="app-02"] button[data-state="maint"]`)); err != nil {
		t.Fatalf("clicking maint: %v", err)
	}
	eventually.True(t, "app-02 to be set to maint", func() bool {
		ch := o.inst.Changes()
		return len(ch) == 1 && strings.HasPrefix(ch[0], "app-02 maint")
	})
	for _, p := range br.Problems() {
		t.Errorf("browser: %s", p)
	}
}

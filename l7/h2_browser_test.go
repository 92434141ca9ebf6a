package l7

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/lbctl/lbctl/internal/browsertest"
)

// TestH2BrowserStaysAndMovesOnce: headless chromium loads a page through
// the TLS front door over HTTP/2, keeps its backend across ten loads, and
// when that backend dies moves once, with a new cookie, to another one
// that it then keeps.
func TestH2BrowserStaysAndMovesOnce(t *testing.T) {
	br := browsertest.Start(t, browsertest.IgnoreCertificateErrors)
	// The cookie as a TLS listener configures it by default: Secure.
	cookie := defaultCookie()
	cookie.Secure = true
	front, err := NewTLS(h2Options(t))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{n: 3, cookie: cookie, configure: func(p *Proxy) { p.TLS = front }})
	url := "https://" + f.addr + "/page"
	// The page's favicon is not fetched (the page names an inline icon,
	// and requests for /favicon.ico are blocked as well, since headless
	// chromium was once seen to send one anyway): a favicon request still
	// in flight with the old cookie when the backend dies would be
	// re-pinned on its own, and could move the browser a second time.
	if _, err := chromedp.Call(br.Ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("enabling the network domain: %v", err)
	}
	if _, err := chromedp.Call(br.Ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{
		URLPatterns: []*network.BlockPattern{{URLPattern: "*://*:*/favicon.ico", Block: true}},
	}); err != nil {
		t.Fatalf("blocking the favicon: %v", err)
	}
	// load navigates to the page and returns the backend that answered,
	// the protocol the navigation went over and the persistence cookie
	// the browser holds afterwards.
	load := func() (id, proto, cookie string) {
		t.Helper()
		if err := chromedp.Do(br.Ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("loading %s: %v", url, err)
		}
		var err error
		if id, err = chromedp.Run(br.Ctx, chromedp.Evaluate[string](`document.body.innerText`)); err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		if proto, err = chromedp.Run(br.Ctx, chromedp.Evaluate[string](
			`performance.getEntriesByType("navigation")[0].nextHopProtocol`)); err != nil {
			t.Fatalf("reading the protocol: %v", err)
		}
		res, err := chromedp.Call(br.Ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		if err != nil {
			t.Fatalf("reading the cookies: %v", err)
		}
		for _, c := range res.Cookies {
			if c.Name == defaultCookie().Name {
				if !c.Secure {
					t.Errorf("cookie %s=%s is not Secure", c.Name, c.Value)
				}
				cookie = c.Value
			}
		}
		return strings.TrimSpace(id), proto, cookie
	}
	first, proto, pin := load()
	if proto != "h2" {
		t.Fatalf("the page came over %q, want h2", proto)
	}
	if f.byID[first] == nil || pin == "" {
		t.Fatalf("first load answered by %q with cookie %q", first, pin)
	}
	for i := range 10 {
		id, proto, c := load()
		if id != first || proto != "h2" || c != pin {
			t.Fatalf("load %d: %s over %s with cookie %q, want %s over h2 with %q", i+2, id, proto, c, first, pin)
		}
	}
	f.byID[first].Kill()
	moved, _, newCookie := load()
	if moved == first || f.byID[moved] == nil || newCookie == pin || newCookie == "" {
		t.Fatalf("after %s died: answered by %q with cookie %q (was %q)", first, moved, newCookie, pin)
	}
	for i := range 5 {
		if id, _, c := load(); id != moved || c != newCookie {
			t.Fatalf("load %d after the move: %s with cookie %q, want %s with %q", i+1, id, c, moved, newCookie)
		}
	}
	for _, hb := range f.backends {
		if n := hb.arrived("/favicon.ico"); n != 0 {
			t.Errorf("%s got %d favicon requests, want them blocked", hb.id, n)
		}
	}
}

package l7

import (
	"net/http"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// browser is a client with its own cookie jar, and the backend its cookie
// names.
type browser struct {
	c  *http.Client
	on string
}

// pinBrowsers sends one request from each of n new browsers and returns
// them with the backend their cookie names.
func pinBrowsers(t *testing.T, f *fixture, n int) []*browser {
	t.Helper()
	bs := make([]*browser, n)
	for i := range bs {
		c := f.client(t)
		id, resp := get(t, c, f.url("/"))
		if ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie")); err != nil || ck.Value != id {
			t.Fatalf("browser %d: Set-Cookie %q from %s, want one naming it", i, resp.Header.Get("Set-Cookie"), id)
		}
		bs[i] = &browser{c: c, on: id}
	}
	return bs
}

// browsersOn returns the browsers whose cookie names id, at least one.
func browsersOn(t *testing.T, bs []*browser, id string) []*browser {
	t.Helper()
	var on []*browser
	for _, b := range bs {
		if b.on == id {
			on = append(on, b)
		}
	}
	if len(on) == 0 {
		t.Fatalf("no browser pinned to %s", id)
	}
	return on
}

// checkStays sends a request from b and fails the test unless its own
// backend answered without a new cookie.
func checkStays(t *testing.T, f *fixture, b *browser, when string) {
	t.Helper()
	id, resp := get(t, b.c, f.url("/"))
	if id != b.on {
		t.Errorf("%s: browser of %s was answered by %s", when, b.on, id)
	}
	if sc := resp.Header.Get("Set-Cookie"); sc != "" {
		t.Errorf("%s: browser of %s got Set-Cookie %q, want none", when, b.on, sc)
	}
}

// checkMoves sends a request from b, which must be answered by another
// backend than avoid with a cookie naming it, and records the move.
func checkMoves(t *testing.T, f *fixture, b *browser, avoid string) {
	t.Helper()
	id, resp := get(t, b.c, f.url("/"))
	if id == avoid || resp.StatusCode != 200 {
		t.Errorf("browser of %s answered by %s with %d, want another backend and 200", avoid, id, resp.StatusCode)
	}
	if ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie")); err != nil || ck.Value != id {
		t.Errorf("browser of %s moved to %s with Set-Cookie %q, want one naming %s", avoid, id, resp.Header.Get("Set-Cookie"), id)
	}
	b.on = id
}

// checkNewBrowsersAvoid sends one request from each of n new browsers and
// fails the test if any reaches id.
func checkNewBrowsersAvoid(t *testing.T, f *fixture, id string, n int) {
	t.Helper()
	for range n {
		if got, _ := get(t, &http.Client{}, f.url("/")); got == id {
			t.Errorf("a new browser reached %s", id)
		}
	}
}

// TestDrainKeepsCookieClients drains app-02 with no deadline: browsers
// whose cookie names it stay there without a new cookie, also on a new
// connection, and no new browser reaches it. Served counts each request
// it answered.
func TestDrainKeepsCookieClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	bs := pinBrowsers(t, f, 6)
	b := f.registry.Get("app-02")
	// A request is counted once its response is on its way, so the last
	// pinning request may not be counted yet: wait for each pinning
	// request app-02 answered before taking the count the drain's are
	// measured from.
	pinned := uint64(len(browsersOn(t, bs, "app-02")))
	eventually.True(t, "app-02's pinning requests to be counted", func() bool { return b.Served() >= pinned })
	b.SetAdmin(backend.Drain, time.Time{})
	before := b.Served()
	const rounds = 3
	for range rounds {
		for _, br := range bs {
			checkStays(t, f, br, "during the drain")
		}
	}
	on := browsersOn(t, bs, "app-02")
	// A browser on a new connection, with only its cookie.
	id, resp := get(t, &http.Client{}, f.url("/"), "Cookie", "SERVERID=app-02")
	if id != "app-02" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("cookie for app-02 on a new connection: answered by %s with Set-Cookie %q, want app-02 and none", id, resp.Header.Get("Set-Cookie"))
	}
	checkNewBrowsersAvoid(t, f, "app-02", 9)
	// The count is taken once the response is on its way: wait for the
	// last one, then check nothing was counted twice.
	want := uint64(rounds*len(on) + 1)
	eventually.True(t, "app-02's requests to be counted", func() bool { return b.Served()-before >= want })
	if got := b.Served() - before; got != want {
		t.Errorf("app-02 served %d requests during the drain, want %d", got, want)
	}
}

// TestDrainDeadlineMovesCookieClients drains app-02 with a deadline: its
// browsers stay before it; once it has passed, each is answered elsewhere
// at its next request with a new cookie, and stays there.
func TestDrainDeadlineMovesCookieClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	bs := pinBrowsers(t, f, 6)
	on := browsersOn(t, bs, "app-02")
	b := f.registry.Get("app-02")

	b.SetAdmin(backend.Drain, time.Now().Add(time.Hour))
	for _, br := range on {
		checkStays(t, f, br, "before the drain's deadline")
	}
	checkNewBrowsersAvoid(t, f, "app-02", 6)

	// The operator shortens the drain; the test waits for the deadline
	// itself to pass.
	b.SetAdmin(backend.Drain, time.Now().Add(20*time.Millisecond))
	eventually.True(t, "the drain deadline", func() bool { return !b.KeepsPinned(time.Now()) })
	for _, br := range on {
		checkMoves(t, f, br, "app-02")
	}
	for range 2 {
		for _, br := range bs {
			checkStays(t, f, br, "after the move")
		}
	}
}

// TestMaintMovesCookieClients puts app-02 in maintenance: its browsers are
// answered elsewhere at their next request with a new cookie, and stay
// there once app-02 is ready again.
func TestMaintMovesCookieClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	bs := pinBrowsers(t, f, 6)
	on := browsersOn(t, bs, "app-02")
	b := f.registry.Get("app-02")

	b.SetAdmin(backend.Maint, time.Time{})
	for _, br := range on {
		checkMoves(t, f, br, "app-02")
	}
	checkNewBrowsersAvoid(t, f, "app-02", 6)
	id, resp := get(t, &http.Client{}, f.url("/"), "Cookie", "SERVERID=app-02")
	if ck, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie")); id == "app-02" || err != nil || ck.Value != id {
		t.Errorf("cookie for app-02 in maintenance: answered by %s with Set-Cookie %q, want another backend and a cookie naming it", id, resp.Header.Get("Set-Cookie"))
	}

	b.SetAdmin(backend.Ready, time.Time{})
	for _, br := range bs {
		checkStays(t, f, br, "once app-02 is ready again")
	}
}

package l7

import (
	"net/http"
	"testing"

	"github.com/lbctl/lbctl/natview"
)

// TestNATCountsNewSessions counts, over HTTP/1.1 and HTTP/2, each request
// that comes without a usable cookie, and each client connection that
// does so once: a browser that keeps its cookie starts one session, a
// client without a cookie jar sends every request cookieless on its one
// kept-alive connection.
func TestNATCountsNewSessions(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
		t.Run(proto, func(t *testing.T) {
			nat := new(natview.Tracker)
			configure := func(p *Proxy) { p.NAT = nat }
			var browser, bot *http.Client
			var url string
			if proto == "HTTP/2" {
				f, _ := tlsFixture(t, 2, h2Options(t), configure)
				browser, _ = h2Client(t)
				bot, _ = h2Client(t)
				url = "https://" + f.addr + "/"
			} else {
				f := newFixture(t, fixtureOpts{n: 2, configure: configure})
				browser, bot = f.client(t), f.client(t)
				url = f.url("/")
			}
			bot.Jar = nil
			for range 5 {
				if _, resp := get(t, browser, url); resp.ProtoMajor != map[string]int{"HTTP/1.1": 1, "HTTP/2": 2}[proto] {
					t.Fatalf("answered over %s", resp.Proto)
				}
			}
			for range 3 {
				get(t, bot, url)
			}
			snap := nat.Snapshot()
			if len(snap.Sources) != 1 || snap.Sources[0].Key.String() != "127.0.0.1" {
				t.Fatalf("sources %+v, want 127.0.0.1 alone", snap.Sources)
			}
			// Sessions are an estimate, exact here but for a collision of
			// two hashes in the sketch, which its error allows.
			if s := snap.Sources[0]; s.Events != 4 || s.Sessions < 2-s.SessionsError || s.Sessions > 2 {
				t.Errorf("%d requests without a cookie in %d sessions, want 4 in 2 (one per client connection)", s.Events, s.Sessions)
			}
		})
	}
}

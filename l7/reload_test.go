package l7

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/testbackend"
	"github.com/lbctl/lbctl/internal/underload"
)

// TestReloadKeepsCookiesAndMovesRemoved reloads a pool of three with 60
// browsers holding cookies: app-04 joins, app-03 leaves (still running, so
// that only the reload can move its browsers) and app-02 is reweighted.
// Browsers of kept backends stay, with no new cookie; those of app-03 get a
// new one, once; a streaming exchange with app-03 runs on to its end.
func TestReloadKeepsCookiesAndMovesRemoved(t *testing.T) {
	for _, mode := range []struct {
		name    string
		secrets []string
	}{{"plain", nil}, {"tokens", []string{"new", "old"}}} {
		t.Run(mode.name, func(t *testing.T) {
			opts := defaultCookie()
			opts.Secrets = mode.secrets
			f := newFixture(t, fixtureOpts{n: 3, cookie: opts})
			app04 := startHTTPBackend(t, "app-04")
			const browsers = 60
			clients := make([]*http.Client, browsers)
			pinned := make([]string, browsers)
			for i := range clients {
				clients[i] = f.client(t)
				pinned[i], _ = get(t, clients[i], f.url("/"))
			}

			// An exchange with app-03 that streams both ways across the
			// reload: a chunked upload echoed as it arrives, 64 KiB at a
			// time (more than the backend buffers before it flushes).
			var on3 *http.Client
			for i, id := range pinned {
				if id == "app-03" {
					on3 = clients[i]
					break
				}
			}
			if on3 == nil {
				t.Fatalf("no browser on app-03: %v", pinned)
			}
			pr, pw := io.Pipe()
			defer pr.Close()
			chunk := func(b byte) []byte { return bytes.Repeat([]byte{b}, 64<<10) }
			send := func(p []byte) { go pw.Write(p) }
			send(chunk('a'))
			req, _ := http.NewRequest("POST", f.url("/echo"), pr)
			resp, err := on3.Do(req)
			if err != nil {
				t.Fatalf("streaming POST: %v", err)
			}
			defer resp.Body.Close()
			if got := resp.Header.Get("X-Backend"); got != "app-03" {
				t.Fatalf("streaming POST answered by %q, want app-03", got)
			}
			echoed := func(want []byte) {
				t.Helper()
				got := make([]byte, len(want))
				if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("echo from app-03: %v (bytes match %v)", err, bytes.Equal(got, want))
				}
			}
			echoed(chunk('a'))

			// The kept-alive connections of each backend, as the
			// proxy holds them before the reload.
			ups := map[string]*upstreamPool{}
			for b, u := range f.proxy.state.Load().ups {
				ups[b.ID] = u
			}
			specs := testbackend.Specs(f.backends, "app-03", backend.Spec{ID: "app-04", Address: app04.addr, Weight: 1})
			specs[1].Weight = 3 // app-02
			ch, err := f.pool.Reload(specs)
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if got, want := ch.String(), "+app-04 -app-03 ~app-02(weight 1->3)"; got != want {
				t.Errorf("Changes = %q, want %q", got, want)
			}

			kept, moved := 0, 0
			for i, was := range pinned {
				id, resp := get(t, clients[i], f.url("/"))
				sc := resp.Header.Get("Set-Cookie")
				switch {
				case was != "app-03" && (id != was || sc != ""):
					t.Errorf("browser %d of kept %s: answered by %s with Set-Cookie %q, want %s and no new cookie", i, was, id, sc, was)
				case was != "app-03":
					kept++
				case id == "app-03" || sc == "":
					t.Errorf("browser %d of removed app-03: answered by %s with Set-Cookie %q, want another backend and a new cookie", i, id, sc)
				default:
					moved++
					if again, resp := get(t, clients[i], f.url("/")); again != id || resp.Header.Get("Set-Cookie") != "" {
						t.Errorf("browser %d moved to %s, then answered by %s with Set-Cookie %q; want it to stay without a new cookie",
							i, id, again, resp.Header.Get("Set-Cookie"))
					}
				}
			}
			if kept+moved != browsers || moved == 0 {
				t.Errorf("%d browsers kept their backend and %d moved, of %d", kept, moved, browsers)
			}
			// Kept backends keep their kept-alive connections; app-03's
			// are closed, and none is kept for it any more.
			for b, u := range f.proxy.state.Load().ups {
				if b.ID != "app-04" && u != ups[b.ID] {
					t.Errorf("%s: kept-alive connections replaced by the reload, want them kept", b.ID)
				}
			}
			idle03 := ups["app-03"]
			idle03.mu.Lock()
			if !idle03.retired || len(idle03.idle) != 0 {
				t.Errorf("app-03's kept connections: retired %v, %d idle; want retired and closed", idle03.retired, len(idle03.idle))
			}
			idle03.mu.Unlock()

			joined := 0
			for range 10 {
				switch id, _ := get(t, f.client(t), f.url("/")); id {
				case "app-04":
					joined++
				case "app-03":
					t.Error("new browser reached removed app-03")
				}
			}
			if joined == 0 {
				t.Error("no new browser reached app-04")
			}

			send(chunk('b'))
			echoed(chunk('b'))
			pw.Close()
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Errorf("end of the stream with app-03: %d more bytes, %v; want a clean end", len(rest), err)
			}
		})
	}
}

// TestReloadsUnderLoad reloads the pool 20 times while browsers send
// requests and the prober follows: no request may fail, and nothing may
// outlive the proxy, the prober and the backends.
func TestReloadsUnderLoad(t *testing.T) {
	base := baselineBeforeFixture(t)
	f := newFixture(t, fixtureOpts{n: 3})
	app04 := startHTTPBackend(t, "app-04")
	f.pool.SetJoinDown(true)
	prober := &backend.Prober{Pool: f.pool, Checker: &backend.HTTPCheck{Path: "/healthz"}, Interval: 20 * time.Millisecond,
		Timeout: time.Second, Rise: 2, Fall: 3, Logger: slog.New(slog.DiscardHandler)}
	ctx, stopProber := context.WithCancel(t.Context())
	probed := make(chan error, 1)
	go func() { probed <- prober.Run(ctx) }()

	configs := [][]backend.Spec{
		testbackend.Specs(f.backends, ""),
		testbackend.Specs(f.backends, "app-03", backend.Spec{ID: "app-04", Address: app04.addr, Weight: 2}),
	}
	var clients []*http.Client
	var transports []*http.Transport
	for range 4 {
		tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
		transports = append(transports, tr)
		clients = append(clients, &http.Client{Transport: tr, Timeout: 10 * time.Second})
	}
	underload.Run(t, "reloads", len(clients), 20,
		func(g, i int) error {
			// Each request stands for another browser, half of them with
			// a cookie naming a backend that may be gone.
			var hdr []string
			if i%2 == 1 {
				hdr = []string{"Cookie", fmt.Sprintf("SERVERID=app-%02d", 1+(g+i)%4)}
			}
			return okGet(clients[g], f.url("/"), hdr...)
		},
		func(i int) error {
			_, err := f.pool.Reload(configs[(i+1)%2])
			return err
		})
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	stopProber()
	if err := <-probed; err != context.Canceled {
		t.Errorf("prober Run = %v, want context.Canceled", err)
	}
	f.proxy.Close()
	for _, hb := range append(f.backends, app04) {
		hb.Kill()
	}
	base.Wait(t, 5*time.Second)
}

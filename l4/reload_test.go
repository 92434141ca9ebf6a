package l4

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/testbackend"
	"github.com/lbctl/lbctl/internal/underload"
)

// TestReloadKeepsPinsAndMovesRemovedClients reloads a pool of three with
// 60 pinned clients: app-04 joins, app-03 leaves (still running, so that
// only the reload can move its clients) and app-02 is reweighted.
func TestReloadKeepsPinsAndMovesRemovedClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	app04 := startBackend(t, "app-04")
	const clients = 60
	src := func(i int) string { return fmt.Sprintf("127.0.5.%d", i+1) }
	pinned := make([]string, clients)
	for i := range clients {
		pinned[i] = greeting(t, src(i), f.addr)
	}
	// A connection to app-03 that stays open across the reload.
	var open *bufio.Reader
	for i, id := range pinned {
		if id == "app-03" {
			c := dialFrom(t, src(i), f.addr)
			defer c.Close()
			open = bufio.NewReader(c)
			if line, err := open.ReadString('\n'); err != nil || line != "app-03\n" {
				t.Fatalf("open connection: greeting %q, %v; want app-03", line, err)
			}
			defer func() {
				if _, err := io.WriteString(c, "still here\n"); err != nil {
					t.Errorf("open connection to app-03: write after reload: %v", err)
				}
				if line, err := open.ReadString('\n'); err != nil || line != "still here\n" {
					t.Errorf("open connection to app-03: echo after reload %q, %v; want it to flow", line, err)
				}
			}()
			break
		}
	}
	if open == nil {
		t.Fatalf("no client on app-03: %v", pinned)
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
		got := greeting(t, src(i), f.addr)
		switch {
		case was != "app-03" && got != was:
			t.Errorf("client %s of kept %s moved to %s", src(i), was, got)
		case was != "app-03":
			kept++
		case got == "app-03":
			t.Errorf("client %s still reached removed app-03", src(i))
		default:
			moved++
			if again := greeting(t, src(i), f.addr); again != got {
				t.Errorf("client %s moved from app-03 to %s, then to %s; want it to stay", src(i), got, again)
			}
		}
	}
	if kept+moved != clients || moved == 0 {
		t.Errorf("%d clients kept their backend and %d moved, of %d", kept, moved, clients)
	}
	joined := 0
	for i := range 10 {
		switch got := greeting(t, fmt.Sprintf("127.0.6.%d", i+1), f.addr); got {
		case "app-04":
			joined++
		case "app-03":
			t.Errorf("new client reached removed app-03")
		}
	}
	if joined == 0 {
		t.Error("no new client reached app-04")
	}
}

// TestReloadMovesAddress gives a kept backend a new address: its pinned
// client keeps the pin and its next connection reaches the new address
// (the event loop rebuilds its connect target).
func TestReloadMovesAddress(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	moved := startBackend(t, "app-01-moved")
	if got := greeting(t, "127.0.0.61", f.addr); got != "app-01" {
		t.Fatalf("greeting from %s, want app-01", got)
	}
	ch, err := f.pool.Reload([]backend.Spec{{ID: "app-01", Address: moved.addr, Weight: 1}})
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if want := "~app-01(address " + f.backends[0].addr + "->" + moved.addr + ")"; ch.String() != want {
		t.Errorf("Changes = %q, want %q", ch, want)
	}
	if got := greeting(t, "127.0.0.61", f.addr); got != "app-01-moved" {
		t.Errorf("after the reload the client reached %s, want the new address (app-01-moved)", got)
	}
	if st := f.table.Stats(); st.Repins != 0 {
		t.Errorf("%d repins, want the pin kept", st.Repins)
	}
}

// TestReloadsUnderLoad reloads the pool 20 times while clients connect and
// the prober follows: no client may fail, and nothing may outlive the
// proxy and the prober.
func TestReloadsUnderLoad(t *testing.T) {
	app04 := startBackend(t, "app-04")
	var base *leakcheck.Baseline
	f := newFixture(t, fixtureOpts{n: 3, beforeProxy: func() { base = leakcheck.Take(t) }})
	f.pool.SetJoinDown(true)
	prober := &backend.Prober{Pool: f.pool, Checker: &backend.TCPCheck{}, Interval: 20 * time.Millisecond,
		Timeout: time.Second, Rise: 2, Fall: 3, Logger: slog.New(slog.DiscardHandler)}
	ctx, stopProber := context.WithCancel(t.Context())
	probed := make(chan error, 1)
	go func() { probed <- prober.Run(ctx) }()

	configs := [][]backend.Spec{
		testbackend.Specs(f.backends, ""),
		testbackend.Specs(f.backends, "app-03", backend.Spec{ID: "app-04", Address: app04.addr, Weight: 2}),
	}
	underload.Run(t, "reloads", 4, 20,
		func(g, i int) error { return echoOnce(fmt.Sprintf("127.0.7.%d", g*50+i%50+1), f.addr) },
		func(i int) error {
			_, err := f.pool.Reload(configs[(i+1)%2])
			return err
		})
	stopProber()
	if err := <-probed; err != context.Canceled {
		t.Errorf("prober Run = %v, want context.Canceled", err)
	}
	f.proxy.Close()
	f.table.Close()
	base.Wait(t, 5*time.Second)
}

// echoOnce connects from src, reads the greeting and has one line echoed.
func echoOnce(src, addr string) error {
	c, err := dialFromErr(src, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	id, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("from %s: greeting: %w", src, err)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return fmt.Errorf("from %s to %s: %w", src, strings.TrimSpace(id), err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		return fmt.Errorf("from %s to %s: echo %q, %v", src, strings.TrimSpace(id), line, err)
	}
	return nil
}

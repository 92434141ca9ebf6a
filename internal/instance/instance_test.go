package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
)

// echoBackend is a loopback TCP server that echoes what it reads and
// counts the connections it accepts (health probes included).
type echoBackend struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startEchoBackend(t *testing.T) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &echoBackend{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return b
}

// refusedAddress returns a loopback address nothing listens on.
func refusedAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testConfig returns a valid L4 config with one backend at address.
func testConfig(t *testing.T, address string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Mode = "l4"
	cfg.Listen = "127.0.0.1:8080" // unused: the instance serves the test's listener
	cfg.Backends = []config.Backend{{ID: "app-01", Address: address, Weight: 1}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return &cfg
}

// startInstance builds an instance from cfg, serves it on loopback and runs
// its prober, as serve does; everything stops when the test ends. Its
// reloads read *next.
func startInstance(t *testing.T, cfg *config.Config, next **config.Config) (*Instance, string) {
	t.Helper()
	in, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	in.Load = func() (*config.Config, error) { return *next, nil }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serveUntilEnd(t, in, ln)
	ctx, stopProber := context.WithCancel(context.Background())
	probed := make(chan error, 1)
	go func() { probed <- in.Prober().Run(ctx) }()
	t.Cleanup(func() {
		stopProber()
		if err := <-probed; !errors.Is(err, context.Canceled) {
			t.Errorf("prober Run = %v, want context.Canceled", err)
		}
	})
	return in, ln.Addr().String()
}

// serveUntilEnd serves in on ln until the test ends; then it shuts in
// down, checks that Serve returned ErrClosed, and closes in.
func serveUntilEnd(t *testing.T, in *Instance, ln net.Listener) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- in.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := in.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v after Shutdown, want ErrClosed", err)
		}
		in.Close()
	})
}

// echoThrough sends one line through the proxy at addr and reads it back.
func echoThrough(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo = %q, %v; want %q", buf, err, "ping\n")
	}
}

func TestReloadAppliesHealthAndAffinityInPlace(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	cfg.Health.Check, cfg.Health.Interval = "tcp", config.Duration(time.Hour)
	cfg.Affinity.TTL, cfg.Affinity.Capacity = config.Duration(time.Hour), 1000
	next := cfg
	in, proxy := startInstance(t, cfg, &next)
	table, prober := in.Table(), in.Prober()

	// The first probe comes at once, the next one an hour later.
	eventually.True(t, "the first health probe", func() bool { return backend.accepted.Load() >= 1 })
	echoThrough(t, proxy)
	pin, ok, err := in.Pin("127.0.0.1")
	if err != nil || !ok || pin.Backend != "app-01" {
		t.Fatalf("Pin(127.0.0.1) = %+v, %v, %v; want a pin to app-01", pin, ok, err)
	}

	changed := *cfg
	changed.Health.Interval = config.Duration(20 * time.Millisecond)
	changed.Affinity.TTL = config.Duration(30 * time.Minute)
	changed.Affinity.Capacity = 500
	next = &changed
	res, err := in.Reload(t.Context())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	wantItems := []string{"~health(interval 1h->20ms)", "~affinity(ttl 1h->30m, capacity 1000->500)"}
	if !slices.Equal(res.Changes, wantItems) || res.Summary != "reloaded: "+strings.Join(wantItems, " ") {
		t.Errorf("Reload = %+v, want changes %q", res, wantItems)
	}

	// The same prober and table carry on with the new settings.
	if in.Prober() != prober || in.Table() != table {
		t.Error("the reload replaced the prober or the affinity table")
	}
	if got := prober.Settings().Interval; got != 20*time.Millisecond {
		t.Errorf("prober interval %v, want 20ms", got)
	}
	if table.TTL() != 30*time.Minute || table.Capacity() != 500 {
		t.Errorf("table TTL %v, capacity %d; want 30m, 500", table.TTL(), table.Capacity())
	}
	base := backend.accepted.Load()
	eventually.True(t, "probes at the new 20ms interval", func() bool { return backend.accepted.Load() >= base+3 })

	// The pin survived, and expires by the new TTL.
	after, ok, err := in.Pin("127.0.0.1")
	if err != nil || !ok || after.Backend != "app-01" {
		t.Fatalf("Pin(127.0.0.1) after the reload = %+v, %v, %v; want the pin kept", after, ok, err)
	}
	if !after.Expires.Before(pin.Expires.Add(-29*time.Minute)) || !after.Expires.After(time.Now()) {
		t.Errorf("pin expires %v after the reload (was %v), want 30m after its last use", after.Expires, pin.Expires)
	}
}

func TestReloadRefusesAffinityPrefixChange(t *testing.T) {
	backend := startEchoBackend(t)
	cfg := testConfig(t, backend.ln.Addr().String())
	next := cfg
	in, _ := startInstance(t, cfg, &next)

	changed := *cfg
	changed.Affinity.IPv4Prefix = 24
	changed.Affinity.IPv6Prefix = 64
	changed.Affinity.TTL = config.Duration(time.Minute)
	next = &changed
	_, err := in.Reload(t.Context())
	var rerr *admin.ReloadError
	if !errors.As(err, &rerr) || len(rerr.Messages) != 2 ||
		!strings.HasPrefix(rerr.Messages[0], "affinity.ipv4_prefix: changed 32->24") ||
		!strings.HasPrefix(rerr.Messages[1], "affinity.ipv6_prefix: changed 128->64") {
		t.Fatalf("Reload = %v, want a ReloadError naming affinity.ipv4_prefix and affinity.ipv6_prefix", err)
	}
	// A refused reload changes nothing, not even what it could apply.
	if got := in.Table().TTL(); got != cfg.Affinity.TTL.D() {
		t.Errorf("table TTL %v after a refused reload, want %v", got, cfg.Affinity.TTL.D())
	}
}

func TestReloadTurnsChecksOnAndOff(t *testing.T) {
	cfg := testConfig(t, refusedAddress(t))
	cfg.Health.Check = "none"
	next := cfg
	in, _ := startInstance(t, cfg, &next)
	b := in.Pool().Registry().Get("app-01")
	if !b.Up() {
		t.Fatal("backend down with checks off")
	}

	// On: probing starts, and the refused backend goes down.
	on := *cfg
	on.Health.Check, on.Health.Interval, on.Health.Fall = "tcp", config.Duration(20*time.Millisecond), 1
	next = &on
	res, err := in.Reload(t.Context())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if want := "~health(check none->tcp, interval 2s->20ms, fall 3->1)"; !slices.Equal(res.Changes, []string{want}) {
		t.Errorf("changes %q, want [%s]", res.Changes, want)
	}
	eventually.True(t, "the refused backend to go down", func() bool { return !b.Up() })

	// Off: every backend is up at once.
	next = cfg
	if _, err := in.Reload(t.Context()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !b.Up() {
		t.Error("backend still down once checks are off")
	}
}

func TestNewPoolProberFollowsHealth(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:8081")
	cfg.Health.Check, cfg.Health.Path = "http", "/ready"
	cfg.Health.Interval, cfg.Health.Timeout = config.Duration(3*time.Second), config.Duration(500*time.Millisecond)
	cfg.Health.Rise, cfg.Health.Fall = 4, 5
	p, err := NewPool(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	got := p.Prober.Settings()
	if check, ok := got.Checker.(*backend.HTTPCheck); !ok || check.Path != "/ready" ||
		got.Interval != 3*time.Second || got.Timeout != 500*time.Millisecond || got.Rise != 4 || got.Fall != 5 {
		t.Errorf("prober settings %+v, want an http check of /ready every 3s, timeout 500ms, rise 4, fall 5", got)
	}
	if p.Prober.Rise != 4 || p.Prober.Fall != 5 {
		t.Errorf("prober fields rise %d, fall %d; want the starting settings, 4 and 5", p.Prober.Rise, p.Prober.Fall)
	}

	cfg.Health.Check = "none"
	p, err = NewPool(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	if p.Prober == nil || p.Prober.Settings().Checker != nil {
		t.Errorf("with checks off: prober %v, want one without a checker", p.Prober)
	}
}

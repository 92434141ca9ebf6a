package l4

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/underload"
)

// A shorter idle timeout applies to the connections accepted after the
// change; a connection open before it keeps the bound it was accepted with.
func TestReconfigureIdleTimeoutAppliesToNewConnections(t *testing.T) {
	// An hour: the older connection's deadline comes long after the new
	// one's, which must not wait behind it.
	f := newFixture(t, fixtureOpts{n: 1, idle: time.Hour})
	old := dialFrom(t, "127.0.0.31", f.addr)
	defer old.Close()
	oldR := bufio.NewReader(old)
	if _, err := oldR.ReadString('\n'); err != nil {
		t.Fatalf("greeting before the change: %v", err)
	}

	const idle = 200 * time.Millisecond
	if err := f.proxy.Reconfigure(Settings{Selector: &backend.RoundRobin{}, ConnectTimeout: time.Second, IdleTimeout: idle}); err != nil {
		t.Fatal(err)
	}
	start := time.Now() // before the greeting the idle timeout runs from
	c := dialFrom(t, "127.0.0.32", f.addr)
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("greeting after the change: %v", err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("read on an idle connection accepted after the change: %v, want EOF from the proxy", err)
	}
	if took := time.Since(start); took < idle-50*time.Millisecond || took > idle+5*time.Second {
		t.Errorf("closed after %v, want about %v", took, idle)
	}

	// The older connection has been idle longer than the new timeout, and
	// still relays.
	if _, err := old.Write([]byte("x")); err != nil {
		t.Fatalf("write on the connection open before the change: %v", err)
	}
	if b, err := oldR.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo on the connection open before the change: %q, %v", b, err)
	}
}

// A new balance policy places the clients that arrive after the change.
// Two clients held on one backend make the difference: round robin keeps
// alternating, least connections sends every newcomer to the other one.
func TestReconfigurePolicyTakesEffect(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, policy: "roundrobin"})
	var busy string // the backend holding two clients
	var held []string
	for i := 0; len(held) < 2; i++ {
		if i > 8 {
			t.Fatalf("round robin put no two of %d clients on one backend", i)
		}
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 40+i), f.addr)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v", err)
		}
		id := strings.TrimSpace(line)
		if busy == "" {
			busy = id
		}
		if id != busy {
			c.Close()
			continue
		}
		defer c.Close()
		held = append(held, id)
	}
	var other *backend.Backend
	for _, b := range f.registry.All() {
		if b.ID != busy {
			other = b
		}
	}
	idleOther := func() bool { return other.Active() == 0 }

	// Round robin first: of two newcomers, one goes to the busy backend.
	eventually.True(t, "the other backend's connections to close", idleOther)
	got := map[string]int{}
	for i := range 2 {
		got[greeting(t, fmt.Sprintf("127.0.0.%d", 60+i), f.addr)]++
		eventually.True(t, "the other backend's connections to close", idleOther)
	}
	if got[busy] != 1 {
		t.Fatalf("round robin placed newcomers %v, want one on %s", got, busy)
	}

	if err := f.proxy.Reconfigure(Settings{Selector: &backend.LeastConn{}}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if id := greeting(t, fmt.Sprintf("127.0.0.%d", 70+i), f.addr); id != other.ID {
			t.Fatalf("newcomer %d after the change to leastconn went to %s, want %s (the one without clients)", i, id, other.ID)
		}
		eventually.True(t, "the other backend's connections to close", idleOther)
	}
}

// Settings without a selector are refused and change nothing.
func TestReconfigureNeedsSelector(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	before := f.proxy.tuned.Load()
	if err := f.proxy.Reconfigure(Settings{IdleTimeout: time.Millisecond}); !errors.Is(err, errNoSelector) {
		t.Fatalf("Reconfigure without a selector: %v, want errNoSelector", err)
	}
	if f.proxy.tuned.Load() != before {
		t.Fatal("refused settings were applied")
	}
	if got := greeting(t, "127.0.0.33", f.addr); got != f.backends[0].id {
		t.Fatalf("greeting from %s, want %s", got, f.backends[0].id)
	}
}

// Settings change again and again while clients connect and relay: every
// connection is served, the event loop keeps each timeout's sessions in
// its own queue, and the race detector sees the settings read only through
// the proxy's published pointer.
func TestReconfigureUnderLoad(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2, idle: 10 * time.Second})
	variants := []Settings{
		{Selector: &backend.RoundRobin{}, ConnectTimeout: time.Second, IdleTimeout: 10 * time.Second},
		{Selector: &backend.LeastConn{}, ConnectTimeout: 2 * time.Second, IdleTimeout: 5 * time.Second},
		{Selector: &backend.Random2{}, ConnectTimeout: 3 * time.Second},
	}
	underload.Run(t, "changes", 4, 30,
		func(g, i int) error { return echoOnce(fmt.Sprintf("127.0.1.%d", 1+(g*50+i)%200), f.addr) },
		func(i int) error { return f.proxy.Reconfigure(variants[(i+1)%len(variants)]) })
}

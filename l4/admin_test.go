package l4

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// pinClients connects once from each of n source addresses 127.0.10.1...
// and returns the backend each was pinned to, by source address.
func pinClients(t *testing.T, f *fixture, n int) map[string]string {
	t.Helper()
	pins := make(map[string]string, n)
	for i := range n {
		src := fmt.Sprintf("127.0.10.%d", i+1)
		pins[src] = greeting(t, src, f.addr)
	}
	return pins
}

// clientsOf returns the source addresses pinned to id, at least one.
func clientsOf(t *testing.T, pins map[string]string, id string) []string {
	t.Helper()
	var srcs []string
	for src, got := range pins {
		if got == id {
			srcs = append(srcs, src)
		}
	}
	if len(srcs) == 0 {
		t.Fatalf("no client pinned to %s: %v", id, pins)
	}
	return srcs
}

// checkNewClientsAvoid connects n clients never seen before, from
// 127.0.11.1..., and fails the test if any lands on id.
func checkNewClientsAvoid(t *testing.T, f *fixture, id string, n int) {
	t.Helper()
	for i := range n {
		src := fmt.Sprintf("127.0.11.%d", i+1)
		if got := greeting(t, src, f.addr); got == id {
			t.Errorf("new client %s landed on %s", src, id)
		}
	}
}

// TestDrainKeepsPinnedClients drains app-02 with no deadline: the clients
// pinned to it keep it, connection after connection, and no new client
// lands there. Served counts every connection it took.
func TestDrainKeepsPinnedClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	pins := pinClients(t, f, 9)
	b := f.registry.Get("app-02")
	b.SetAdmin(backend.Drain, time.Time{})
	before := b.Served()
	for range 3 {
		for src, want := range pins {
			if got := greeting(t, src, f.addr); got != want {
				t.Errorf("client %s pinned to %s went to %s during the drain", src, want, got)
			}
		}
	}
	checkNewClientsAvoid(t, f, "app-02", 12)
	if st := f.table.Stats(); st.Repins != 0 {
		t.Errorf("repins = %d during a drain without deadline, want 0", st.Repins)
	}
	if got, want := b.Served()-before, uint64(3*len(clientsOf(t, pins, "app-02"))); got != want {
		t.Errorf("app-02 served %d connections during the drain, want %d (its pinned clients' only)", got, want)
	}
}

// TestDrainDeadlineMovesPinnedClientsOnce drains app-02 with a deadline:
// before it the pinned clients keep app-02; once it has passed, each moves
// at its next connection, with one re-pin, and stays where it moved.
func TestDrainDeadlineMovesPinnedClientsOnce(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	pins := pinClients(t, f, 9)
	drained := clientsOf(t, pins, "app-02")
	b := f.registry.Get("app-02")

	b.SetAdmin(backend.Drain, time.Now().Add(time.Hour))
	if n := f.table.CountByBackend()["app-02"]; n != len(drained) {
		t.Errorf("draining app-02 counts %d pinned clients, want %d", n, len(drained))
	}
	for _, src := range drained {
		if got := greeting(t, src, f.addr); got != "app-02" {
			t.Errorf("client %s left app-02 before the drain's deadline, for %s", src, got)
		}
	}
	checkNewClientsAvoid(t, f, "app-02", 6)

	// The operator shortens the drain; the test waits for the deadline
	// itself to pass.
	b.SetAdmin(backend.Drain, time.Now().Add(20*time.Millisecond))
	eventually.True(t, "the drain deadline", func() bool { return !b.KeepsPinned(time.Now()) })
	moved := make(map[string]string)
	for _, src := range drained {
		got := greeting(t, src, f.addr)
		if got == "app-02" {
			t.Errorf("client %s still on app-02 after the drain's deadline", src)
		}
		moved[src] = got
	}
	if st := f.table.Stats(); st.Repins != uint64(len(drained)) {
		t.Errorf("repins = %d, want %d (one per client of app-02)", st.Repins, len(drained))
	}
	// What an operator watches to know the drain is over.
	if n := f.table.CountByBackend()["app-02"]; n != 0 {
		t.Errorf("app-02 still has %d pinned clients after they all moved", n)
	}
	for range 2 {
		for src, want := range moved {
			if got := greeting(t, src, f.addr); got != want {
				t.Errorf("client %s moved to %s, then went to %s", src, want, got)
			}
		}
	}
	for src, want := range pins {
		if want != "app-02" {
			if got := greeting(t, src, f.addr); got != want {
				t.Errorf("client %s of %s went to %s", src, want, got)
			}
		}
	}
	if st := f.table.Stats(); st.Repins != uint64(len(drained)) {
		t.Errorf("repins = %d after the moved clients came back, want still %d", st.Repins, len(drained))
	}
}

// TestMaintMovesPinnedClientsAtNextConnection puts app-02 in maintenance:
// a connection already open to it keeps flowing, its pinned clients move
// at their next connection (one re-pin each) and stay moved, also once
// app-02 is ready again.
func TestMaintMovesPinnedClientsAtNextConnection(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	pins := pinClients(t, f, 9)
	onApp02 := clientsOf(t, pins, "app-02")

	open := dialFrom(t, onApp02[0], f.addr)
	defer open.Close()
	r := bufio.NewReader(open)
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "app-02" {
		t.Fatalf("open connection greeting = %q, %v; want app-02", line, err)
	}

	b := f.registry.Get("app-02")
	b.SetAdmin(backend.Maint, time.Time{})
	moved := make(map[string]string)
	for _, src := range onApp02 {
		got := greeting(t, src, f.addr)
		if got == "app-02" {
			t.Errorf("client %s reached app-02 in maintenance", src)
		}
		moved[src] = got
	}
	if st := f.table.Stats(); st.Repins != uint64(len(onApp02)) {
		t.Errorf("repins = %d, want %d (one per client of app-02)", st.Repins, len(onApp02))
	}
	checkNewClientsAvoid(t, f, "app-02", 6)

	if _, err := open.Write([]byte("still here\n")); err != nil {
		t.Fatalf("write on the connection open before maint: %v", err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Errorf("echo on the connection open before maint = %q, %v", line, err)
	}

	b.SetAdmin(backend.Ready, time.Time{})
	for src, want := range moved {
		if got := greeting(t, src, f.addr); got != want {
			t.Errorf("client %s moved to %s, then went to %s once app-02 was ready", src, want, got)
		}
	}
	if st := f.table.Stats(); st.Repins != uint64(len(onApp02)) {
		t.Errorf("repins = %d, want still %d", st.Repins, len(onApp02))
	}
}

// TestCloseConnsEndsOnlyThatBackendsConnections opens connections to every
// backend, puts app-02 in maintenance and closes its connections: theirs
// end at once (the backend sees them closed and its count of active
// connections falls to 0), the others keep flowing, and app-02's clients
// reconnect elsewhere.
func TestCloseConnsEndsOnlyThatBackendsConnections(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 3})
	type open struct {
		src string
		c   *net.TCPConn
		r   *bufio.Reader
		on  string
	}
	var conns []*open
	for i := range 9 {
		o := &open{src: fmt.Sprintf("127.0.12.%d", i+1)}
		o.c = dialFrom(t, o.src, f.addr)
		defer o.c.Close()
		o.r = bufio.NewReader(o.c)
		line, err := o.r.ReadString('\n')
		if err != nil {
			t.Fatalf("client %s: greeting: %v", o.src, err)
		}
		o.on = strings.TrimSpace(line)
		conns = append(conns, o)
	}
	b := f.registry.Get("app-02")
	if b.Active() == 0 {
		t.Fatalf("no connection open to app-02")
	}
	b.SetAdmin(backend.Maint, time.Time{})
	f.proxy.CloseConns("app-02")

	for _, o := range conns {
		if o.on != "app-02" {
			continue
		}
		// The read ends with the close, long before the deadline.
		o.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := o.r.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client %s of app-02: read %d, %v; want the connection closed", o.src, n, err)
		}
	}
	eventually.True(t, "app-02's connections to close", func() bool { return b.Active() == 0 && f.backends[1].OpenConns() == 0 })
	for _, o := range conns {
		if o.on == "app-02" {
			if got := greeting(t, o.src, f.addr); got == "app-02" {
				t.Errorf("client %s reconnected to app-02 in maintenance", o.src)
			}
			continue
		}
		msg := "from " + o.src + "\n"
		if _, err := o.c.Write([]byte(msg)); err != nil {
			t.Errorf("client %s of %s: write: %v", o.src, o.on, err)
			continue
		}
		if line, err := o.r.ReadString('\n'); err != nil || line != msg {
			t.Errorf("client %s of %s: echo %q, %v; want %q", o.src, o.on, line, err, msg)
		}
	}
}

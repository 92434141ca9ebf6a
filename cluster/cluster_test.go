package cluster

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// member is one node under test with its own table and the admin states
// applied to it.
type member struct {
	*Node
	table *affinity.Table
	mu    sync.Mutex
	admin map[string]backend.AdminState
}

func (m *member) adminOf(id string) backend.AdminState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.admin[id]
}

// start starts a member bound to ip on a free port, joining join, with
// options changed by tweak.
func start(t *testing.T, ip string, join []string, tweak func(*Options)) *member {
	t.Helper()
	m := &member{table: affinity.New(affinity.Options{}), admin: map[string]backend.AdminState{}}
	opts := Options{
		Bind:     ip + ":0",
		Name:     ip,
		Join:     join,
		Gossip:   20 * time.Millisecond,
		PushPull: time.Hour, // only the join exchanges whole state, unless a test says
		Table:    m.table,
		Apply: func(id string, s backend.AdminState, _ time.Time) {
			m.mu.Lock()
			m.admin[id] = s
			m.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&opts)
	}
	n, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	m.Node = n
	t.Cleanup(func() {
		n.Close()
		m.table.Close()
	})
	return m
}

func k(s string) affinity.Key { return affinity.KeyOf(netip.MustParseAddr(s), 32, 128) }

func pinned(m *member, key affinity.Key, id string) func() bool {
	return func() bool {
		got, _, ok := m.table.Get(key)
		return ok && got == id
	}
}

func TestPinsAndRepinsReachTheOtherMember(t *testing.T) {
	a := start(t, "127.0.0.2", nil, nil)
	b := start(t, "127.0.0.3", []string{a.Address()}, nil)
	eventually.True(t, "two members", func() bool { return a.Stats().Members == 2 && b.Stats().Members == 2 })

	client := k("203.0.113.7")
	pin(a.table, client, "app-01")
	eventually.True(t, "b learns the pin", pinned(b, client, "app-01"))
	a.table.PinIf(client, "app-01", "app-02") // a re-pin after a failure seen by a alone
	eventually.True(t, "b learns the re-pin", pinned(b, client, "app-02"))

	// And the other way.
	other := k("203.0.113.8")
	pin(b.table, other, "app-03")
	eventually.True(t, "a learns b's pin", pinned(a, other, "app-03"))
	if st := b.Stats(); st.PinsSent < 1 || st.PinsApplied < 2 {
		t.Errorf("b's stats %+v: want a pin sent and two applied", st)
	}

	// A pin the operator forgets on one member is forgotten on the other.
	a.table.Forget(client)
	eventually.True(t, "b forgets the pin", func() bool { _, _, ok := b.table.Get(client); return !ok })
}

// A member that starts (or restarts) with an empty table has every pin of
// the member it joins when Start returns, before it could take traffic.
func TestJoinBringsTheWholeTable(t *testing.T) {
	a := start(t, "127.0.0.2", nil, nil)
	for i := range 500 {
		pin(a.table, k(fmt.Sprintf("10.1.%d.%d", i/256, i%256)), fmt.Sprintf("app-%02d", i%7))
	}
	a.table.PinIf(k("10.1.0.3"), "app-03", "app-06")
	a.PublishAdmin("app-02", backend.Drain, time.Time{})
	c := start(t, "127.0.0.4", []string{a.Address()}, nil)
	if got := c.table.Stats().Size; got != 500 {
		t.Errorf("joined member holds %d pins, want 500", got)
	}
	if id, _, _ := c.table.Get(k("10.1.0.3")); id != "app-06" {
		t.Errorf("re-pinned key is on %q, want app-06", id)
	}
	if got := c.adminOf("app-02"); got != backend.Drain {
		t.Errorf("joined member has app-02 %s, want drain", got)
	}
}

func TestAdminStatesReplicateLatestWins(t *testing.T) {
	a := start(t, "127.0.0.2", nil, nil)
	b := start(t, "127.0.0.3", []string{a.Address()}, nil)
	a.PublishAdmin("app-01", backend.Drain, time.Now().Add(time.Minute))
	eventually.True(t, "b drains app-01", func() bool { return b.adminOf("app-01") == backend.Drain })
	b.PublishAdmin("app-01", backend.Ready, time.Time{})
	eventually.True(t, "a readies app-01 again", func() bool { return a.adminOf("app-01") == backend.Ready })
	// b's state is later than a's: a's old one, arriving late, loses.
	a.applyAdmin("app-01", adminState{state: backend.Maint, stamp: 1})
	if got := a.adminOf("app-01"); got != backend.Ready {
		t.Errorf("a stale maint applied: app-01 is %s", got)
	}
}

// Two members pin one client to different backends at once: both end up
// with the same pin, the one with the later stamp.
func TestConcurrentPinsConverge(t *testing.T) {
	a := start(t, "127.0.0.2", nil, nil)
	b := start(t, "127.0.0.3", []string{a.Address()}, nil)
	for i := range 50 {
		key := k(fmt.Sprintf("10.2.0.%d", i))
		pin(a.table, key, "app-a")
		pin(b.table, key, "app-b")
	}
	eventually.True(t, "both members agree on every key", func() bool {
		for i := range 50 {
			key := k(fmt.Sprintf("10.2.0.%d", i))
			ida, _, _ := a.table.Get(key)
			idb, _, _ := b.table.Get(key)
			if ida != idb {
				return false
			}
		}
		return true
	})
}

// A member that missed broadcasts converges at the next periodic push/pull.
func TestPushPullRepairs(t *testing.T) {
	fast := func(o *Options) { o.PushPull = 100 * time.Millisecond }
	a := start(t, "127.0.0.2", nil, fast)
	b := start(t, "127.0.0.3", []string{a.Address()}, fast)
	key := k("10.3.0.1")
	// Merged, not pinned: nothing is broadcast, only the push/pull carries it.
	now := time.Now().UnixNano()
	a.table.Merge(key, "app-09", now, now)
	eventually.True(t, "b learns the pin at a push/pull", pinned(b, key, "app-09"))
}

func TestSecretKey(t *testing.T) {
	key1, _ := base64.StdEncoding.DecodeString("c2l4dGVlbiBieXRlIGtleQ==")
	key2 := []byte("another 16 bytes")
	a := start(t, "127.0.0.2", nil, func(o *Options) { o.SecretKey = key1 })
	b := start(t, "127.0.0.3", []string{a.Address()}, func(o *Options) { o.SecretKey = key1 })
	eventually.True(t, "members with one key join", func() bool { return a.Stats().Members == 2 })
	c := start(t, "127.0.0.4", []string{a.Address()}, func(o *Options) { o.SecretKey = key2 })
	client := k("10.4.0.1")
	pin(a.table, client, "app-01")
	eventually.True(t, "b learns the pin", pinned(b, client, "app-01"))
	if c.Stats().Members != 1 {
		t.Errorf("a member with another key joined: %+v", c.Members())
	}
	if _, _, ok := c.table.Get(client); ok {
		t.Error("a member with another key learnt a pin")
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	a := start(t, "127.0.0.2", nil, func(o *Options) { o.QueueSize = 2 })
	const pins = 1000
	for i := range pins {
		pin(a.table, k(fmt.Sprintf("10.5.%d.%d", i/256, i%256)), "x")
	}
	eventually.True(t, "every pin sent or dropped", func() bool {
		st := a.Stats()
		return st.PinsSent+st.PinsDropped == pins
	})
	if st := a.Stats(); st.PinsDropped == 0 {
		t.Errorf("stats %+v: a burst of %d pins through a queue of 2 dropped none", st, pins)
	}
}

func TestCloseLeavesNothingBehind(t *testing.T) {
	base := leakcheck.Take(t)
	a := start(t, "127.0.0.2", nil, nil)
	b := start(t, "127.0.0.3", []string{a.Address()}, nil)
	eventually.True(t, "two members", func() bool { return a.Stats().Members == 2 })
	b.Close()
	eventually.True(t, "a sees b leave", func() bool { return a.Stats().Members == 1 })
	a.Close()
	a.table.Close()
	b.table.Close()
	base.Wait(t, 20*time.Second)
}

// A member whose join address does not answer yet (it started first, or
// was cut off) joins once it does, and gets the table then.
func TestRejoinWhenTheOtherComesUp(t *testing.T) {
	period := rejoinPeriod
	rejoinPeriod = 50 * time.Millisecond
	defer func() { rejoinPeriod = period }()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := start(t, "127.0.0.3", []string{addr}, nil)
	if b.Stats().Members != 1 {
		t.Fatalf("b joined nobody, yet has %+v", b.Members())
	}
	a := start(t, "127.0.0.2", nil, func(o *Options) { o.Bind = addr })
	key := k("10.6.0.1")
	now := time.Now().UnixNano()
	a.table.Merge(key, "app-04", now, now)
	eventually.True(t, "b joins a and learns its table", pinned(b, key, "app-04"))
}

func FuzzDecode(f *testing.F) {
	now := time.Now().UnixNano()
	msg := appendPin([]byte{wireVersion}, affinity.Stamped{Key: k("10.0.0.1"), ID: "app-01", Stamp: now, Used: now})
	msg = appendAdmin(msg, "app-02", adminState{state: backend.Drain, until: now, stamp: now})
	f.Add(msg)
	f.Add([]byte{wireVersion, kindPin, 1, 2})
	f.Add([]byte{wireVersion, kindAdmin, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out []byte
		err := decode(b, func(p affinity.Stamped) {
			out = appendPin(out, p)
		}, func(id string, a adminState) {
			if a.state > backend.Maint {
				t.Errorf("admin state %d decoded", a.state)
			}
			out = appendAdmin(out, id, a)
		})
		// What decodes whole encodes back to the same bytes.
		if err == nil && string(append([]byte{wireVersion}, out...)) != string(b) {
			t.Errorf("decode then encode of %x gave %x", b, out)
		}
	})
}

// pin points k at backend id in tb whatever k pointed at, as a client's
// connection does that chooses id (the tables pin conditionally: PinIf).
func pin(tb *affinity.Table, k affinity.Key, id string) {
	cur := tb.PinIf(k, "", id)
	tb.PinIf(k, cur, id)
}

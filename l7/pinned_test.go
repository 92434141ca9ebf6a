package l7

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// splitmix returns the i-th output of SplitMix64 from seed: distinct,
// well mixed keys, the same on every run.
func splitmix(seed, i uint64) uint64 {
	z := seed + (i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func TestPinCountAccuracy(t *testing.T) {
	for _, n := range []int{10, 100, 1000, 5000, 10000} {
		for seed := range uint64(3) {
			var c pinCount
			for i := range n {
				// A client sends several requests: each counts once.
				for range 3 {
					c.add(splitmix(seed, uint64(i)), 7)
				}
			}
			got := c.count(7)
			if diff := float64(got-n) / float64(n); diff > 0.04 || diff < -0.04 {
				t.Errorf("%d distinct keys (seed %d) counted as %d: %.1f%% off, want within 4%%", n, seed, got, 100*diff)
			}
		}
	}
}

// Up to 128 clients a minute the count is exact, for every seed,
// across both windows, and with keys seen in both counted once; past the
// exact set it is the sketch's estimate.
func TestPinCountExactForFewClients(t *testing.T) {
	for _, n := range []int{1, 2, 30, 120, 190} {
		for seed := range uint64(300) {
			var c pinCount
			for i := range n {
				key := splitmix(seed, uint64(i))
				if i%3 != 0 {
					c.add(key, 7)
				}
				if i%3 != 1 {
					c.add(key, 8) // a third only in minute 8, a third in both
				}
			}
			if got := c.count(8); got != n {
				t.Fatalf("%d keys (seed %d) over two minutes counted as %d, want exactly %d", n, seed, got, n)
			}
		}
	}
	var c pinCount
	for i := range 1000 {
		c.add(splitmix(5, uint64(i)), 7)
	}
	if !c.windows[1].full.Load() {
		t.Fatal("1000 keys fit in the exact set of 128")
	}
	if got := c.count(7); got < 940 || got > 1060 {
		t.Errorf("1000 keys past the exact set counted as %d, want within 6%% (four standard errors)", got)
	}
}

// Client addresses through the hash the proxy uses, with this process's
// seed: the seed differs from run to run, so the bound is 6%, over four
// standard errors.
func TestPinCountClientAddresses(t *testing.T) {
	var c pinCount
	const n = 2000
	for i := range n {
		c.add(pinClientKey(fmt.Appendf(nil, "10.%d.%d.%d", i>>16, i>>8&0xff, i&0xff)), 3)
	}
	c.add(pinClientKey([]byte("10.0.0.0")), 3) // the first address again
	if got := c.count(3); got < n*94/100 || got > n*106/100 {
		t.Errorf("%d client addresses counted as %d, want within 6%%", n, got)
	}
}

// A key stays counted in its minute and the next, and is gone after; the
// first key of a minute clears the window of two minutes before.
func TestPinCountWindows(t *testing.T) {
	var c pinCount
	add := func(from, n int, minute int64) {
		for i := from; i < from+n; i++ {
			c.add(splitmix(1, uint64(i)), minute)
		}
	}
	check := func(minute int64, want int) {
		t.Helper()
		if got := c.count(minute); got < want*95/100 || got > want*105/100+1 {
			t.Errorf("count at minute %d = %d, want about %d", minute, got, want)
		}
	}
	add(0, 100, 10)
	check(10, 100)
	check(11, 100) // the previous minute still counts
	check(12, 0)   // two minutes on: gone
	add(100, 50, 11)
	add(0, 100, 11) // the same keys in a new minute are not new clients
	check(11, 150)
	check(12, 150) // both were seen in minute 11
	add(1000, 20, 12)
	check(12, 170)
	check(13, 20) // minute 11's keys are gone, minute 12's stay
	add(2000, 5, 14)
	// Minute 12's window was cleared by minute 14's first key: count(14)
	// takes minute 13 (none) and 14.
	if got := c.count(14); got != 5 {
		t.Errorf("count at minute 14 = %d, want 5", got)
	}
	check(100, 0) // idle for long: nothing
}

// Concurrent adds and counts, for the race detector, lose no key once the
// minute's window is in use (keys that come while the first key of a
// minute clears it are not counted: see add).
func TestPinCountConcurrent(t *testing.T) {
	var c pinCount
	c.add(splitmix(9, 0), 5)
	var wg sync.WaitGroup
	const workers, per = 4, 2000
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				c.add(splitmix(9, uint64(w*per+i)), 5)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			c.count(5)
		}
	})
	wg.Wait()
	if got, n := c.count(5), workers*per; got < n*96/100 || got > n*104/100 {
		t.Errorf("%d keys added concurrently counted as %d", n, got)
	}
}

func TestPinCountAddAllocatesNothing(t *testing.T) {
	var c pinCount
	i := uint64(0)
	if n := testing.AllocsPerRun(1000, func() { i++; c.add(splitmix(2, i), 1+int64(i/300)) }); n != 0 {
		t.Errorf("add allocates %v times per call, want 0", n)
	}
}

// sendWithCookie sends n requests from source over one connection, each
// with a cookie for id, and fails unless id answers every one.
func sendWithCookie(t *testing.T, addr, source, id string, n int) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", source, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for range n {
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=%s\r\n\r\n", id); err != nil {
			t.Fatal(err)
		}
		resp, body := readResponse(t, br, "GET")
		if strings.TrimSpace(body) != id {
			t.Fatalf("client %s with a cookie for %s: answered %d %q", source, id, resp.StatusCode, body)
		}
	}
}

// TestPinnedCountsCookieClients: clients, each from its own address, send
// requests with a cookie for app-02, some over several connections:
// Pinned shows as many for app-02 and none for app-01. Requests
// without a cookie, and with a cookie app-02 no longer honours, count for
// no one.
func TestPinnedCountsCookieClients(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 2})
	const n = 40
	for i := range n {
		src := fmt.Sprintf("127.0.46.%d", i+1)
		sendWithCookie(t, f.addr, src, "app-02", 2)
		if i%4 == 0 {
			sendWithCookie(t, f.addr, src, "app-02", 1) // a second connection
		}
	}
	// New clients, placed without a cookie.
	for range 4 {
		get(t, f.client(t), f.url("/"))
	}
	if got := f.proxy.Pinned("app-02"); got != n {
		t.Errorf("Pinned(app-02) = %d, want %d", got, n)
	}
	if got := f.proxy.Pinned("app-01"); got != 0 {
		t.Errorf("Pinned(app-01) = %d, want 0: no request came with its cookie", got)
	}
	if got := f.proxy.Pinned("app-09"); got != 0 {
		t.Errorf("Pinned of an unknown backend = %d, want 0", got)
	}

	// In maintenance app-02 keeps nobody: cookies for it are not counted.
	f.registry.Get("app-02").SetAdmin(backend.Maint, time.Time{})
	before := f.proxy.Pinned("app-02")
	for range 10 {
		get(t, f.client(t), f.url("/"), "Cookie", "SERVERID=app-02")
	}
	// Those clients came from 127.0.0.1, which no earlier request used.
	if got := f.proxy.Pinned("app-02"); got != before {
		t.Errorf("Pinned(app-02) went from %d to %d with cookies it no longer honours", before, got)
	}
}

// BenchmarkPinCountAdd measures add for a client already counted (the
// common case: its later requests) and for a new client each time.
func BenchmarkPinCountAdd(b *testing.B) {
	b.Run("known", func(b *testing.B) {
		var c pinCount
		key := splitmix(3, 0)
		b.ReportAllocs()
		for b.Loop() {
			c.add(key, 1)
		}
	})
	b.Run("new", func(b *testing.B) {
		var c pinCount
		b.ReportAllocs()
		i := uint64(0)
		for b.Loop() {
			i++
			c.add(splitmix(3, i), 1)
		}
	})
}

package l4

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// concurrentGreetings opens n connections from src at once and returns how
// many reached each backend.
func concurrentGreetings(t *testing.T, n int, src, addr string) map[string]int {
	t.Helper()
	got := make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Errorf("dial from %s: %v", src, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Errorf("greeting: %v", err)
				return
			}
			mu.Lock()
			got[strings.TrimSpace(line)]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// The first connections of a new client that arrive together must all be
// pinned to one backend, not each to its own with the last pin winning.
func TestConcurrentFirstConnectionsOfOneClientShareABackend(t *testing.T) {
	for i := range 5 {
		f := newFixture(t, fixtureOpts{n: 3})
		if got := concurrentGreetings(t, 16, "127.0.0.21", f.addr); len(got) != 1 {
			t.Fatalf("try %d: 16 concurrent first connections from one address reached %v, want one backend", i, got)
		}
		if st := f.table.Stats(); st.Repins != 0 {
			t.Errorf("try %d: %d re-pins for a client that never moved", i, st.Repins)
		}
	}
}

// When the pinned backend dies, connections of that client that fail over
// together must all land on one new backend.
func TestConcurrentFailoverOfOneClientRepinsToOneBackend(t *testing.T) {
	for i := range 5 {
		f := newFixture(t, fixtureOpts{n: 3, prober: true})
		const client = "127.0.0.22"
		first := greeting(t, client, f.addr)
		for _, b := range f.backends {
			if b.id == first {
				b.Kill()
			}
		}
		got := concurrentGreetings(t, 16, client, f.addr)
		if len(got) != 1 || got[first] != 0 {
			t.Fatalf("try %d: 16 concurrent failovers from one address reached %v, want one backend other than %s", i, got, first)
		}
		if st := f.table.Stats(); st.Repins != 1 {
			t.Errorf("try %d: %d re-pins, want 1", i, st.Repins)
		}
	}
}

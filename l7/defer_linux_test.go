package l7

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// Clients that connect and say nothing wait in the kernel, not in the
// proxy: they cost no goroutine until their first bytes arrive, and are
// then served as usual.
func TestSilentClientsWaitInTheKernel(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1, configure: func(p *Proxy) { p.HeaderTimeout = time.Minute }})
	const n = 20
	before := runtime.NumGoroutine()
	var cs []net.Conn
	for range n {
		cs = append(cs, dialProxy(t, f.addr))
	}
	time.Sleep(200 * time.Millisecond)
	if g := runtime.NumGoroutine(); g >= before+n/2 {
		t.Errorf("%d goroutines with %d silent clients connected, %d before: their connections were handed to the proxy", g, n, before)
	}
	for i, c := range cs {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := readResponse(t, bufio.NewReader(c), "GET"); resp.StatusCode != 200 {
			t.Errorf("client %d: status %d once it spoke, want 200", i, resp.StatusCode)
		}
	}
}

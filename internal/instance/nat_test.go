package instance

import (
	"fmt"
	"math"
	"net"
	"testing"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
)

// TestNATViewL4 holds ten connections open from one source and one from
// another: the first leads both lists and is flagged, the skew is what
// pinning the two sources to two backends gives, and closing the
// connections brings the open count back to zero.
func TestNATViewL4(t *testing.T) {
	cfg := testConfig(t, startEchoBackend(t).ln.Addr().String())
	cfg.Backends = append(cfg.Backends, config.Backend{ID: "app-02", Address: startEchoBackend(t).ln.Addr().String(), Weight: 1})
	in, addr := startInstance(t, cfg, &cfg)
	dial := dialer(t, addr)
	var conns []net.Conn
	for range 10 {
		conns = append(conns, dial("127.0.80.1"))
	}
	conns = append(conns, dial("127.0.80.2"))

	v := in.NAT(20)
	if v.Mode != "l4" || len(v.Sources) != 2 || len(v.ByConnections) != 2 {
		t.Fatalf("view %+v, want two sources in both lists", v)
	}
	top, other := v.ByConnections[0], v.ByConnections[1]
	if top.Key != "127.0.80.1" || top.Connections != 10 || !top.NAT || top.Sessions < 9 || top.Sessions > 11 {
		t.Errorf("busiest %+v, want 127.0.80.1 with 10 open connections and ports, flagged", top)
	}
	if other.Key != "127.0.80.2" || other.Connections != 1 || other.NAT {
		t.Errorf("second %+v, want 127.0.80.2 with 1 connection, not flagged", other)
	}
	if v.Sources[0].Key != "127.0.80.1" || v.Sources[0].ConnRate <= 0 {
		t.Errorf("by rate %+v, want 127.0.80.1 first", v.Sources)
	}
	// Pinned by source, the ten go to one backend and the one to the
	// other: 10 against a mean of 5.5.
	if want := 10 / 5.5; math.Abs(v.IPAffinitySkew-want) > 0.01 {
		t.Errorf("skew %v, want %.2f", v.IPAffinitySkew, want)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually.True(t, "the view to show no open connection", func() bool {
		return len(in.NAT(20).ByConnections) == 0
	})
}

// dialer returns a function that opens a connection to the proxy at addr
// from src and waits for its first echo, so that it is pinned.
func dialer(t *testing.T, addr string) func(src string) net.Conn {
	return func(src string) net.Conn {
		t.Helper()
		c := dialFrom(t, src, addr)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("echo from %s: %v", src, err)
		}
		return c
	}
}

// TestNATViewMaglev places sources by the live Maglev table: the shares
// the view gives are the ones the pins show.
func TestNATViewMaglev(t *testing.T) {
	cfg := testConfig(t, startEchoBackend(t).ln.Addr().String())
	for _, id := range []string{"app-02", "app-03"} {
		cfg.Backends = append(cfg.Backends, config.Backend{ID: id, Address: startEchoBackend(t).ln.Addr().String(), Weight: 1})
	}
	cfg.Balance.Policy = "maglev"
	in, addr := startInstance(t, cfg, &cfg)
	dial := dialer(t, addr)
	loads := map[string]float64{}
	total := 0.0
	for i := range 12 {
		src := fmt.Sprintf("127.0.81.%d", i+1)
		for range i + 1 {
			dial(src).Close()
		}
		pin, ok, err := in.Pin(src)
		if err != nil || !ok {
			t.Fatalf("%s not pinned: %v", src, err)
		}
		loads[pin.Backend] += float64(i + 1)
		total += float64(i + 1)
	}
	v := in.NAT(20)
	if len(v.IPAffinityShares) != 3 {
		t.Fatalf("shares %+v, want three backends", v.IPAffinityShares)
	}
	for _, sh := range v.IPAffinityShares {
		if want := loads[sh.Backend] / total; math.Abs(sh.Share-want) > 1e-9 {
			t.Errorf("%s: share %.3f, the pins give %.3f", sh.Backend, sh.Share, want)
		}
	}
}

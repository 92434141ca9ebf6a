package l4

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/natview"
)

// TestNATCountsTheNamedClient counts connections for the NAT view on both
// engines, by the client a PROXY header names rather than the balancer it
// came through: open while open, and no longer once closed.
func TestNATCountsTheNamedClient(t *testing.T) {
	onBothEngines(t, func(t *testing.T) {
		nat := new(natview.Tracker)
		addr, _ := proxyBehindBalancer(t, 10*time.Second, func(p *Proxy) { p.NAT = nat })
		var conns []*net.TCPConn
		for i := range 3 {
			c, r := sendFirst(t, balancer, addr, header(2, fmt.Sprintf("203.0.113.7:%d", 5000+i)))
			if _, err := r.ReadString('\n'); err != nil {
				t.Fatalf("client 203.0.113.7: %v", err)
			}
			conns = append(conns, c)
		}
		sources := func() map[string]natview.Source {
			out := map[string]natview.Source{}
			for _, s := range nat.Snapshot().Sources {
				out[s.Key.Addr().String()] = s
			}
			return out
		}
		got := sources()
		if s, ok := got["203.0.113.7"]; !ok || s.Events != 3 || s.Active != 3 || len(got) != 1 {
			t.Fatalf("sources %+v, want 203.0.113.7 alone with 3 connections open", got)
		}
		if _, ok := got[netip.MustParseAddr(balancer).String()]; ok {
			t.Error("the balancer was counted as a client")
		}
		for _, c := range conns {
			c.Close()
		}
		eventually.True(t, "the connections to be counted closed", func() bool {
			return sources()["203.0.113.7"].Active == 0
		})
	})
}

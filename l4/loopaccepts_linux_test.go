package l4

import (
	"fmt"
	"net"
	"testing"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// LoopAccepts counts every connection once, by loop, and keeps the counts
// of loops that have ended: when their listener moves, the loops of the
// new one add to the same indexes, so each count only grows.
func TestLoopAcceptsAddUp(t *testing.T) {
	tb := startBackend(t, "app-01")
	table := affinity.New(affinity.Options{})
	defer table.Close()
	p := &Proxy{Pool: backend.NewPool(newRegistry(t, tb.addr)), Selector: &backend.RoundRobin{}, Table: table, Loops: 2}
	if got := p.LoopAccepts(); got != nil {
		t.Errorf("LoopAccepts before Serve = %v, want nil", got)
	}
	serve := func() (net.Listener, chan error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- p.Serve(ln) }()
		return ln, served
	}
	sum := func(n []uint64) (s uint64) {
		for _, v := range n {
			s += v
		}
		return s
	}
	first, firstServed := serve()
	eventually.True(t, "two event loops serving", func() bool { return len(p.loopAccepts()) == 2 })
	for i := range 10 {
		greeting(t, fmt.Sprintf("127.0.64.%d", i+1), first.Addr().String())
	}
	before := p.LoopAccepts()
	if len(before) != 2 || sum(before) != 10 {
		t.Fatalf("LoopAccepts = %v after 10 clients, want two loops adding up to 10", before)
	}

	second, secondServed := serve()
	p.StopAccepting(first)
	if err := <-firstServed; err == nil {
		t.Fatal("Serve of the retired listener returned nil")
	}
	for i := range 5 {
		greeting(t, fmt.Sprintf("127.0.65.%d", i+1), second.Addr().String())
	}
	after := p.LoopAccepts()
	if len(after) != 2 || sum(after) != 15 || after[0] < before[0] || after[1] < before[1] {
		t.Errorf("LoopAccepts = %v after 5 more clients on a new listener, was %v: want each to grow, adding up to 15", after, before)
	}
	p.Close()
	<-secondServed
	if got := p.LoopAccepts(); sum(got) != 15 {
		t.Errorf("LoopAccepts = %v once every loop ended, want 15 in all", got)
	}
}

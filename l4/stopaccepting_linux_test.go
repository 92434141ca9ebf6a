package l4

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/eventually"
)

// StopAccepting returns once no event loop of the listener will accept
// again: with two loops kept busy accepting, the connections that arrive
// after it returns are all left in the socket's queue, for another holder
// of the socket (the new process of an upgrade) to accept, and the proxy's
// accepted count no longer moves.
func TestStopAcceptingWaitsForEveryLoop(t *testing.T) {
	tb := startBackend(t, "app-01")
	for round := range 10 {
		table := affinity.New(affinity.Options{})
		p := &Proxy{Pool: backend.NewPool(newRegistry(t, tb.addr)), Selector: &backend.RoundRobin{}, Table: table, Loops: 2}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		// The socket as another process would hold it.
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		heir, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- p.Serve(ln) }()
		eventually.True(t, "two event loops serving", func() bool { return len(p.loopAccepts()) == 2 })

		// Clients connect and hang up without pause, so that the loops
		// are in the middle of accepting when StopAccepting is called.
		stop := make(chan struct{})
		var load sync.WaitGroup
		for range 4 {
			load.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						c.Close()
					}
				}
			})
		}
		eventually.True(t, "the loops accepting", func() bool { return p.Counts().Accepted() > 20 })
		p.StopAccepting(ln)
		accepted := p.Counts().Accepted()
		close(stop)
		load.Wait()

		// Clients that arrive now wait for the heir.
		want := map[string]bool{}
		var clients []net.Conn
		for range 4 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("round %d: dial after StopAccepting: %v", round, err)
			}
			clients = append(clients, c)
			want[c.LocalAddr().String()] = true
		}
		heir.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		for len(want) > 0 {
			c, err := heir.Accept()
			if err != nil {
				t.Fatalf("round %d: %d clients that connected after StopAccepting returned never reached the socket's other holder (%v): the proxy accepted them", round, len(want), err)
			}
			delete(want, c.RemoteAddr().String())
			c.Close()
		}
		if got := p.Counts().Accepted(); got != accepted {
			t.Errorf("round %d: %d connections accepted after StopAccepting returned", round, got-accepted)
		}
		for _, c := range clients {
			c.Close()
		}
		heir.Close()
		p.Close()
		<-served
		table.Close()
	}
}

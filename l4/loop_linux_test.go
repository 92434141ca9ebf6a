package l4

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// A pump that runs out of budget leaves bytes in the socket that no new
// event will announce (the backend has sent everything and waits); the
// loop must come back for them on its own.
func TestEventLoopFinishesWhatABudgetLeft(t *testing.T) {
	pumpSteps = 2
	defer func() { pumpSteps = 32 }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reply := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	release := make(chan struct{})
	defer close(release)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(reply)
		<-release // keep the connection open and quiet
	}()
	table := affinity.New(affinity.Options{})
	defer table.Close()
	p := &Proxy{Registry: newRegistry(t, ln.Addr().String()), Selector: &backend.RoundRobin{}, Table: table}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(pl)
	defer p.Close()

	c := dialFrom(t, "127.0.0.31", pl.Addr().String())
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(reply))
	if n, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d of %d bytes: %v", n, len(reply), err)
	}
	if !bytes.Equal(got, reply) {
		t.Error("bytes differ from the backend's")
	}
}

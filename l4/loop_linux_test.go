package l4

import (
	"bytes"
	"io"
	"net"
	"syscall"
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

// A client that reads slowly but steadily is not idle, even when the
// proxy, holding bytes for it, reads nothing from the backend for longer
// than the idle timeout.
func TestSlowSteadyReaderIsNotIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reply := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(reply)
		io.Copy(io.Discard, c)
	}()
	testHookAccepted = func(fd int) { syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) }
	defer func() { testHookAccepted = nil }()
	table := affinity.New(affinity.Options{})
	defer table.Close()
	p := &Proxy{Registry: newRegistry(t, ln.Addr().String()), Selector: &backend.RoundRobin{}, Table: table, IdleTimeout: idle}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(pl)
	defer p.Close()

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
		return nil
	}}
	c, err := d.Dial("tcp", pl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 2 KiB every 50 ms: a 16 KiB buffer held for this client takes
	// longer than the idle timeout to drain.
	got := make([]byte, 0, len(reply))
	buf := make([]byte, 2048)
	start := time.Now()
	for len(got) < len(reply) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes and %v: %v", len(got), len(reply), time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !bytes.Equal(got, reply) {
		t.Error("bytes differ from the backend's")
	}
}

package l4

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// A pump that runs out of budget leaves bytes in the socket that no new
// event will announce (the backend has sent everything and waits); the
// loop must come back for them on its own.
func TestEventLoopFinishesWhatABudgetLeft(t *testing.T) {
	// Set before the proxy starts and restored after it stopped (cleanups
	// run last first).
	pumpSteps = 2
	t.Cleanup(func() { pumpSteps = 32 })
	reply := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	// The backend writes it all, then keeps the connection open and quiet.
	backendAddr := oneShotBackend(t, func(c net.Conn) { c.Write(reply) })
	c := dialFrom(t, "127.0.0.31", serveProxy(t, newRegistry(t, backendAddr), func(p *Proxy) { p.goroutines = false }))
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

package l4

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
)

// A listener retired by StopAccepting refuses new clients while the
// connections it accepted run on, the proxy's other listener keeps
// serving, and Shutdown still waits for those connections.
func TestStopAcceptingKeepsItsConnections(t *testing.T) {
	f := newFixture(t, fixtureOpts{n: 1})
	old, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	oldAddr := old.Addr().String()
	servedOld := make(chan error, 1)
	go func() { servedOld <- f.proxy.Serve(old) }()

	// A client of the listener about to be retired, already relaying.
	c := dialFrom(t, "127.0.0.16", oldAddr)
	defer c.Close()
	r := bufio.NewReader(c)
	if id, err := r.ReadString('\n'); err != nil || id != "app-01\n" {
		t.Fatalf("greeting through the old listener = %q, %v", id, err)
	}
	echo := func(when string) {
		t.Helper()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatalf("%s: write: %v", when, err)
		}
		if b, err := r.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("%s: echo = %q, %v", when, b, err)
		}
	}
	echo("before StopAccepting")

	f.proxy.StopAccepting(old)
	eventually.True(t, "the retired listener to refuse clients", func() bool {
		nc, err := net.DialTimeout("tcp", oldAddr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	echo("after StopAccepting")
	if id := greeting(t, "127.0.0.17", f.addr); id != "app-01" {
		t.Errorf("the other listener answered with %q, want app-01", id)
	}
	if testHookPortable {
		// The goroutine engine's Serve returns at once: its connections
		// are the proxy's.
		if err := <-servedOld; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve of the retired listener = %v, want net.ErrClosed", err)
		}
	} else {
		// The event loop's returns only once its connections have ended.
		select {
		case err := <-servedOld:
			t.Fatalf("the event loop's Serve returned %v with a connection open", err)
		default:
		}
	}

	shut := make(chan error, 1)
	go func() { shut <- f.proxy.Shutdown(context.Background()) }()
	echo("during Shutdown")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a connection of the retired listener was open", err)
	default:
	}
	c.CloseWrite()
	io.Copy(io.Discard, r)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if !testHookPortable {
		// The loop ends with its last session, during the Shutdown.
		if err := <-servedOld; !errors.Is(err, net.ErrClosed) && !errors.Is(err, ErrProxyClosed) {
			t.Errorf("Serve of the retired listener = %v, want net.ErrClosed or ErrProxyClosed", err)
		}
	}
}

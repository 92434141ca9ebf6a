package accept

import (
	"testing"
	"time"
)

// A parked connection leaves the loop's set without being closed or counted
// closed, comes back to Handle through Unpark, and an Unpark once the loop
// is closing closes it and counts it closed.
func TestParkAndUnpark(t *testing.T) {
	ln := listen(t)
	kept := make(chan *Conn, 2)
	handled := make(chan int, 4)
	calls := 0
	var l Loop
	l.Handle = func(c *Conn) {
		calls++ // handlers of one connection run one after another
		handled <- calls
		c.Park(time.Time{})
	}
	l.Park = func(c *Conn, until time.Time) bool {
		kept <- c
		return true
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln) }()
	client := dial(t, ln)
	defer client.Close()

	if n := <-handled; n != 1 {
		t.Fatalf("first Handle call numbered %d", n)
	}
	c := <-kept
	if open := l.Counts.Open(); open != 1 {
		t.Fatalf("a parked connection counts %d open, want 1", open)
	}
	if !l.Unpark(c) {
		t.Fatal("Unpark refused while the loop serves")
	}
	if n := <-handled; n != 2 {
		t.Fatalf("Handle after Unpark numbered %d, want 2", n)
	}
	c = <-kept

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	<-served
	if l.Unpark(c) {
		t.Fatal("Unpark served a connection of a closed loop")
	}
	if open := l.Counts.Open(); open != 0 {
		t.Errorf("%d connections counted open after the last Unpark, want 0", open)
	}
	client.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open")
	}
}

// A connection the Park hook refuses is closed by the loop and counted
// closed.
func TestParkRefusedCloses(t *testing.T) {
	ln := listen(t)
	var l Loop
	l.Handle = func(c *Conn) { c.Park(time.Time{}) }
	l.Park = func(*Conn, time.Time) bool { return false }
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln) }()
	client := dial(t, ln)
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("the refused connection is still open")
	}
	l.Close()
	<-served
	if open := l.Counts.Open(); open != 0 {
		t.Errorf("%d connections counted open, want 0", open)
	}
}

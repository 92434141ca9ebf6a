package l7

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/loopback"
)

// hookedConn is a connection whose SetReadDeadline runs hook, with the
// deadline asked for, before setting it.
type hookedConn struct {
	*net.TCPConn
	hook func(time.Time)
}

func (c hookedConn) SetReadDeadline(t time.Time) error {
	c.hook(t)
	return c.TCPConn.SetReadDeadline(t)
}

// TestInterruptEndsAReadThatMovedItsDeadlineAfterward plays the race
// between stopping a body copy and the copy's next read: the read moves
// its deadline idle ahead just after interrupt set a past one. The read
// must still end at once, not when idle runs out.
func TestInterruptEndsAReadThatMovedItsDeadlineAfterward(t *testing.T) {
	client, server := loopback.Pair(t)
	inFill, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	conn := hookedConn{TCPConn: server, hook: func(d time.Time) {
		if d.After(time.Now()) { // fill moving its deadline ahead
			once.Do(func() { close(inFill); <-proceed })
		}
	}}
	var r connReader
	r.reset(conn, make([]byte, 64), nil)
	r.idle = time.Hour

	done := make(chan error, 1)
	go func() {
		_, err := r.next(10)
		done <- err
	}()
	<-inFill
	r.interrupt() // its past deadline lands before the read's fresh one
	close(proceed)
	select {
	case err := <-done:
		if !errors.Is(err, errReadStopped) {
			t.Errorf("interrupted read returned %v, want errReadStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted read is still waiting: it would wait out its idle deadline")
	}

	// After resume the reader reads again.
	r.resume()
	client.Write([]byte("hello"))
	if p, err := r.next(10); err != nil || string(p) != "hello" {
		t.Errorf("read after resume = %q, %v; want hello", p, err)
	}
}

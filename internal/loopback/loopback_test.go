package loopback

import (
	"io"
	"testing"
	"time"
)

// The two ends are connected to each other, each other's peer.
func TestPairIsConnected(t *testing.T) {
	c, s := Pair(t)
	if c.LocalAddr().String() != s.RemoteAddr().String() || s.LocalAddr().String() != c.RemoteAddr().String() {
		t.Fatalf("client %v-%v, server %v-%v: not one connection", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
	}
	s.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hi"))
	c.CloseWrite()
	if got, err := io.ReadAll(s); err != nil || string(got) != "hi" {
		t.Errorf("server read %q, %v; want hi", got, err)
	}
}

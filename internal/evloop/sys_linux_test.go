//go:build linux

package evloop

import (
	"net"
	"net/netip"
	"testing"

	"github.com/lbctl/lbctl/internal/loopback"
)

// LocalAddr names the address and port a client reached, over IPv4 and
// IPv6, and nothing for a descriptor that is no socket.
func TestLocalAddr(t *testing.T) {
	client, server := loopback.Pair(t)
	if got, want := LocalAddr(fd(t, server)), server.LocalAddr().(*net.TCPAddr).AddrPort(); got != want {
		t.Errorf("server side: %v, want %v", got, want)
	}
	if got, want := LocalAddr(fd(t, client)), client.LocalAddr().(*net.TCPAddr).AddrPort(); got != want {
		t.Errorf("client side: %v, want %v", got, want)
	}
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback: %v", err)
	} else {
		defer ln.Close()
		c, err := net.Dial("tcp6", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, want := LocalAddr(fd(t, c.(*net.TCPConn))), c.LocalAddr().(*net.TCPAddr).AddrPort(); got != want || !got.Addr().Is6() {
			t.Errorf("over IPv6: %v, want %v", got, want)
		}
	}
	if got := LocalAddr(-1); got != (netip.AddrPort{}) {
		t.Errorf("no socket: %v, want none", got)
	}
}

// fd returns c's descriptor.
func fd(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	if err := rc.Control(func(s uintptr) { n = int(s) }); err != nil {
		t.Fatal(err)
	}
	return n
}

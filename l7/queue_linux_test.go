//go:build linux

package l7

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/eventually"
)

// The socket queue lengths Linux reports let a test know where bytes are
// without sleeping: still in the sender's queue, in the receiver's kernel,
// or read by the receiver.

// waitReadByProxy waits until the proxy has read every byte the client has
// written on c, whose other end is proxySide: the client's send queue is
// empty (the proxy's kernel holds them all) and so is proxySide's receive
// queue (the proxy has read them). A test that writes more after it knows
// that what it writes next reaches the proxy in a later read.
func waitReadByProxy(t *testing.T, c net.Conn, proxySide *net.TCPConn) {
	t.Helper()
	eventually.True(t, "the proxy to read what the client wrote", func() bool {
		return queued(t, c.(*net.TCPConn), unix.SIOCOUTQ) == 0 && queued(t, proxySide, unix.SIOCINQ) == 0
	})
}

// queued returns the length of c's send queue (unix.SIOCOUTQ: sent but
// not acknowledged, or not sent) or receive queue (unix.SIOCINQ: not read).
func queued(t *testing.T, c *net.TCPConn, req uint) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), req) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatalf("ioctl %#x: %v", req, err)
	}
	return n
}

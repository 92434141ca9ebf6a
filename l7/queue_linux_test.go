//go:build linux

package l7

import (
	"errors"
	"net"
	"testing"
	"time"

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

// waitAcked waits until c's peer has acknowledged everything c sent, its
// FIN included when c has closed its write side: the bytes are then in the
// peer's receive queue, where a non-blocking peek finds them. A connection
// the peer has reset has nothing in flight either. It runs on backend
// goroutines, so it returns an error rather than failing the test.
func waitAcked(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var info *unix.TCPInfo
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		// Unacked counts segments in flight; a FIN in flight keeps the
		// socket in FIN_WAIT1 until it is acknowledged.
		if info.Unacked == 0 && info.State != unix.BPF_TCP_FIN_WAIT1 {
			return nil
		}
	}
	return errors.New("the peer did not acknowledge within 5s")
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

//go:build linux

package loopback

import (
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// WaitAcked waits until c's peer has acknowledged everything c sent, its
// FIN included when c has closed its write side: the bytes are then in the
// peer's receive queue, where a non-blocking peek finds them. A connection
// the peer has reset has nothing in flight either. It may run on
// goroutines other than the test's, so it returns an error rather than
// failing the test.
func WaitAcked(c net.Conn) error {
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

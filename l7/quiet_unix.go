//go:build unix && !linux

package l7

import (
	"net"

	"golang.org/x/sys/unix"
)

// quiet reports whether c, an idle backend connection, has nothing to read
// and has not been closed by the backend: a non-blocking recv with
// MSG_PEEK finds no byte and no end of stream.
func quiet(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		_, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return rerr == unix.EAGAIN
}

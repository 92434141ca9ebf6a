//go:build unix && !linux

package peek

import (
	"net"

	"golang.org/x/sys/unix"
)

// look peeks at c with a non-blocking recv and MSG_PEEK.
func look(c *net.TCPConn) state {
	rc, err := c.SyscallConn()
	if err != nil {
		return unknown
	}
	var b [1]byte
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return unknown
	}
	var errno unix.Errno
	if rerr != nil {
		var ok bool
		if errno, ok = rerr.(unix.Errno); !ok {
			return unknown
		}
	}
	return verdict(n, errno)
}

//go:build linux

package l7

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// quiet reports whether c, an idle backend connection, has nothing to read
// and has not been closed by the backend: a non-blocking recv with
// MSG_PEEK finds no byte and no end of stream. It costs one system call
// and, unlike unix.Recvfrom, allocates nothing.
func quiet(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	}); err != nil {
		return false
	}
	// EAGAIN is the only quiet answer: a count of one is a byte, zero
	// the end of the stream, anything else an error.
	return errno == unix.EAGAIN
}

//go:build linux

package peek

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// look peeks at c (see lookFD).
func look(c *net.TCPConn) state {
	rc, err := c.SyscallConn()
	if err != nil {
		return unknown
	}
	s := unknown
	if err := rc.Control(func(fd uintptr) { s = lookFD(int(fd)) }); err != nil {
		return unknown
	}
	return s
}

// SentFD is Sent for a raw socket, such as one an event loop holds.
func SentFD(fd int) bool { return lookFD(fd) == sent }

// QuietFD is Quiet for a raw socket, such as a raw write's callback has.
func QuietFD(fd int) bool { return lookFD(fd) == quiet }

// lookFD peeks at the socket fd with a non-blocking recv and MSG_PEEK. It
// costs one system call and, unlike unix.Recvfrom, allocates nothing. The
// call never blocks, so it goes without telling the Go scheduler, which
// would cost more than the call.
func lookFD(fd int) state {
	var b [1]byte
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return verdict(int(n), errno)
}

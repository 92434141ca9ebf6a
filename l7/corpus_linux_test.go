package l7

import "golang.org/x/sys/unix"

// unackedBytes returns how many bytes written to the socket fd its peer
// has not acknowledged yet (SIOCOUTQ), or -1 when it cannot tell.
func unackedBytes(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	if err != nil {
		return -1
	}
	return n
}

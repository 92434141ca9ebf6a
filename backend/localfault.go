package backend

import (
	"errors"
	"syscall"
)

// localFaults are the errors with which connect(2), or the socket(2)
// before it, reports that this machine ran out of something: source ports
// (EADDRNOTAVAIL: every port of the ephemeral range is in use towards that
// address), routing cache entries (EAGAIN), buffers or memory (ENOBUFS,
// ENOMEM), or descriptors (EMFILE, ENFILE). None of them says anything of
// the backend: no packet has reached it.
var localFaults = [...]syscall.Errno{
	syscall.EADDRNOTAVAIL,
	syscall.EAGAIN,
	syscall.ENOBUFS,
	syscall.ENOMEM,
	syscall.EMFILE,
	syscall.ENFILE,
}

// LocalFault reports whether err, a failed attempt to reach a backend, is
// a fault of this machine's own resources rather than of the backend: err
// wraps (as *net.OpError and *os.SyscallError do) one of the errnos above.
// Such a failure must not count against the backend's health: when the
// proxy runs out of source ports, every backend would fail the same way.
func LocalFault(err error) bool {
	for _, e := range localFaults {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

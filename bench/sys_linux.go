package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindAddressNoPort lets a dial that binds a gateway address leave the
// choice of source port to connect, which picks one that is free for the
// whole 4-tuple rather than for the address alone: one gateway can then
// hold as many connections as the ephemeral range allows per destination.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// fdLimit returns the process's limit on open files.
func fdLimit() (uint64, bool) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return rl.Cur, true
}

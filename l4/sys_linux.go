//go:build linux

package l4

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop's system calls. Each of them returns at once (every socket
// is non-blocking), so they go straight to the kernel as raw system calls:
// the runtime's bookkeeping for a call that might block would make its
// monitor thread wake every 20µs while the loop is busy, and hand the
// loop's processor to another thread during a long connect or close.

func sysRead(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

func sysWrite(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

func sysClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

func sysShutdownWrite(fd int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
}

func sysSplice(in, out, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(r), e
}

// sysSocket opens a non-blocking TCP socket with Nagle's algorithm off.
func sysSocket(family int) (int, unix.Errno) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	setNoDelay(int(fd))
	return int(fd), 0
}

func setNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

func sysConnect(fd int, t *target) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(t.ptr), uintptr(t.len))
	return e
}

func sysEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// sysPoll returns the events ready now, without waiting.
func sysPoll(epfd int, events []unix.EpollEvent) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
		uintptr(len(events)), 0, 0, 0)
	return int(n), e
}

// sysAccept accepts a connection as a non-blocking socket and returns the
// peer's address with it (unix.Accept4 would also ask the new socket for
// its protocol, one more system call per connection).
func sysAccept(lnfd int) (int, netip.AddrPort, unix.Errno) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	fd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lnfd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	var peer netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		peer = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), netPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		peer = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), netPort(sa.Port))
	}
	return int(fd), peer, 0
}

// target is a backend address in the form connect takes.
type target struct {
	address string // the backend address it was built from
	family  int
	ptr     unsafe.Pointer // a *unix.RawSockaddrInet4 or *unix.RawSockaddrInet6
	len     uint32
}

func newTarget(ap netip.AddrPort) *target {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4(), Port: netPort(ap.Port())}
		return &target{family: unix.AF_INET, ptr: unsafe.Pointer(sa), len: unix.SizeofSockaddrInet4}
	}
	sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Port: netPort(ap.Port())}
	return &target{family: unix.AF_INET6, ptr: unsafe.Pointer(sa), len: unix.SizeofSockaddrInet6}
}

// netPort swaps a port between host and network byte order (the swap is
// its own inverse).
func netPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

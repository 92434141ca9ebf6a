//go:build linux

package evloop

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops' system calls. Each of them returns at once (every socket
// is non-blocking), so they go straight to the kernel as raw system calls:
// the runtime's bookkeeping for a call that might block would make its
// monitor thread wake every 20µs while the loop is busy, and hand the
// loop's processor to another thread during a long connect or close.

// Read reads from fd into p.
func Read(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

// Write writes p to fd.
func Write(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), e
}

// Close closes fd.
func Close(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// ShutdownWrite sends fd's FIN.
func ShutdownWrite(fd int) {
	unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
}

// Splice moves up to n bytes from in to out without waiting, one of them
// a pipe.
func Splice(in, out, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(r), e
}

// Socket opens a non-blocking TCP socket with Nagle's algorithm off.
func Socket(family int) (int, unix.Errno) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	SetNoDelay(int(fd))
	return int(fd), 0
}

// SetNoDelay turns Nagle's algorithm off on fd.
func SetNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// Connect starts fd's connection to t; it returns EINPROGRESS while the
// handshake is under way.
func Connect(fd int, t *Target) unix.Errno {
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
		peer = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), NetPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		peer = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), NetPort(sa.Port))
	}
	return int(fd), peer, 0
}

// Target is a backend address in the form connect takes.
type Target struct {
	Address string // the backend address it was built from
	Family  int
	ptr     unsafe.Pointer // a *unix.RawSockaddrInet4 or *unix.RawSockaddrInet6
	len     uint32
}

// NewTarget returns the target of ap.
func NewTarget(ap netip.AddrPort) *Target {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4(), Port: NetPort(ap.Port())}
		return &Target{Family: unix.AF_INET, ptr: unsafe.Pointer(sa), len: unix.SizeofSockaddrInet4}
	}
	sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Port: NetPort(ap.Port())}
	return &Target{Family: unix.AF_INET6, ptr: unsafe.Pointer(sa), len: unix.SizeofSockaddrInet6}
}

// NetPort swaps a port between host and network byte order (the swap is
// its own inverse).
func NetPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// TargetFor returns the target of addr, or nil when addr is not an IP
// literal with a port (or carries an IPv6 zone): an event loop never
// resolves names, which would block it.
func TargetFor(addr string) *Target {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
	}
	t := NewTarget(ap)
	t.Address = addr
	return t
}

// LocalAddr returns the local address and port of the socket fd, the zero
// AddrPort when it cannot be told: what a PROXY header sent for a client
// names as the destination.
func LocalAddr(fd int) netip.AddrPort {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

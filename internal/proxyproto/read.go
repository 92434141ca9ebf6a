package proxyproto

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Reader takes one header off a non-blocking socket, in pieces if it comes
// in pieces, without consuming a byte past it. Its zero value is ready;
// Reset makes it ready for another socket.
type Reader struct {
	buf [MaxHeader]byte
	n   int // bytes of the header consumed so far
}

// Reset forgets what r has read.
func (r *Reader) Reset() { r.n = 0 }

// Read takes a header off c, which must come from a peer that sends one,
// within deadline, consuming nothing past it. It returns the client the
// header names; ok is false when it names none (the peer's own address
// then stands). A client too slow is an error wrapping
// os.ErrDeadlineExceeded. The read deadline is cleared afterwards.
func Read(c *net.TCPConn, deadline time.Time) (src netip.AddrPort, ok bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return netip.AddrPort{}, false, err
	}
	defer c.SetReadDeadline(time.Time{})
	var r Reader
	var done bool
	var stepErr error
	err = rc.Read(func(fd uintptr) bool {
		src, ok, done, stepErr = r.ReadFrom(int(fd))
		return done || stepErr != nil
	})
	if err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("read PROXY protocol header: %w", err)
	}
	return src, ok, stepErr
}

package proxyproto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
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

// ReadFrom moves the header on along the socket fd: it peeks at what has
// arrived, reads what belongs to the header, and reports done once the
// whole header is read, with the client it names (see Parse). It returns
// done false and no error when the socket has no more for now (wait for it
// to be readable), and an error when the peer ended or failed, or sent
// what is no header (wrapping ErrBadHeader).
//
// Every byte it reads belongs to the header: it reads past what it has
// only as far as Frame says the header goes, or, while the end is not in
// sight, what has arrived (all of it header, or Frame would have said so).
func (r *Reader) ReadFrom(fd int) (src netip.AddrPort, ok, done bool, err error) {
	for {
		m, _, err := unix.Recvfrom(fd, r.buf[r.n:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN:
			return netip.AddrPort{}, false, false, nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return netip.AddrPort{}, false, false, fmt.Errorf("read PROXY protocol header: %w", err)
		case m == 0:
			return netip.AddrPort{}, false, false, fmt.Errorf("read PROXY protocol header: %w after %d bytes", io.ErrUnexpectedEOF, r.n)
		}
		size, err := Frame(r.buf[:r.n+m])
		if err != nil {
			return netip.AddrPort{}, false, false, err
		}
		take := m // the header's end is not in sight: all of it is header
		if size > 0 {
			take = size - r.n
		}
		for take > 0 {
			k, err := unix.Read(fd, r.buf[r.n:r.n+take])
			if err == unix.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				// What was peeked is there to read; anything else is a
				// failed socket.
				return netip.AddrPort{}, false, false, fmt.Errorf("read PROXY protocol header: %w", errors.Join(err, io.ErrUnexpectedEOF))
			}
			r.n += k
			take -= k
		}
		if size > 0 {
			src, ok, err := Parse(r.buf[:size])
			return src, ok, err == nil, err
		}
	}
}

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

//go:build unix

package proxyproto

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"golang.org/x/sys/unix"
)

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

//go:build linux

package l7

import (
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/evloop"
	"github.com/lbctl/lbctl/internal/peek"
)

// Read reads into p as net.Conn's Read does, with its errors: io.EOF at
// the end, a timeout past the deadline, net.ErrClosed once closed.
func (u *upIO) Read(p []byte) (int, error) {
	if u.raw == nil {
		return u.conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	u.rbuf, u.rn, u.rerr = p, 0, nil
	err := u.raw.Read(u.readStep)
	u.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case u.rerr != nil:
		return 0, u.rerr
	case u.rn == 0:
		return 0, io.EOF
	}
	return u.rn, nil
}

// readOnce is Read's step: one read, or false to wait for the poller when
// there is nothing to read yet.
func (u *upIO) readOnce(fd uintptr) bool {
	for {
		n, e := evloop.Read(int(fd), u.rbuf)
		switch e {
		case 0:
			u.rn = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		u.rerr = u.opError("read", e)
		return true
	}
}

// Write writes all of p as net.Conn's Write does, waiting for room in
// the socket's buffer under the write deadline.
func (u *upIO) Write(p []byte) (int, error) {
	if u.raw == nil {
		if u.stale() {
			return 0, errIdleStale
		}
		return u.conn.Write(p)
	}
	u.wbuf, u.wn, u.werr = p, 0, nil
	err := u.raw.Write(u.writeStep)
	n := u.wn
	u.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case u.werr != nil:
		return n, u.werr
	}
	return n, nil
}

// writeAll is Write's step: it writes what the socket takes, and returns
// false to wait for the poller when it takes no more before the end. A
// connection from the pool is looked at first (see check).
func (u *upIO) writeAll(fd uintptr) bool {
	if u.check {
		u.check = false
		if !peek.QuietFD(int(fd)) {
			u.werr = errIdleStale
			return true
		}
	}
	for u.wn < len(u.wbuf) {
		n, e := evloop.Write(int(fd), u.wbuf[u.wn:])
		switch e {
		case 0:
			u.wn += n
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		u.werr = u.opError("write", e)
		return true
	}
	return true
}

// send writes p, a request without a body to come, and returns once the
// connection has something to read (the answer, or its end), the read
// deadline has passed, or the connection was closed: the read that
// follows meets the last two. Its error is the write's.
func (u *upIO) send(p []byte) (int, error) {
	if u.raw == nil {
		return u.Write(p)
	}
	u.wbuf, u.wn, u.werr, u.sent = p, 0, nil, false
	err := u.raw.Read(u.sendStep)
	n := u.wn
	u.wbuf = nil
	switch {
	case u.werr != nil:
		return n, u.werr
	case n == len(p):
		return n, nil
	case err != nil && !u.sent:
		return n, err // closed, or past the deadline, before the write
	}
	// The socket took only part of the head: the rest goes as any
	// write, and the read that follows waits as any read.
	m, err := u.Write(p[n:])
	return n + m, err
}

// sendThenWait is send's step, within a raw read: the first time it
// writes what the socket takes of the head and, when that is all of it,
// returns false to wait for the poller; the second time the answer can
// be read.
func (u *upIO) sendThenWait(fd uintptr) bool {
	if u.sent {
		return true
	}
	u.sent = true
	return !u.writeAll(fd) || u.werr != nil || u.wn < len(u.wbuf)
}

// opError wraps the failure of a system call as net.Conn's methods do,
// so that whoever looks at it (errors.Is with syscall.ECONNRESET, say)
// sees the same.
func (u *upIO) opError(op string, e unix.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: u.conn.LocalAddr(), Addr: u.conn.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}

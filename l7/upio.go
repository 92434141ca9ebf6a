package l7

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/internal/peek"
)

// upIO reads and writes the backend connection of an exchange of the
// goroutine engine (HTTP/1.1 and TLS sessions, HTTP/2 streams). On Linux
// it makes the system calls itself on the runtime's poller (see
// upio_linux.go), which saves two costs of net.Conn's methods:
//
//   - A read or write on a non-blocking socket never blocks, so it goes
//     without the scheduler's bookkeeping of a call that may block, which
//     adds to each call and, with many exchanges on one core, keeps the
//     runtime's monitor thread waking to look at them.
//   - send writes a request head and then waits on the poller for the
//     answer, within one raw read: a read right after the request is sent
//     nearly always finds nothing yet, and would cost a system call only
//     to learn that. The wait cannot come first on its own: readying a
//     raw read forgets what the poller reported before it, so an answer
//     that came in between would not wake it. Within the raw read, the
//     request goes out after that point, and so does its answer.
//
// Its zero value is ready; use points it at a connection. Read and Write
// may run at once on two goroutines (the request body's copy writes while
// the exchange reads the answer): their state is apart.
type upIO struct {
	conn *net.TCPConn
	raw  syscall.RawConn
	// until is no later than either of conn's deadlines: what armUp set,
	// or the pool kept with a kept-alive connection. Moving a deadline
	// later (timedWriter, connReader's idle) keeps it true.
	until time.Time

	// The steps of the raw calls, made once (see use), so that a call
	// allocates nothing.
	readStep, writeStep, sendStep func(uintptr) bool

	rbuf []byte
	rn   int
	rerr error

	wbuf []byte
	wn   int
	werr error
	sent bool // send's step has written

	// check says that conn came from the pool: before the first byte of
	// the request goes, a peek makes sure the backend has neither written
	// to it nor closed it while it idled (see upstream). The peek is made
	// within the raw write, at the last moment, and costs nothing more
	// than its system call.
	check bool
}

// errIdleStale is a kept-alive backend connection that the backend wrote
// to or closed while it idled in the pool, found before the request was
// written: nothing was sent, so any request may go again on a new one.
var errIdleStale = errors.New("kept-alive backend connection written to or closed while idle")

// use points u at c. It keeps c's raw handle while c stays the same, so
// that the next exchange on a kept-alive connection allocates nothing.
func (u *upIO) use(c *net.TCPConn) {
	if u.readStep == nil {
		u.readStep, u.writeStep, u.sendStep = u.readOnce, u.writeAll, u.sendThenWait
	}
	if u.conn == c && u.raw != nil {
		return
	}
	u.conn, u.raw = c, nil
	if raw, err := c.SyscallConn(); err == nil {
		u.raw = raw
	}
}

// stale reports whether conn, taken from the pool, has been written to or
// closed since, when check asks for the look; without a raw handle, as
// the raw calls make it within their own.
func (u *upIO) stale() bool {
	if !u.check {
		return false
	}
	u.check = false
	return !peek.Quiet(u.conn)
}

// SetReadDeadline sets the connection's read deadline, for connReader.
func (u *upIO) SetReadDeadline(t time.Time) error { return u.conn.SetReadDeadline(t) }

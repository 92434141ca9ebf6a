// Package splice owns the byte relay of a connection that runs on
// goroutines: both ways between two TCP connections, with half-close and
// the idle rule (no bytes moved on either socket, either way, for the
// timeout) that the L4 event loop keeps too. The L4 goroutine engine and L7
// upgrades (WebSocket) use it. Both sides stay *net.TCPConn so that Linux
// splices the bytes in the kernel.
package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Relay copies bytes both ways between client and server until both
// directions have ended, and returns then. A clean end of one direction
// (FIN) half-closes the other side's write half and leaves the opposite
// direction running; an error on either side, or idle (when positive) with
// no bytes in either direction, closes both connections. The caller still
// closes both when Relay returns. It returns the bytes relayed each way:
// up from the client to the server, down back.
func Relay(client, server *net.TCPConn, idle time.Duration) (up, down int64) {
	// One allocation for what both directions share.
	var shared struct {
		ended    atomic.Int32
		up, down int64
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		proxyCopy(server, client, client, server, idle, &shared.ended, &shared.up)
	}()
	proxyCopy(client, server, client, server, idle, &shared.ended, &shared.down)
	<-done
	return shared.up, shared.down
}

// smallBuf is the buffer of the copy loop for small messages. A read that
// fills it marks the direction as bulk, which then splices.
const smallBuf = 4 << 10

var bufPool = sync.Pool{New: func() any { return new([smallBuf]byte) }}

// proxyCopy copies src to dst. It is a named function so that each
// direction shows up as such in stack dumps.
//
// Small messages (request/response protocols) go through a small buffer,
// one read and one write each. Once a read fills the buffer, the direction
// carries bulk data and the rest is handed to io.Copy between the two
// *net.TCPConn, which Linux splices in the kernel without copying through
// user space (what HAProxy's splice-auto does). Splicing a few hundred bytes
// would cost more than it saves: a pipe and two more system calls.
//
// ended counts the directions that have ended cleanly; moved counts the
// bytes written to dst.
//
// With an idle timeout, src carries a read deadline; when it fires, the
// connection is idle only if no bytes have moved on either socket, either
// way, for the whole timeout (the other direction may be busy, or a slow
// client may still be taking what the backend sent long ago), otherwise
// the deadline moves and copying resumes. This is the L4 event loop's
// rule too. Deadlines fire between reads and between splice
// rounds, so no byte is lost when copying resumes.
func proxyCopy(dst, src, client, server *net.TCPConn, idle time.Duration, ended *atomic.Int32, moved *int64) {
	if idle > 0 {
		src.SetReadDeadline(time.Now().Add(idle))
	}
	buf := bufPool.Get().(*[smallBuf]byte)
	defer bufPool.Put(buf)
	bulk := false
	for {
		var err error
		if bulk {
			var n int64
			n, err = io.Copy(dst, src)
			*moved += n
		} else if bulk, err = copySmall(dst, src, buf[:], moved); bulk {
			continue
		}
		if err == nil {
			// The second direction to end skips the half-close: both
			// sockets are closed next, and close sends the FIN itself
			// (nothing is left unread on dst, whose own input has ended).
			if ended.Add(1) == 1 {
				dst.CloseWrite()
			}
			return
		}
		if idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			if quiet, ok := quietFor(client, server); ok && quiet < idle {
				src.SetReadDeadline(time.Now().Add(max(idle-quiet, time.Millisecond)))
				continue
			}
		}
		// A reset, a failed write or an idle connection: end both
		// directions so the other goroutine returns too.
		client.Close()
		server.Close()
		return
	}
}

// copySmall copies src to dst through buf until src ends (nil), an error
// occurs, or a read fills buf (bulk is then true and the caller splices the
// rest).
func copySmall(dst, src *net.TCPConn, buf []byte, moved *int64) (bulk bool, err error) {
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, err := dst.Write(buf[:n])
			*moved += int64(w)
			if err != nil {
				return false, err
			}
		}
		switch {
		case rerr == io.EOF:
			return false, nil
		case rerr != nil:
			return false, rerr
		case n == len(buf):
			return true, nil
		}
	}
}

// quietFor returns how long no bytes have moved on either socket (see
// sinceLastData). It reports false when the kernel cannot tell; the
// direction whose deadline fired then counts as idle on its own.
func quietFor(a, b *net.TCPConn) (time.Duration, bool) {
	qa, ok := sinceLastData(a)
	if !ok {
		return 0, false
	}
	qb, ok := sinceLastData(b)
	if !ok {
		return 0, false
	}
	return min(qa, qb), true
}

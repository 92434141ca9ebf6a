// Package splice relays bytes both ways between two TCP connections with
// half-close, the way both the L4 proxy and L7 upgrades (WebSocket) need it.
// Both sides stay *net.TCPConn so that Linux splices the bytes in the kernel.
package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Relay copies bytes both ways between client and server until both
// directions have ended, and returns then. A clean end of one direction
// (FIN) half-closes the other side's write half and leaves the opposite
// direction running; an error on either side, or idle (when positive) with
// no bytes in either direction, closes both connections. The caller still
// closes both when Relay returns.
func Relay(client, server *net.TCPConn, idle time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		proxyCopy(server, client, client, server, idle)
	}()
	proxyCopy(client, server, client, server, idle)
	<-done
}

// proxyCopy copies src to dst. It is a named function so that each
// direction shows up as such in stack dumps. Both arguments stay
// *net.TCPConn so that io.Copy reaches TCPConn.ReadFrom and Linux splices
// the bytes without copying them through user space.
//
// With an idle timeout, src carries a read deadline; when it fires, the
// connection is idle only if neither socket has received data for the whole
// timeout (the other direction may be busy), otherwise the deadline moves
// and copying resumes. Deadlines fire between splice rounds, so no byte is
// lost when copying resumes.
func proxyCopy(dst, src, client, server *net.TCPConn, idle time.Duration) {
	if idle > 0 {
		src.SetReadDeadline(time.Now().Add(idle))
	}
	for {
		_, err := io.Copy(dst, src)
		if err == nil {
			dst.CloseWrite()
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

// quietFor returns how long neither socket has received any data. It
// reports false when the kernel cannot tell; the direction whose deadline
// fired then counts as idle on its own.
func quietFor(a, b *net.TCPConn) (time.Duration, bool) {
	qa, ok := sinceLastRecv(a)
	if !ok {
		return 0, false
	}
	qb, ok := sinceLastRecv(b)
	if !ok {
		return 0, false
	}
	return min(qa, qb), true
}

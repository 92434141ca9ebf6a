// Package peek tells, without reading it, whether a connection's peer has
// sent something: a pooled backend connection is reused only when it is
// quiet, and a client connection is closed at shutdown only when it is
// (see accept.Loop), so that neither a stale answer nor a request already
// sent is lost.
package peek

import "net"

// state is what a peek at a connection found.
type state uint8

const (
	unknown state = iota // no peek on this system, or it failed
	quiet                // nothing to read, and still open
	sent                 // bytes to read, or the end of the stream
)

// Quiet reports whether c has nothing to read and has not been closed by
// its peer. It is false when that cannot be told.
func Quiet(c *net.TCPConn) bool { return look(c) == quiet }

// Sent reports whether c's peer has sent bytes not read yet, or closed
// its side. It is false when that cannot be told.
func Sent(c *net.TCPConn) bool { return look(c) == sent }

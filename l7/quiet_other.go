//go:build !unix

package l7

import "net"

// quiet would report whether c, an idle backend connection, has nothing to
// read and is still open. Without a non-blocking peek there is no way to
// tell, so no connection counts as quiet: a pooled connection is closed
// when its turn comes, and every request dials afresh.
func quiet(*net.TCPConn) bool { return false }

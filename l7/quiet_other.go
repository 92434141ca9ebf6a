//go:build !unix

package l7

import "net"

// quiet would report whether c, an idle backend connection, has nothing to
// read and is still open. Without a non-blocking peek there is no way to
// tell, so no connection is taken for quiet: backend connections are not
// reused here.
func quiet(*net.TCPConn) bool { return false }

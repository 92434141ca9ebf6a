//go:build !linux

package l4

import (
	"net"
	"time"
)

// sinceLastRecv cannot ask the kernel on this system, so it reports false.
func sinceLastRecv(c *net.TCPConn) (time.Duration, bool) { return 0, false }

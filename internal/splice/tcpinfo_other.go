//go:build !linux

package splice

import (
	"net"
	"time"
)

// sinceLastRecv cannot ask the kernel on this system, so it reports false.
func sinceLastRecv(c *net.TCPConn) (time.Duration, bool) { return 0, false }

//go:build !linux

package splice

import (
	"net"
	"time"
)

// sinceLastData cannot ask the kernel on this system, so it reports false.
func sinceLastData(c *net.TCPConn) (time.Duration, bool) { return 0, false }

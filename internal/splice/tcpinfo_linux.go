package splice

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// sinceLastData asks the kernel how long ago bytes last moved on c, either
// way: the later of the last data received and the last data sent that
// the peer has acknowledged since. Sending counts only with the peer's
// acknowledgment, so that retransmissions to a dead peer, which the
// kernel counts as data sent, do not keep a connection from being idle;
// a live peer that reads nothing sends acknowledgments but is sent no
// data (only window probes), so it is idle too.
func sinceLastData(c *net.TCPConn) (time.Duration, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || serr != nil {
		return 0, false
	}
	sent := max(info.Last_data_sent, info.Last_ack_recv)
	return time.Duration(min(info.Last_data_recv, sent)) * time.Millisecond, true
}

//go:build !linux

package instance

import "time"

// id returns 0: only Linux names sockets in /proc.
func (d socketDup) id() uint64 { return 0 }

// waitSocketClosed returns at once: only the Linux event loop closes its
// listener after StopAccepting returns.
func waitSocketClosed(uint64, time.Duration) {}

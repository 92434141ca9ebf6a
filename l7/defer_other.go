//go:build !linux

package l7

import "net"

// deferAccept does nothing here: deferred accept is a Linux option.
func deferAccept(net.Listener) {}

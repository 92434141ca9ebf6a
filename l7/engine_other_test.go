//go:build !linux

package l7

import (
	"net"
	"testing"
)

// awaitLoops does nothing: event loops serve on Linux only.
func awaitLoops(testing.TB, *Proxy, net.Listener) {}

//go:build linux

package l7

import (
	"net"

	"golang.org/x/sys/unix"
)

// deferAcceptSeconds is how long the kernel keeps a connection whose
// client has sent nothing before handing it over anyway (after which
// Proxy.HeaderTimeout applies as usual).
const deferAcceptSeconds = 1

// deferAccept makes ln hand over a connection only once its client has sent
// its first bytes (TCP_DEFER_ACCEPT; HAProxy's defer-accept, nginx's
// deferred). An HTTP client always speaks first, so the request is then
// already there: its first read finds it instead of finding nothing and
// waiting, and a client that connects and says nothing costs the proxy no
// descriptor or goroutine until the kernel gives up waiting. A listener
// that refuses the option serves as before.
func deferAccept(ln net.Listener) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
}

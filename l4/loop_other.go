//go:build !linux

package l4

import "net"

// eventLoop exists on Linux only; elsewhere every connection has its own
// goroutine.
type eventLoop struct {
	index int
}

func (p *Proxy) newEventLoops(net.Listener, int) ([]*eventLoop, string, error) {
	return nil, "the event loop runs on Linux only", nil
}

func (l *eventLoop) Serve() error { return nil }

func (l *eventLoop) Stop(bool) {}

func (l *eventLoop) Release() {}

func (l *eventLoop) wake() {}

func (l *eventLoop) accepted() uint64 { return 0 }

func (l *eventLoop) name() string { return "" }

func (l *eventLoop) listener() net.Listener { return nil }

func (l *eventLoop) retire() <-chan struct{} { return nil }

func (l *eventLoop) closeConnsLater(string) {}

var testHookAccepted func(fd int)

package l4

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// Settings are the proxy's settings that Reconfigure changes while it
// serves. Each field means what the Proxy field of the same name means,
// zero values included.
type Settings struct {
	Selector       backend.Selector
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
}

// settings are Settings with defaults resolved, as a connection uses
// them. They are immutable once published: a connection loads them once,
// when it is accepted, and keeps them to its end.
type settings struct {
	sel    backend.Selector
	dialer net.Dialer
	idle   time.Duration // 0 for none
}

// errNoSelector is the error of settings without a selector.
var errNoSelector = errors.New("l4: settings need a Selector")

// resolve returns s with defaults resolved.
func (s Settings) resolve() (*settings, error) {
	if s.Selector == nil {
		return nil, errNoSelector
	}
	r := &settings{sel: s.Selector, dialer: backend.Dialer(s.ConnectTimeout), idle: max(s.IdleTimeout, 0)}
	if hook := testHookDialing; hook != nil {
		r.dialer.Control = func(_, _ string, rc syscall.RawConn) error { return rc.Control(hook) }
	}
	return r, nil
}

// Reconfigure applies s while the proxy serves, closing no listener and
// no connection. Connections accepted afterwards use s throughout (their
// backend choice, dial timeout and idle timeout); connections already
// open keep the settings they were accepted with, so a shorter idle
// timeout never cuts one that was idle within the old bound, and a
// client's pin is not moved by a new policy (the policy places clients
// without a usable pin). It fails, changing nothing, when s has no
// Selector. It may be called before Serve, and concurrently with itself
// (the last call wins).
func (p *Proxy) Reconfigure(s Settings) error {
	r, err := s.resolve()
	if err != nil {
		return err
	}
	p.setup()
	p.tuned.Store(r)
	return nil
}

package proxyproto

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// DefaultTimeout is the time a header has to arrive when Policy.Timeout is
// zero.
const DefaultTimeout = 10 * time.Second

// ErrUntrusted is the error of a connection from a peer that is not one
// of the Policy's: behind a PROXY listener only the balancers in front of
// it may connect, or anyone could claim to be any client.
var ErrUntrusted = errors.New("peer not in listen_proxy")

// Policy is what a front door requires of the peers that connect to it.
// The zero value reads no header: every peer is its own client.
type Policy struct {
	// From lists the peers that connect, each starting with a header that
	// names its client. When it is not empty, a connection from any other
	// peer is refused.
	From Peers
	// Timeout bounds the arrival of the header, from the accept. Zero
	// means DefaultTimeout.
	Timeout time.Duration
}

// On reports whether the front door reads headers.
func (p Policy) On() bool { return len(p.From) > 0 }

// Wait returns Timeout, or DefaultTimeout for zero.
func (p Policy) Wait() time.Duration {
	if p.Timeout <= 0 {
		return DefaultTimeout
	}
	return p.Timeout
}

// Admit checks that peer may connect: always when the policy is off, else
// only when it is one of From.
func (p Policy) Admit(peer netip.Addr) error {
	if p.On() && !p.From.Contains(peer) {
		return fmt.Errorf("%w: %s", ErrUntrusted, peer.Unmap())
	}
	return nil
}

// Client returns the client of c: its peer when the policy is off, else
// the client its header names (or its peer, for a header that names none),
// read within Timeout of now. An error means the connection must be
// refused: an untrusted peer, or no valid header in time.
func (p Policy) Client(c *net.TCPConn) (netip.AddrPort, error) {
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	if !p.On() {
		return peer, nil
	}
	if err := p.Admit(peer.Addr()); err != nil {
		return netip.AddrPort{}, err
	}
	src, ok, err := Read(c, time.Now().Add(p.Wait()))
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !ok {
		return peer, nil
	}
	return src, nil
}

//go:build !unix

package proxyproto

import (
	"errors"
	"fmt"
	"net/netip"
)

// ReadFrom needs a socket it can peek at without consuming, which lbctl
// does only on unix systems: elsewhere a listener that expects PROXY
// protocol headers refuses every connection with this error.
func (r *Reader) ReadFrom(fd int) (src netip.AddrPort, ok, done bool, err error) {
	return netip.AddrPort{}, false, false, fmt.Errorf("read PROXY protocol header: %w", errors.ErrUnsupported)
}

//go:build !linux

package bench

import "syscall"

// bindAddressNoPort is Linux only; elsewhere dials bind as usual.
var bindAddressNoPort func(network, address string, c syscall.RawConn) error

// fdLimit is not known here.
func fdLimit() (uint64, bool) { return 0, false }

//go:build unix

package peek

import "golang.org/x/sys/unix"

// verdict reads the result of a non-blocking peek of one byte: EAGAIN is
// the only quiet answer; a byte, or zero bytes (the end of the stream),
// is something sent; any other error (a reset, say) leaves it unknown.
func verdict(n int, errno unix.Errno) state {
	switch {
	case errno == unix.EAGAIN:
		return quiet
	case errno == 0 && n >= 0:
		return sent
	}
	return unknown
}

//go:build !linux

package park

import (
	"errors"
	"net"
	"time"
)

// Watcher would hold parked connections; outside Linux there is none (see
// New).
type Watcher[T any] struct{}

// New reports errors.ErrUnsupported: outside Linux, idle connections keep
// their goroutines.
func New[T any](ready func(fd int, x T), expire func(x T)) (*Watcher[T], error) {
	return nil, errors.ErrUnsupported
}

// Park keeps nothing.
func (w *Watcher[T]) Park(fd int, until time.Time, x T) bool { return false }

// ParkConn keeps nothing.
func (w *Watcher[T]) ParkConn(c *net.TCPConn, until time.Time, x T) bool { return false }

// Parked returns 0.
func (w *Watcher[T]) Parked() int { return 0 }

// Serve returns at once.
func (w *Watcher[T]) Serve() error { return nil }

// Stop does nothing.
func (w *Watcher[T]) Stop(abort bool) {}

// Release does nothing.
func (w *Watcher[T]) Release() {}

// Detach reports errors.ErrUnsupported, leaving c as it was.
func Detach(c *net.TCPConn) (int, error) { return -1, errors.ErrUnsupported }

// Attach reports errors.ErrUnsupported; nothing is ever detached here.
func Attach(fd int) (*net.TCPConn, error) { return nil, errors.ErrUnsupported }

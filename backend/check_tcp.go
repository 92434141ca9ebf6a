package backend

import (
	"context"
	"fmt"
	"net"
)

// TCPCheck passes when a TCP connection to the backend's address can be
// opened; the connection is closed at once.
type TCPCheck struct {
	// Dialer opens the connection; its zero value is fine, the prober's
	// context bounds the attempt.
	Dialer net.Dialer
}

var _ Checker = (*TCPCheck)(nil)

// Check connects to b.Address(), then closes the connection.
func (c *TCPCheck) Check(ctx context.Context, b *Backend) error {
	conn, err := c.Dialer.DialContext(ctx, "tcp", b.Address())
	if err != nil {
		return fmt.Errorf("tcp check %s: %w", b.ID, err)
	}
	return conn.Close()
}

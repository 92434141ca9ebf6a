//go:build linux

package peek

import (
	"net"
	"testing"

	"github.com/lbctl/lbctl/internal/loopback"
)

// rawFD returns c's descriptor, for SentFD as an event loop calls it.
func rawFD(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// SentFD says of a raw socket what Sent says of a connection: nothing
// before its peer writes or closes, then that it has sent, and it takes
// nothing from a reader.
func TestSentFD(t *testing.T) {
	written, writer := loopback.Pair(t)
	closed, closer := loopback.Pair(t)
	if SentFD(rawFD(t, written)) || SentFD(rawFD(t, closed)) {
		t.Fatal("sent before anything was sent")
	}
	writer.Write([]byte("GET / HTTP/1.1\r\n"))
	closer.CloseWrite()
	for _, c := range []*net.TCPConn{writer, closer} {
		if err := loopback.WaitAcked(c); err != nil {
			t.Fatal(err)
		}
	}
	if !SentFD(rawFD(t, written)) {
		t.Error("a socket with a request pending: not sent")
	}
	if !SentFD(rawFD(t, closed)) {
		t.Error("a socket its peer closed: not sent")
	}
	buf := make([]byte, 32)
	if n, err := written.Read(buf); string(buf[:n]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("after the peek, read %q, %v; want the request", buf[:n], err)
	}
	if SentFD(rawFD(t, written)) {
		t.Error("a socket whose bytes were read: still sent")
	}
}

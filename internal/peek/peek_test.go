package peek

import (
	"net"
	"testing"

	"github.com/lbctl/lbctl/internal/loopback"
)

// A connection is quiet until its peer writes or closes; then it has sent
// something, and the peek takes nothing from a reader.
func TestQuietAndSent(t *testing.T) {
	conns := make([]*net.TCPConn, 3) // closed, quiet, written to
	peers := make([]*net.TCPConn, 3)
	for i := range conns {
		conns[i], peers[i] = loopback.Pair(t)
		if !Quiet(conns[i]) || Sent(conns[i]) {
			t.Fatalf("connection %d: quiet %v, sent %v before anything was sent", i, Quiet(conns[i]), Sent(conns[i]))
		}
	}
	peers[0].CloseWrite()
	peers[2].Write([]byte("unasked"))
	for _, c := range []*net.TCPConn{peers[0], peers[2]} {
		if err := loopback.WaitAcked(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{0, 2} {
		if Quiet(conns[i]) || !Sent(conns[i]) {
			t.Errorf("connection %d closed by its peer or with bytes pending: quiet %v, sent %v", i, Quiet(conns[i]), Sent(conns[i]))
		}
	}
	if !Quiet(conns[1]) {
		t.Error("the connection nobody wrote to is not quiet")
	}
	buf := make([]byte, 16)
	if n, err := conns[2].Read(buf); string(buf[:n]) != "unasked" {
		t.Fatalf("after the peek, read %q, %v; want the bytes", buf[:n], err)
	}
	if !Quiet(conns[2]) {
		t.Error("a connection whose bytes were read is not quiet again")
	}
	conns[1].Close()
	if Quiet(conns[1]) || Sent(conns[1]) {
		t.Error("a connection closed here is quiet or has sent: want unknown")
	}
}

// BenchmarkQuiet is the price of the check that runs once per reuse of a
// backend connection, when it is taken from the pool.
func BenchmarkQuiet(b *testing.B) {
	c, _ := loopback.Pair(b)
	b.ReportAllocs()
	for b.Loop() {
		if !Quiet(c) {
			b.Fatal("an idle connection is not quiet")
		}
	}
}

package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/accesslog"
)

// loggedProxy starts a proxy over one canned backend "app-01" that logs
// to lg, and returns its address.
func loggedProxy(t testing.TB, lg *accesslog.Log) string {
	t.Helper()
	return startProxy(t, cannedBackend(t, benchResponse), func(p *Proxy) { p.AccessLog = lg })
}

const stickyRequest = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nCookie: SERVERID=app-01\r\n\r\n"

// sendRequests sends n sticky requests over one kept-alive connection to
// addr and returns how long they took.
func sendRequests(t *testing.T, addr string, n int) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	out, in := []byte(stickyRequest), make([]byte, len(benchResponse))
	start := time.Now()
	for i := range n {
		if _, err := c.Write(out); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
	}
	return time.Since(start)
}

// An access log whose output nobody reads does not slow the proxy down:
// the requests take about as long as with a log that keeps up, and the
// lines that do not fit are dropped and counted.
func TestAccessLogBlockedOutput(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	// Fill the pipe, so that the log's first write blocks.
	pw.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := pw.Write(make([]byte, 4<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("filling the pipe: %v", err)
	}
	pw.SetWriteDeadline(time.Time{})

	const n, size = 3000, 64
	fast := accesslog.New(io.Discard, size)
	defer fast.Close(context.Background())
	blocked := accesslog.New(pw, size)
	defer func() {
		pr.Close() // unblocks the writer
		blocked.Close(context.Background())
	}()

	sendRequests(t, loggedProxy(t, fast), 100) // warm up
	tookFast := sendRequests(t, loggedProxy(t, fast), n)
	tookBlocked := sendRequests(t, loggedProxy(t, blocked), n)
	t.Logf("%d requests: %v with the log keeping up, %v with its output blocked (%d lines dropped)", n, tookFast, tookBlocked, blocked.Dropped())
	if tookBlocked > 3*tookFast+2*time.Second {
		t.Errorf("with the log's output blocked %d requests took %v, with it keeping up %v", n, tookBlocked, tookFast)
	}
	// Every request's line is dropped, written into the log's buffer,
	// waiting in the ring, or the one whose write blocks.
	if d, w := blocked.Dropped(), blocked.Written(); d+w < n-size-1 || d+w > n || d == 0 {
		t.Errorf("dropped %d, written %d of %d requests' lines", d, w, n)
	}
}

// BenchmarkStickyRequestAccessLog is BenchmarkStickyRequest with the
// access log on, written to a file in the test's temporary directory.
func BenchmarkStickyRequestAccessLog(b *testing.B) {
	f, err := os.Create(b.TempDir() + "/access.log")
	if err != nil {
		b.Fatal(err)
	}
	lg := accesslog.New(f, accesslog.DefaultSize)
	addr := loggedProxy(b, lg)
	benchRequests(b, addr, stickyRequest, len(benchResponse))
	b.StopTimer()
	lg.Close(context.Background())
	f.Close()
	b.ReportMetric(float64(lg.Dropped()), "dropped")
}

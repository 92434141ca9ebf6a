package l7

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/lbctl/lbctl/internal/eventually"
)

// arrived returns how many requests for target reached hb's handler.
func (hb *httpBackend) arrived(target string) int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.arrivals[target]
}

// TestH2ContinuationFloodIsBounded: a client that sends a HEADERS frame
// without END_HEADERS and then CONTINUATION frames without end
// (CVE-2024-27316) has its connection closed once the header list passes
// the limit, without the process holding the list, while another client
// is served; nothing reaches a backend.
func TestH2ContinuationFloodIsBounded(t *testing.T) {
	const flood = 64 << 20 // what the client would send if never stopped
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) { p.MaxHeaderBytes = 16 << 10 })
	c, _ := h2Client(t)
	url := "https://" + f.addr + "/"
	get(t, c, url)
	base := liveHeap()
	sampler := startHeapSampler()

	h := dialH2Raw(t, f.addr)
	closed := make(chan error, 1)
	go func() {
		// Drain what the server sends until it closes the connection.
		for {
			fr, err := h.fr.ReadFrame()
			if err != nil {
				closed <- err
				return
			}
			if g, ok := fr.(*http2.GoAwayFrame); ok {
				closed <- fmt.Errorf("GOAWAY %v", g.ErrCode)
				return
			}
		}
	}()
	// Each fragment carries fields never indexed, so that every one of
	// them counts against the list as it is decoded.
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for i := 0; block.Len() < 8<<10; i++ {
		enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 200) + strconv.Itoa(i), Sensitive: true})
	}
	if err := h.headers(1, "/flood", true); err != nil {
		t.Fatal(err)
	}
	// The stream above is whole; stream 3 is the flood.
	h.buf.Reset()
	for _, fl := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "lb.test"}, {":path", "/flood"}} {
		h.enc.WriteField(hpack.HeaderField{Name: fl[0], Value: fl[1]})
	}
	var sent int
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: h.buf.Bytes(), EndStream: true})
	for err == nil && sent < flood {
		err = h.fr.WriteContinuation(3, false, block.Bytes())
		sent += block.Len()
	}
	var end error
	select {
	case end = <-closed:
	case <-time.After(30 * time.Second):
	}
	live, inUse := sampler.Stop()
	if end == nil {
		t.Fatalf("after %d KiB of CONTINUATION (last write: %v) the connection is still open", sent>>10, err)
	}
	t.Logf("connection ended (%v) after %d KiB sent; live heap %d KiB before, at most %d KiB during; heap in use at most %d KiB",
		end, sent>>10, base>>10, live>>10, inUse>>10)
	if sent >= flood {
		t.Errorf("the whole %d MiB flood was accepted before the connection closed", flood>>20)
	}
	if inUse > base+16<<20 {
		t.Errorf("heap in use grew from %d KiB to %d KiB during the flood, want under 16 MiB of growth", base>>10, inUse>>10)
	}
	if _, resp := get(t, c, url); resp.StatusCode != 200 {
		t.Errorf("another client got %d during the flood", resp.StatusCode)
	}
	// Stream 1 was whole and may have been served; the flooded stream 3
	// never was, so at most one request for /flood arrived.
	if n := f.byID["app-01"].arrived("/flood"); n > 1 {
		t.Errorf("%d requests for /flood reached the backend, want the flooded stream kept from it", n)
	}
}

// h2load runs Debian's h2load (package nghttp2-client) with args and
// returns its output. Without it the test skips, naming the package,
// except under CI=true, where that is a failure.
func h2load(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("h2load")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("h2load not found (%v): .ci/run installs the Debian package nghttp2-client", err)
		}
		t.Skip("h2load not found: install the Debian package nghttp2-client to run the h2load test")
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("h2load %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)

// TestH2LoadFloodIsServedAndBounded: h2load opens 20 HTTP/2 connections
// with as many streams in flight on each as lbctl allows, and more, and
// sends 20,000 requests (5,000 under the race detector); every one is
// answered, a client beside it is
// served all along, the live heap stays within what the streams lbctl
// allows in flight may hold, and no backend request is
// left in flight once it ends.
func TestH2LoadFloodIsServedAndBounded(t *testing.T) {
	// 2,000 streams in flight on a shared machine can keep a backend's
	// accept loop waiting longer than the fixture's second to connect.
	f, _ := tlsFixture(t, 2, h2Options(t), func(p *Proxy) { p.ConnectTimeout = 20 * time.Second })
	url := "https://" + f.addr + "/"
	requests := 20000
	if raceEnabled {
		requests = 5000 // the race detector makes each one several times slower
	}
	c, tr := h2Client(t)
	get(t, c, url)
	tr.CloseIdleConnections()
	base := liveHeap()
	sampler := startHeapSampler()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var beside sync.WaitGroup
	besideErrs := make(chan error, 1)
	stop := make(chan struct{})
	beside.Go(func() {
		c, tr := h2Client(t)
		defer tr.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := okGet(c, url); err != nil {
				besideErrs <- err
				return
			}
		}
	})
	// -m above the 100 streams a connection may have open: h2load keeps
	// asking for more than lbctl allows.
	out := h2load(t, ctx, "-n", strconv.Itoa(requests), "-c", "20", "-m", "200", "-t", "1", url)
	close(stop)
	beside.Wait()
	live, inUse := sampler.Stop()
	select {
	case err := <-besideErrs:
		t.Errorf("a client beside the flood: %v", err)
	default:
	}
	if !strings.Contains(out, "Application protocol: h2") {
		t.Errorf("h2load did not speak h2:\n%s", out)
	}
	m := h2loadRequests.FindStringSubmatch(out)
	if m == nil || m[4] != strconv.Itoa(requests) || m[5] != "0" || m[6] != "0" {
		t.Fatalf("want all %d requests to succeed:\n%s", requests, out)
	}
	t.Logf("h2load: %s; live heap %d KiB before, at most %d KiB during; heap in use at most %d KiB",
		strings.TrimSpace(m[0]), base>>10, live>>10, inUse>>10)
	// What a stream in flight holds (buffers for its head and body copies,
	// about 70 KiB measured) is bounded, and so is the number of streams:
	// the bound follows SETTINGS_MAX_CONCURRENT_STREAMS, not the 200
	// streams h2load would have on each connection.
	const conns, perStream = 20, 96 << 10
	if bound := uint64(conns * h2MaxStreams * perStream); live > base+bound {
		t.Errorf("live heap grew from %d KiB to %d KiB under the flood, want under %d KiB for %d connections of %d streams",
			base>>10, live>>10, bound>>10, conns, h2MaxStreams)
	}
	// Leaks are TestTLSAndH2LeaveNothingBehind's: its baseline turns the
	// collector off, which would defeat the bound on the heap here.
	for _, hb := range f.backends {
		b := f.pool.Registry().Get(hb.id)
		eventually.True(t, hb.id+" to have no request in flight", func() bool { return b.Active() == 0 })
	}
}

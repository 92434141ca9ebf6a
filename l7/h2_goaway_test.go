package l7

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// readToEnd reads frames until lbctl closes the connection, and fails the
// test if the connection's own deadline ends the reading instead.
func (h *h2Raw) readToEnd(t *testing.T) {
	t.Helper()
	for {
		_, err := h.fr.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the connection was not closed")
		}
		if err != nil {
			return
		}
	}
}

// answered reports whether stream id ended with a whole 200 answer.
func (s *h2Seen) answered(id uint32) bool {
	code, ok := s.ended[id]
	return ok && code == http2.ErrCodeNo && s.status[id] == "200"
}

// h2Live counts the HTTP/2 connections p serves.
func h2Live(p *Proxy) int {
	n := 0
	p.h2.live.each(func(*h2client) { n++ })
	return n
}

// shutdownAsync starts the proxy's Shutdown, and returns its result's
// channel.
func shutdownAsync(f *fixture) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- f.proxy.Shutdown(ctx)
	}()
	return done
}

// TestH2ShutdownServesARequestBetweenItsGoAways: Shutdown's first GOAWAY
// names stream 2^31-1 and is followed by a PING; a request the client
// sends before it acknowledges that PING (one that crossed the GOAWAY on
// the wire) reaches the backend and is answered. The acknowledgement
// brings the second GOAWAY, naming that stream, and the connection closes
// once it is done.
func TestH2ShutdownServesARequestBetweenItsGoAways(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) {
		p.h2.round = 30 * time.Second // only the PING's ACK brings the second GOAWAY
	})
	h := dialH2Raw(t, f.addr)
	var seen h2Seen
	done := shutdownAsync(f)
	h.readUntil(t, &seen, "the first GOAWAY", func() bool { return len(seen.goAways) == 1 })
	if g := seen.goAways[0]; g != (h2GoAway{1<<31 - 1, http2.ErrCodeNo}) {
		t.Errorf("first GOAWAY %v naming stream %d, want NO_ERROR naming 2^31-1", g.code, g.last)
	}
	h.readUntil(t, &seen, "the PING after the first GOAWAY", func() bool { return len(seen.pings) == 1 })
	if err := h.headers(1, "/", true); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the answer to stream 1", func() bool { _, ok := seen.ended[1]; return ok })
	if !seen.answered(1) {
		t.Errorf("a request between the GOAWAYs: status %q, end %v; want 200", seen.status[1], seen.ended[1])
	}
	if len(seen.goAways) != 1 {
		t.Errorf("%d GOAWAY frames before the PING was acknowledged, want 1", len(seen.goAways))
	}
	if err := h.fr.WritePing(true, seen.pings[0]); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the second GOAWAY", func() bool { return len(seen.goAways) == 2 })
	if g := seen.goAways[1]; g != (h2GoAway{1, http2.ErrCodeNo}) {
		t.Errorf("second GOAWAY %v naming stream %d, want NO_ERROR naming 1", g.code, g.last)
	}
	h.readToEnd(t)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := f.backends[0].Served(); n != 1 {
		t.Errorf("backend served %d requests, want 1", n)
	}
}

// TestH2SecondGoAwayNamesTheLastStream: the second GOAWAY names the last
// stream opened, the one sent after the first GOAWAY included; a stream
// opened after it is refused (REFUSED_STREAM, safe to send again) and
// reaches no backend, while those it names, one in flight since before
// Shutdown among them, are answered before the connection closes.
func TestH2SecondGoAwayNamesTheLastStream(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) {
		p.h2.round = 30 * time.Second
	})
	h := dialH2Raw(t, f.addr)
	var seen h2Seen
	if err := h.headers(1, "/slow", true); err != nil {
		t.Fatal(err)
	}
	if err := f.backends[0].awaitArrivals("/slow", 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	done := shutdownAsync(f)
	h.readUntil(t, &seen, "the first GOAWAY and its PING", func() bool { return len(seen.pings) == 1 })
	if err := h.headers(3, "/", true); err != nil {
		t.Fatal(err)
	}
	// lbctl reads the acknowledgement after stream 3's HEADERS.
	if err := h.fr.WritePing(true, seen.pings[0]); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the second GOAWAY", func() bool { return len(seen.goAways) == 2 })
	if g := seen.goAways[1]; g != (h2GoAway{3, http2.ErrCodeNo}) {
		t.Errorf("second GOAWAY %v naming stream %d, want NO_ERROR naming 3", g.code, g.last)
	}
	if err := h.headers(5, "/", true); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "streams 1, 3 and 5 to end", func() bool { return len(seen.ended) == 3 })
	if code := seen.ended[5]; code != http2.ErrCodeRefusedStream {
		t.Errorf("a request after the second GOAWAY: status %q, end %v; want REFUSED_STREAM", seen.status[5], code)
	}
	for _, id := range []uint32{1, 3} {
		if !seen.answered(id) {
			t.Errorf("stream %d: status %q, end %v; want 200", id, seen.status[id], seen.ended[id])
		}
	}
	h.readToEnd(t)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := f.backends[0].Served(); n != 2 {
		t.Errorf("backend served %d requests, want 2", n)
	}
}

// TestH2GoAwayWithoutPingAckIsBounded: a client that never acknowledges
// the PING after the first GOAWAY (it acknowledges one with another
// payload, which is not lbctl's) gets the second GOAWAY once
// h2GoAwayRound has passed, and its connection closes.
func TestH2GoAwayWithoutPingAckIsBounded(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	h := dialH2Raw(t, f.addr)
	var seen h2Seen
	start := time.Now()
	done := shutdownAsync(f)
	h.readUntil(t, &seen, "the first GOAWAY and its PING", func() bool { return len(seen.pings) == 1 })
	other := seen.pings[0]
	other[0]++
	if err := h.fr.WritePing(true, other); err != nil {
		t.Fatal(err)
	}
	h.readUntil(t, &seen, "the second GOAWAY", func() bool { return len(seen.goAways) == 2 })
	// The timer starts after Shutdown does, and never fires early.
	if took := time.Since(start); took < h2GoAwayRound || took > 25*time.Second {
		t.Errorf("second GOAWAY %v after Shutdown, want at least %v and within the test's patience", took, h2GoAwayRound)
	}
	if g := seen.goAways[1]; g != (h2GoAway{0, http2.ErrCodeNo}) {
		t.Errorf("second GOAWAY %v naming stream %d, want NO_ERROR naming 0", g.code, g.last)
	}
	h.readToEnd(t)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestH2GoAwayRoundEndsWithItsConnection: a connection that ends between
// the two GOAWAY frames (here one that its idle timeout closes, whose
// client then leaves) takes the bound on the round trip with it: nothing
// of it waits for the bound to pass.
func TestH2GoAwayRoundEndsWithItsConnection(t *testing.T) {
	f, _ := tlsFixture(t, 1, h2Options(t), func(p *Proxy) {
		p.IdleTimeout = 300 * time.Millisecond
		p.h2.round = time.Minute // longer than leakcheck waits
	})
	// A first connection warms the TLS and HTTP/2 paths up, and is gone
	// before the baseline is taken.
	warmUp := dialH2Raw(t, f.addr)
	var seen h2Seen
	warmUp.readUntil(t, &seen, "the idle GOAWAY", func() bool { return len(seen.goAways) == 1 })
	warmUp.c.Close()
	eventually.True(t, "the first connection to end", func() bool { return h2Live(f.proxy) == 0 })
	warm := leakcheck.Take(t)
	h := dialH2Raw(t, f.addr)
	seen = h2Seen{}
	h.readUntil(t, &seen, "the idle GOAWAY and its PING", func() bool { return len(seen.pings) == 1 })
	if g := seen.goAways[0]; g != (h2GoAway{1<<31 - 1, http2.ErrCodeNo}) {
		t.Errorf("first idle GOAWAY %v naming stream %d, want NO_ERROR naming 2^31-1", g.code, g.last)
	}
	h.c.Close()
	warm.Wait(t, 20*time.Second)
}

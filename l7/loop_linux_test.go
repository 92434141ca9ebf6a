//go:build linux

package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// loopFixture is a fixture whose proxy serves on the loop engine,
// whatever engine the suites run on.
func loopFixture(t *testing.T, n int) *fixture {
	t.Helper()
	return newFixture(t, fixtureOpts{n: n, configure: func(p *Proxy) {
		p.Engine = EngineLoop
		p.Loops = 2
	}})
}

// On the loop engine a kept-alive connection waiting for its next request
// costs no goroutine, from the moment its response has gone out (the
// goroutine engine has one per connection until it parks it).
func TestLoopEngineHoldsIdleConnectionsWithoutGoroutines(t *testing.T) {
	f := loopFixture(t, 2)
	before := runtime.NumGoroutine()
	const n = 50
	ks := make([]*keptAlive, n)
	for i := range ks {
		ks[i] = openKeptAlive(t, f.addr)
		ks[i].c.SetDeadline(time.Now().Add(60 * time.Second))
		if resp, id := ks[i].get(t, "/", ""); resp.StatusCode != 200 || !strings.HasPrefix(id, "app-") {
			t.Fatalf("connection %d: status %d from %q", i, resp.StatusCode, id)
		}
	}
	if g := runtime.NumGoroutine(); g >= before+n/2 {
		t.Errorf("%d goroutines with %d idle kept-alive connections, %d before", g, n, before)
	}
	if open := f.proxy.Counts().Open(); open != n {
		t.Errorf("%d connections counted open, want %d", open, n)
	}
	for i, k := range ks {
		if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || !strings.HasPrefix(id, "app-") {
			t.Fatalf("connection %d, second request: status %d from %q", i, resp.StatusCode, id)
		}
		k.c.Close()
	}
}

// A request with a body reaches the loop engine, which hands its
// connection over to the goroutine engine with the bytes it has read: the
// body arrives whole, the connection is then served by a goroutine, and
// its later requests still are answered on it.
func TestLoopEngineHandsBodiesOver(t *testing.T) {
	f := loopFixture(t, 1)
	k := openKeptAlive(t, f.addr)
	k.c.SetDeadline(time.Now().Add(60 * time.Second))
	if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || id != "app-01" {
		t.Fatalf("first request: status %d from %q", resp.StatusCode, id)
	}
	if goroutineIn("l7.(*Proxy).handle") {
		t.Fatal("a goroutine serves the connection before any request had a body")
	}
	body := strings.Repeat("x", 100000)
	postSink(t, k, body)
	if !goroutineIn("l7.(*Proxy).handle") {
		t.Error("no goroutine serves the connection after its request with a body")
	}
	if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || id != "app-01" {
		t.Fatalf("request after the hand-over: status %d from %q", resp.StatusCode, id)
	}
}

// StopAccepting on a listener the loops serve closes its socket before it
// returns (every loop's copy of it), while the connections accepted there
// are still served; Serve returns, with net.ErrClosed, once they have
// ended.
func TestLoopEngineStopAccepting(t *testing.T) {
	hb := startHTTPBackend(t, "app-01")
	reg, err := backend.NewRegistry([]*backend.Backend{backend.New(hb.id, hb.addr, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Pool: backend.NewPool(reg), Selector: &backend.RoundRobin{}, Cookie: defaultCookie(), Engine: EngineLoop, Loops: 2}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	awaitLoopsOf(t, p, 2)
	k := openKeptAlive(t, addr)
	k.c.SetDeadline(time.Now().Add(60 * time.Second))
	if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || id != "app-01" {
		t.Fatalf("status %d from %q", resp.StatusCode, id)
	}
	p.StopAccepting(ln)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("the listener %s still accepts after StopAccepting returned", addr)
	}
	if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || id != "app-01" {
		t.Fatalf("after StopAccepting: status %d from %q", resp.StatusCode, id)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while a connection was open", err)
	default:
	}
	k.c.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v, want net.ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still running 20s after the last connection closed")
	}
}

// The loop engine serves an HTTP/1.0 client itself: kept alive when it
// asks, with no goroutine taking the connection over, and a chunked
// response reaches it unwrapped, without Transfer-Encoding, ending with
// the connection.
func TestLoopEngineServesHTTP10(t *testing.T) {
	f := loopFixture(t, 1)
	c := dialProxy(t, f.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, r, "GET")
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "app-01" || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("kept-alive HTTP/1.0 request: status %d, body %q, Connection %q", resp.StatusCode, body, resp.Header.Get("Connection"))
	}
	if goroutineIn("l7.(*Proxy).handle") {
		t.Error("a goroutine serves the HTTP/1.0 connection")
	}
	if _, err := io.WriteString(c, "GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	head, rest, _ := strings.Cut(string(got), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") || strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Errorf("head %q, want 200 without Transfer-Encoding", head)
	}
	if want := "app-01 part 0\napp-01 part 1\napp-01 part 2\n"; rest != want {
		t.Errorf("body %q, want %q", rest, want)
	}
}

// A small body that comes whole with its head goes out with it from the
// loop: it reaches the backend whole, the connection stays on the loop
// and kept alive.
func TestLoopEngineSendsABodyThatCameWithItsHead(t *testing.T) {
	f := loopFixture(t, 1)
	k := openKeptAlive(t, f.addr)
	k.c.SetDeadline(time.Now().Add(60 * time.Second))
	body := strings.Repeat("y", 1000)
	postSink(t, k, body)
	if goroutineIn("l7.(*Proxy).handle") {
		t.Error("a goroutine took the connection over for a body that came with its head")
	}
	if resp, id := k.get(t, "/", ""); resp.StatusCode != 200 || id != "app-01" {
		t.Fatalf("request after the POST: status %d from %q", resp.StatusCode, id)
	}
}

// postSink sends body to the fixture's /sink on k, and fails the test
// unless app-01 answers that it read all of it.
func postSink(t *testing.T, k *keptAlive, body string) {
	t.Helper()
	req := fmt.Sprintf("POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(k.c, req); err != nil {
		t.Fatal(err)
	}
	resp, got := readResponse(t, k.r, "POST")
	if want := fmt.Sprintf("app-01 %d <nil>", len(body)); resp.StatusCode != 200 || strings.TrimSpace(got) != want {
		t.Fatalf("POST: status %d, body %q, want %q", resp.StatusCode, got, want)
	}
}

package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/peek"
)

// requestBackend serves raw HTTP/1.1 on loopback: for every request head it
// reads (requests without a body), it calls reply with the connection,
// the connection's number (from 1, in accept order), and the request's
// method and target. reply writes the answer, or anything else.
func requestBackend(t *testing.T, reply func(c net.Conn, conn int, method, target string)) string {
	t.Helper()
	var conns atomic.Int64
	return rawBackend(t, func(c net.Conn) {
		n := int(conns.Add(1))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			parts := strings.Fields(line)
			if len(parts) != 3 {
				return
			}
			reply(c, n, parts[0], parts[1])
		}
	})
}

// ownResponse is what requestBackend's tests answer a request with: its
// own target and the backend connection that carried it.
func ownResponse(target string, conn int) string {
	body := fmt.Sprintf("own %s on %d", target, conn)
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

const poisoned = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"

// TestBytesNobodyAskedForNeverReachAClient replays the responses that
// poisoned the backend connection pool: a response whose framing leaves
// the backend room to send more, and later a second response that no
// request asked for. The next request on that backend, from another
// client, must get its own response and never the unasked one.
func TestBytesNobodyAskedForNeverReachAClient(t *testing.T) {
	for _, tt := range []struct {
		name, method, first string
		atOnce              bool // the unasked bytes come with the response, not later
	}{
		{"204 with Content-Length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n", false},
		{"204 with Transfer-Encoding", "GET", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"304 with Content-Length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\n", false},
		{"HEAD response, then a body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n", false},
		{"after a Content-Length body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", false},
		{"after a chunked body", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n", false},
		{"with a Content-Length body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			firstRead, poisonSent := make(chan struct{}), make(chan error, 1)
			stop := make(chan struct{})
			addr := requestBackend(t, func(c net.Conn, conn int, method, target string) {
				if target != "/first" {
					io.WriteString(c, ownResponse(target, conn))
					return
				}
				if tt.atOnce {
					_, err := io.WriteString(c, tt.first+poisoned)
					poisonSent <- err
					return
				}
				io.WriteString(c, tt.first)
				// Later: once the first client has its response, and
				// lbctl may have put the connection back in its pool.
				select {
				case <-firstRead:
				case <-stop:
					return
				}
				if _, err := io.WriteString(c, poisoned); err != nil {
					poisonSent <- nil // lbctl closed the connection: nothing can be delivered
					return
				}
				poisonSent <- loopback.WaitAcked(c)
			})
			t.Cleanup(func() { close(stop) })
			proxy := newRawFixture(t, addr, nil)

			c1 := dialProxy(t, proxy)
			fmt.Fprintf(c1, "%s /first HTTP/1.1\r\nHost: x\r\n\r\n", tt.method)
			resp, body := readResponse(t, bufio.NewReader(c1), tt.method)
			if resp.StatusCode >= 300 && resp.StatusCode != 304 || strings.Contains(body, "poisoned") {
				t.Fatalf("first client got %d %q", resp.StatusCode, body)
			}
			close(firstRead)
			if err := <-poisonSent; err != nil {
				t.Fatalf("backend: %v", err)
			}

			c2 := dialProxy(t, proxy)
			io.WriteString(c2, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body = readResponse(t, bufio.NewReader(c2), "GET")
			if resp.StatusCode != 200 || !strings.HasPrefix(body, "own /second on ") {
				t.Errorf("second client got %d %q, want its own response", resp.StatusCode, body)
			}
		})
	}
}

// TestNoContentThatAnnouncesABodyIsNotPooled: a 204 with Content-Length > 0
// or Transfer-Encoding is framed two ways. It reaches the client without a
// body, the client's connection goes on, and the backend connection is
// closed rather than reused.
func TestNoContentThatAnnouncesABodyIsNotPooled(t *testing.T) {
	for name, first := range map[string]string{
		"Content-Length":    "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n",
		"Transfer-Encoding": "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			addr := requestBackend(t, func(c net.Conn, conn int, method, target string) {
				if target == "/first" {
					io.WriteString(c, first)
					return
				}
				io.WriteString(c, ownResponse(target, conn))
			})
			proxy := newRawFixture(t, addr, nil)
			c := dialProxy(t, proxy)
			r := bufio.NewReader(c)
			io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, body := readResponse(t, r, "GET"); resp.StatusCode != 204 || body != "" {
				t.Fatalf("first: %d %q, want 204 without a body", resp.StatusCode, body)
			}
			io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, body := readResponse(t, r, "GET"); resp.StatusCode != 200 || body != "own /second on 2" {
				t.Errorf("second: %d %q, want it answered on a new backend connection", resp.StatusCode, body)
			}
		})
	}
}

// TestReusedConnectionIsLookedAtFirst: a connection from the pool that
// the backend wrote to or closed while it waited is found out before the
// request's first byte goes, by the write that would send it (send for a
// request without a body, Write for one with), and nothing is sent on it
// (errIdleStale); a quiet one carries the request. The look peeks, so a
// reader still gets every byte, and it is made once per use.
func TestReusedConnectionIsLookedAtFirst(t *testing.T) {
	for _, write := range []struct {
		name string
		call func(u *upIO, p []byte) (int, error)
	}{
		{"send", (*upIO).send},
		{"Write", (*upIO).Write},
	} {
		t.Run(write.name, func(t *testing.T) {
			conns := make([]*net.TCPConn, 3) // closed, quiet, written to
			peers := make([]*net.TCPConn, 3)
			for i := range conns {
				conns[i], peers[i] = loopback.Pair(t)
				if !peek.Quiet(conns[i]) {
					t.Fatalf("connection %d is not quiet before anything was sent", i)
				}
			}
			peers[0].CloseWrite()
			peers[2].Write([]byte("unasked"))
			for _, c := range []*net.TCPConn{peers[0], peers[2]} {
				if err := loopback.WaitAcked(c); err != nil {
					t.Fatal(err)
				}
			}
			req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			// The quiet connection's backend reads the request and
			// answers, which is what send waits for.
			received := make(chan string, 1)
			go func() {
				got := make([]byte, len(req))
				peers[1].SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadFull(peers[1], got)
				if err == nil {
					_, err = io.WriteString(peers[1], "HTTP/1.1 204 No Content\r\n\r\n")
				}
				received <- fmt.Sprint(string(got), err)
			}()
			for i, c := range conns {
				var u upIO
				u.use(c)
				u.check = true
				c.SetDeadline(time.Now().Add(5 * time.Second))
				n, err := write.call(&u, req)
				if i == 1 {
					if err != nil || n != len(req) {
						t.Fatalf("quiet connection: wrote %d, %v; want the request", n, err)
					}
					continue
				}
				if !errors.Is(err, errIdleStale) || n != 0 {
					t.Errorf("connection %d: wrote %d, %v; want nothing and errIdleStale", i, n, err)
				}
				if u.check {
					t.Errorf("connection %d: still to be looked at after the look", i)
				}
			}
			buf := make([]byte, 64)
			if n, err := conns[2].Read(buf); string(buf[:n]) != "unasked" {
				t.Errorf("after the peek, read %q, %v; want the bytes", buf[:n], err)
			}
			// What reached the backends: the quiet one's request, and
			// nothing on the two others.
			if got, want := <-received, fmt.Sprint(string(req), nil); got != want {
				t.Errorf("quiet connection's backend received %q, want %q", got, want)
			}
			for _, i := range []int{0, 2} {
				conns[i].Close()
				peers[i].SetReadDeadline(time.Now().Add(5 * time.Second))
				if got, err := io.ReadAll(peers[i]); len(got) != 0 || err != nil {
					t.Errorf("backend %d received %q (%v), want nothing", i, got, err)
				}
			}
		})
	}
}

// TestPoolGetTakesTheLastIdledAndDropsTheOld: get pops the most recently
// returned connection, and closes those that idled past the idle timeout
// on the way.
func TestPoolGetTakesTheLastIdledAndDropsTheOld(t *testing.T) {
	var u upstreamPool
	old, _ := loopback.Pair(t)
	recent, _ := loopback.Pair(t)
	u.put(old, 10, time.Hour, time.Time{})
	u.idle[0].since = time.Now().Add(-time.Minute)
	u.put(recent, 10, time.Hour, time.Time{})
	if got, _ := u.get(30 * time.Second); got != recent {
		t.Fatalf("get returned %v, want the connection returned last", got)
	}
	if got, _ := u.get(30 * time.Second); got != nil || len(u.idle) != 0 {
		t.Fatalf("get returned %v with %d left, want none: the old one is past the idle timeout", got, len(u.idle))
	}
	if _, err := old.Write([]byte("x")); err == nil {
		t.Error("the connection past the idle timeout was not closed")
	}
}

package l7

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzProxy sends arbitrary bytes to a running proxy over a real socket, as
// a client could. Whatever arrives, the process must not crash (a panic in
// a connection's goroutine ends the fuzzing run), and the proxy must answer
// or close within its timeouts.
func FuzzProxy(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=app-01\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes",
		"POST /sink HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.0\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\n", "GET", "\x00\xff\x16\x03", "GET / HTTP/1.1\r\nHost: x\r\nCookie: ;;%%%\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	hb := startHTTPBackend(f, "app-01")
	addr := startProxy(f, hb.addr, func(p *Proxy) {
		p.HeaderTimeout, p.IdleTimeout, p.ServerTimeout = 200*time.Millisecond, 200*time.Millisecond, time.Second
	})

	f.Fuzz(func(t *testing.T, in []byte) {
		c := dialProxy(t, addr)
		defer c.Close()
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("the proxy neither answered nor closed within 5s: %v", err)
		}
	})
}

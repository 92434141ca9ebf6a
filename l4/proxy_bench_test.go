package l4

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// quietLogs sends the default logger's lines nowhere until b ends, so that
// a proxy's start line ("l4 engine: ...") does not split a result line.
func quietLogs(b *testing.B) {
	old := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	b.Cleanup(func() { slog.SetDefault(old) })
}

// serialBackend is the backend of a per-connection benchmark: it serves
// the connections one at a time with serve, on one goroutine, so that the
// backend adds no allocation of its own per connection (a goroutine each,
// as testbackend's, would show in allocs/op) and serve may share its
// buffers. Each connection gets 10 s; the backend ends with the benchmark.
func serialBackend(b *testing.B, serve func(c net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	b.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			serve(c)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkConnection measures one short connection end to end: connect,
// one byte each way, close. "direct" runs the same client against the
// backend itself, so the proxy's own cost per connection (time and
// allocations, including the backend dial) is the difference.
func BenchmarkConnection(b *testing.B) {
	quietLogs(b)
	buf := make([]byte, 1)
	addr := serialBackend(b, func(c net.Conn) {
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	})
	proxied := serveProxy(b, newRegistry(b, addr), nil)

	b.Run("direct", func(b *testing.B) { connectEach(b, addr, nil) })
	b.Run("proxied", func(b *testing.B) { connectEach(b, proxied, nil) })
}

// connectEach is the client of a per-connection benchmark: each operation
// connects to addr, sends first and one byte 'x', reads the one-byte answer
// and closes.
func connectEach(b *testing.B, addr string, first []byte) {
	b.ReportAllocs()
	buf := make([]byte, 1)
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(append(first, 'x'))
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkKeptAliveRoundTrip sends 64 bytes through an established proxied
// connection and reads their echo: the steady-state copy path, which must
// not allocate.
func BenchmarkKeptAliveRoundTrip(b *testing.B) {
	quietLogs(b)
	f := newFixture(b, fixtureOpts{n: 1})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	greet := make([]byte, len("app-01\n"))
	if _, err := io.ReadFull(c, greet); err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

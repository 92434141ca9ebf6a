// Package loopback owns the connected TCP pair of the tests that need
// both ends of a real socket on loopback: a splice or a PROXY header read
// off a raw descriptor, a deadline raced by an interrupt; and the free
// loopback address of a test that hands a listen address to a config. A
// backend that accepts many connections is package testbackend's.
package loopback

import (
	"net"
	"testing"
)

// Pair returns both ends of a loopback TCP connection, closed when the
// test ends. Call it from the test's own goroutine.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// FreeAddr returns 127.0.0.1 with a TCP port that was free a moment ago,
// for a config or a child process that listens there itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

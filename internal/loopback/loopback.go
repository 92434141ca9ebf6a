// Package loopback owns the connected TCP pair of the tests that need
// both ends of a real socket on loopback: a splice or a PROXY header read
// off a raw descriptor, a deadline raced by an interrupt; and the free
// loopback address of a test, or of the lab, that hands a listen address
// to a config. A backend that accepts many connections is package
// testbackend's.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
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
// for a config or a child process that listens there itself (see
// FreeAddrOn).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrOn(t, "127.0.0.1", false)
}

// FreeAddrOn returns ip with a port that was free a moment ago for TCP,
// and for UDP too when udp is set (a cluster member gossips on both).
//
// The port is chosen at random below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), not by listening on port 0: a port from
// that range is handed out again to the next outgoing connection or
// port-0 listener of any process on the machine, so between this call and
// the listen of the config's owner another test's client could take it
// (seen as "bind: address already in use" when the suites of several
// packages run at once). Below the range only another caller of
// FreeAddrOn can, one time in many thousands.
func FreeAddrOn(t testing.TB, ip string, udp bool) string {
	t.Helper()
	addr, err := FreePort(ip, udp)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreePort is FreeAddrOn for a caller that is not a test: the lab, which
// hands the processes it starts their listen addresses.
func FreePort(ip string, udp bool) (string, error) {
	low := ephemeralLow()
	for range 100 {
		addr := net.JoinHostPort(ip, fmt.Sprint(freeBase+rand.IntN(low-freeBase)))
		if free(addr, udp) {
			return addr, nil
		}
	}
	return "", fmt.Errorf("no port free on %s below %d", ip, low)
}

// freeBase is the lowest port FreeAddrOn hands out: above the well-known
// and most registered services' ports.
const freeBase = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read or leaves too little
// room below it.
func ephemeralLow() int {
	var low, high int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		_, err = fmt.Sscan(string(b), &low, &high)
	}
	if err != nil || low < freeBase+1000 {
		return 32768
	}
	return low
}

// free reports whether addr can be listened on for TCP (and UDP).
func free(addr string, udp bool) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	if !udp {
		return true
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

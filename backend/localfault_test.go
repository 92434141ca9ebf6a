package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/lbctl/lbctl/internal/logtest"
)

// dialError builds the error a failed dial returns, the way net.Dialer
// and Backend.DialError wrap the system call's errno.
func dialError(syscallName string, errno syscall.Errno) error {
	b := New("app-01", "127.0.0.1:8080", 1)
	return b.DialError(&net.OpError{
		Op:   "dial",
		Net:  "tcp",
		Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(b.Address())),
		Err:  os.NewSyscallError(syscallName, errno),
	})
}

func TestLocalFault(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"out of source ports", dialError("connect", syscall.EADDRNOTAVAIL), true},
		{"routing cache full", dialError("connect", syscall.EAGAIN), true},
		{"out of buffers", dialError("connect", syscall.ENOBUFS), true},
		{"out of memory", dialError("socket", syscall.ENOMEM), true},
		{"out of descriptors", dialError("socket", syscall.EMFILE), true},
		{"system out of descriptors", dialError("socket", syscall.ENFILE), true},
		// The event loop wraps the bare errno of its raw connect.
		{"raw errno", New("app-01", "127.0.0.1:8080", 1).DialError(syscall.EADDRNOTAVAIL), true},
		{"wrapped twice", fmt.Errorf("no backend available: %w", dialError("connect", syscall.ENOBUFS)), true},

		{"refused", dialError("connect", syscall.ECONNREFUSED), false},
		{"reset", dialError("read", syscall.ECONNRESET), false},
		{"unreachable", dialError("connect", syscall.EHOSTUNREACH), false},
		{"timed out", dialError("connect", syscall.ETIMEDOUT), false},
		{"deadline", context.DeadlineExceeded, false},
		{"eof", io.EOF, false},
		{"nil", nil, false},
		// Only the errno counts, never the text.
		{"text only", errors.New("connect: " + syscall.EADDRNOTAVAIL.Error()), false},
	} {
		if got := LocalFault(tt.err); got != tt.want {
			t.Errorf("%s: LocalFault(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// A local fault, reported on the data path or returned by an active
// check, leaves the backend's health as it was; a backend's own failure
// still counts.
func TestLocalFaultDoesNotCountAgainstTheBackend(t *testing.T) {
	local := dialError("connect", syscall.EADDRNOTAVAIL)
	checkErr := local
	b := New("app-01", "127.0.0.1:8080", 1)
	var logs logtest.Buffer
	p := &Prober{
		Pool:    NewPool(mustRegistry(t, b)),
		Checker: CheckFunc(func(context.Context, *Backend) error { return checkErr }),
		Rise:    1,
		Fall:    1,
		Logger:  bufferLogger(&logs),
	}
	for range 5 {
		p.ReportFailure(b, local)
		p.ReportFailure(b, dialError("socket", syscall.EMFILE))
		p.Round(t.Context())
	}
	if !b.Up() || b.ConsecutiveFailures() != 0 {
		t.Fatalf("after local faults only: Up() = %v, ConsecutiveFailures() = %d; want true, 0\n%s",
			b.Up(), b.ConsecutiveFailures(), logs.String())
	}
	if strings.Contains(logs.String(), "backend down") {
		t.Errorf("a local fault was logged as the backend going down:\n%s", logs.String())
	}

	p.ReportFailure(b, dialError("connect", syscall.ECONNREFUSED))
	if b.Up() {
		t.Fatal("a refused dial with fall 1 left the backend up")
	}
	// Down, a local fault of the active check does not bring it back
	// up either: it is no result at all.
	p.Round(t.Context())
	if b.Up() {
		t.Error("a local fault of the active check brought the backend up")
	}
	checkErr = nil
	p.Round(t.Context())
	if !b.Up() {
		t.Error("a passing check with rise 1 left the backend down")
	}
}

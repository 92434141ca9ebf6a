package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	goproxy "github.com/pires/go-proxyproto"

	"github.com/lbctl/lbctl/internal/loopback"
)

var (
	client4 = netip.MustParseAddrPort("203.0.113.7:51000")
	lb4     = netip.MustParseAddrPort("10.0.0.1:443")
	client6 = netip.MustParseAddrPort("[2001:db8::7]:51000")
	lb6     = netip.MustParseAddrPort("[2001:db8::1]:443")
)

func TestAppendParsesBack(t *testing.T) {
	tests := []struct {
		name     string
		version  byte
		src, dst netip.AddrPort
		wantSrc  netip.AddrPort
	}{
		{"v1 ipv4", 1, client4, lb4, client4},
		{"v2 ipv4", 2, client4, lb4, client4},
		{"v1 ipv6", 1, client6, lb6, client6},
		{"v2 ipv6", 2, client6, lb6, client6},
		{"v2 mixed", 2, client4, lb6, netip.AddrPortFrom(netip.AddrFrom16(client4.Addr().As16()), client4.Port())},
		{"v1 mixed", 1, client4, lb6, netip.AddrPortFrom(netip.AddrFrom16(client4.Addr().As16()), client4.Port())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := Append(nil, tt.version, tt.src, tt.dst)
			if n, err := Frame(append(hdr, "GET / HTTP/1.1\r\n"...)); n != len(hdr) || err != nil {
				t.Fatalf("Frame = %d, %v; want %d", n, err, len(hdr))
			}
			src, ok, err := Parse(hdr)
			if err != nil || !ok || src != tt.wantSrc {
				t.Errorf("Parse(%q) = %v %v %v, want %v", hdr, src, ok, err, tt.wantSrc)
			}
			// The library's own writer agrees byte for byte.
			lib, err := goproxy.HeaderProxyFromAddrs(tt.version, net.TCPAddrFromAddrPort(tt.src), net.TCPAddrFromAddrPort(tt.dst)).Format()
			if err == nil && tt.src.Addr().Is4() == tt.dst.Addr().Is4() && !bytes.Equal(lib, hdr) {
				t.Errorf("Append = %q, go-proxyproto writes %q", hdr, lib)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { Append(make([]byte, 0, 64), 2, client4, lb4) }); n > 1 {
		t.Errorf("Append allocates %v times beyond its buffer", n)
	}
}

func TestFrame(t *testing.T) {
	v2 := Append(nil, 2, client4, lb4)
	long := append([]byte(nil), v2...)
	long[14], long[15] = 0x10, 0x00 // 4096 bytes of body
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{"empty", "", 0, ""},
		{"v1 prefix", "PROX", 0, ""},
		{"v1 partial", "PROXY TCP4 1.2.3.4", 0, ""},
		{"v1 whole", "PROXY UNKNOWN\r\nrest", 15, ""},
		{"v1 no CRLF in 107", "PROXY " + strings.Repeat("x", 120), 0, "without CRLF in 107 bytes"},
		{"v2 partial signature", string(v2[:7]), 0, ""},
		{"v2 partial body", string(v2[:20]), 0, ""},
		{"v2 whole", string(v2) + "GET", len(v2), ""},
		{"v2 overlong", string(long), 0, "4112 bytes, more than the 528 accepted"},
		{"plain HTTP", "GET / HTTP/1.1\r\n", 0, "no header"},
		{"not quite PROXY", "PROXZ TCP4", 0, "no header"},
		{"not quite v2", "\r\n\r\nGET", 0, "no header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Frame([]byte(tt.in))
			switch {
			case tt.wantErr == "" && (err != nil || n != tt.want):
				t.Errorf("Frame = %d, %v; want %d", n, err, tt.want)
			case tt.wantErr != "" && (err == nil || !errors.Is(err, ErrBadHeader) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Frame = %d, %v; want an error saying %q", n, err, tt.wantErr)
			}
		})
	}
}

func TestParseNoClient(t *testing.T) {
	local := append(append([]byte(nil), sigV2...), 0x20, 0x00, 0, 0) // LOCAL, UNSPEC
	for _, hdr := range [][]byte{[]byte("PROXY UNKNOWN\r\n"), local} {
		if _, ok, err := Parse(hdr); ok || err != nil {
			t.Errorf("Parse(%q) = ok %v, %v; want no client and no error", hdr, ok, err)
		}
	}
	for _, hdr := range []string{"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", "PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY TCP4 1.2.3.4\r\n"} {
		if _, _, err := Parse([]byte(hdr)); !errors.Is(err, ErrBadHeader) {
			t.Errorf("Parse(%q) = %v, want ErrBadHeader", hdr, err)
		}
	}
}

func TestPeers(t *testing.T) {
	p, err := ParsePeers([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "192.0.2.7": true, "192.0.2.8": false, "2001:db8::9": true, "127.0.0.1": false} {
		if got := p.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	if _, err := ParsePeers([]string{"10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), `element 0: "10.0.0.0/33"`) {
		t.Errorf("ParsePeers(10.0.0.0/33) = %v", err)
	}
}

// A header sent a byte at a time is read whole, and the bytes after it
// stay in the socket.
func TestReadInPiecesLeavesTheRest(t *testing.T) {
	for _, version := range []byte{1, 2} {
		c, s := loopback.Pair(t)
		hdr := Append(nil, version, client4, lb4)
		go func() {
			for i := range hdr {
				c.Write(hdr[i : i+1])
				loopback.WaitAcked(c) // each byte on its own; an error shows as a bad read
			}
			c.Write([]byte("payload"))
		}()
		src, ok, err := Read(s, time.Now().Add(10*time.Second))
		if err != nil || !ok || src != client4 {
			t.Fatalf("v%d: Read = %v %v %v", version, src, ok, err)
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "payload" {
			t.Errorf("v%d: after the header, read %q, %v", version, buf, err)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	tests := []struct {
		name string
		send string
		want error
	}{
		{"plain HTTP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrBadHeader},
		{"v1 without CRLF", "PROXY TCP4 " + strings.Repeat("1", 100), ErrBadHeader},
		{"truncated", "PROXY TCP4 1.2.3.4 ", io.ErrUnexpectedEOF},
		{"slow", "PROXY TCP4 1.2", os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := loopback.Pair(t)
			c.Write([]byte(tt.send))
			if tt.want == io.ErrUnexpectedEOF {
				c.CloseWrite()
			}
			_, _, err := Read(s, time.Now().Add(200*time.Millisecond))
			if !errors.Is(err, tt.want) {
				t.Errorf("Read = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzFrameParse(f *testing.F) {
	f.Add(Append(nil, 1, client4, lb4))
	f.Add(Append(nil, 2, client6, lb6))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(append(Append(nil, 2, client4, lb4)[:14], 0xff, 0xff))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Frame(b)
		if err != nil || n == 0 {
			return
		}
		if n > MaxHeader || n > len(b) {
			t.Fatalf("Frame = %d for %d bytes", n, len(b))
		}
		src, ok, err := Parse(b[:n])
		if err == nil && ok && !src.IsValid() {
			t.Errorf("Parse(%q) gave an invalid client", b[:n])
		}
		if err == nil && ok {
			// What parses writes back to a header naming the same client.
			again, ok2, err2 := Parse(Append(nil, 2, src, lb4))
			if err2 != nil || !ok2 || again.Addr().Unmap() != src.Addr().Unmap() || again.Port() != src.Port() {
				t.Errorf("client %v written and parsed again: %v %v %v", src, again, ok2, err2)
			}
		}
	})
}

// Package proxyproto reads and writes the PROXY protocol header (versions 1
// and 2, haproxy.org/download/2.9/doc/proxy-protocol.txt) by which an
// upstream L4 balancer tells lbctl who its client is, and lbctl tells a
// backend.
//
// Headers are parsed by github.com/pires/go-proxyproto. What this package
// adds is the framing that both of lbctl's engines need and the library's
// bufio.Reader cannot give: a header is taken off a raw socket without
// consuming one byte past it (it peeks, then reads exactly the header),
// in as many pieces as it arrives in, so that whatever the client sent
// after it is still in the socket for the relay, the HTTP parser or a
// splice. The size of a header is bounded (MaxHeader); its time is the
// caller's (a deadline or a timer).
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	goproxy "github.com/pires/go-proxyproto"
)

// Limits of the headers accepted.
const (
	// MaxV1 is the longest version 1 header the specification allows,
	// CRLF included.
	MaxV1 = 107
	// MaxV2Body bounds the address block and TLVs of a version 2 header:
	// room for IPv6 addresses and the TLVs balancers send (ALPN, authority,
	// a cloud's endpoint id, SSL facts), far below the 64 KiB the length
	// field allows.
	MaxV2Body = 512
	// MaxHeader is the longest header of either version accepted.
	MaxHeader = 16 + MaxV2Body
)

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// ErrBadHeader is wrapped by every error about a header's bytes: none
// where one is required, a malformed or overlong one.
var ErrBadHeader = errors.New("bad PROXY protocol header")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadHeader}, args...)...)
}

// Frame returns the length of the header at the start of b. It returns 0
// and no error when b is the start of a header that is not complete yet,
// and an error wrapping ErrBadHeader when b cannot start a header (a
// client that sent no header) or holds one too long.
func Frame(b []byte) (int, error) {
	switch {
	case len(b) == 0:
		return 0, nil
	case b[0] == sigV1[0]:
		if n := min(len(b), len(sigV1)); !bytes.Equal(b[:n], sigV1[:n]) {
			return 0, bad("no header (the connection starts %q)", b[:n])
		}
		if i := bytes.Index(b[:min(len(b), MaxV1)], []byte("\r\n")); i >= 0 {
			return i + 2, nil
		}
		if len(b) >= MaxV1 {
			return 0, bad("version 1 without CRLF in %d bytes", MaxV1)
		}
		return 0, nil
	case b[0] == sigV2[0]:
		if n := min(len(b), len(sigV2)); !bytes.Equal(b[:n], sigV2[:n]) {
			return 0, bad("no header (the connection starts %q)", b[:n])
		}
		if len(b) < 16 {
			return 0, nil
		}
		body := int(binary.BigEndian.Uint16(b[14:16]))
		if body > MaxV2Body {
			return 0, bad("version 2 of %d bytes, more than the %d accepted", 16+body, MaxHeader)
		}
		if len(b) < 16+body {
			return 0, nil
		}
		return 16 + body, nil
	}
	return 0, bad("no header (the connection starts %q)", b[:min(len(b), 8)])
}

// Parse parses hdr, one whole header as Frame delimits it, and returns the
// client's address. ok is false for a header that names no client (a
// LOCAL command, as a balancer's health check sends, or an UNKNOWN or
// unspecified family): the connection's own peer then stands for the
// client, as the specification says.
func Parse(hdr []byte) (src netip.AddrPort, ok bool, err error) {
	br := bufio.NewReaderSize(bytes.NewReader(hdr), max(len(hdr), 16))
	h, err := goproxy.Read(br)
	if err != nil {
		return netip.AddrPort{}, false, bad("%v", err)
	}
	if br.Buffered() != 0 {
		return netip.AddrPort{}, false, bad("its length field disagrees with its content")
	}
	if h.Command.IsLocal() {
		return netip.AddrPort{}, false, nil
	}
	switch h.TransportProtocol {
	case goproxy.UNSPEC:
		return netip.AddrPort{}, false, nil
	case goproxy.TCPv4, goproxy.TCPv6:
	default:
		return netip.AddrPort{}, false, bad("transport %#x: only TCP clients are proxied", byte(h.TransportProtocol))
	}
	a, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false, bad("no TCP source address")
	}
	return a.AddrPort(), true, nil
}

// Append appends to b a header of version 1 or 2 saying that a TCP
// connection from src reached dst, as a backend that wants one expects it
// first on its connection. When one address is IPv4 and the other IPv6,
// both are written as IPv6 (the IPv4 one mapped), as the header has one
// family.
func Append(b []byte, version byte, src, dst netip.AddrPort) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	v4 := sa.Is4() && da.Is4()
	if !v4 {
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	if version == 1 {
		proto := "TCP6 "
		if v4 {
			proto = "TCP4 "
		}
		b = append(b, sigV1...)
		b = append(b, proto...)
		b = sa.AppendTo(b)
		b = append(b, ' ')
		b = da.AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(src.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(dst.Port()), 10)
		return append(b, '\r', '\n')
	}
	b = append(b, sigV2...)
	b = append(b, 0x21) // version 2, PROXY
	if v4 {
		b = append(b, 0x11, 0, 12) // TCP over IPv4, 12 bytes
		s4, d4 := sa.As4(), da.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21, 0, 36) // TCP over IPv6, 36 bytes
		s16, d16 := sa.As16(), da.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// ParseVersion returns the version that a backend's send_proxy names: 0
// for "", 1 for "v1", 2 for "v2".
func ParseVersion(s string) (byte, error) {
	switch s {
	case "":
		return 0, nil
	case "v1":
		return 1, nil
	case "v2":
		return 2, nil
	}
	return 0, fmt.Errorf("%q is not one of v1, v2 (or empty for none)", s)
}

// Peers is the set of addresses whose connections must start with a
// header: the upstream balancers. The zero value holds none.
type Peers []netip.Prefix

// ParsePeers parses CIDR prefixes ("10.0.0.0/8") and single addresses
// ("192.0.2.7", taken as a /32 or /128).
func ParsePeers(list []string) (Peers, error) {
	out := make(Peers, 0, len(list))
	for i, s := range list {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("element %d: %q is not an address or a CIDR prefix (10.0.0.0/8, 192.0.2.7, 2001:db8::/32)", i, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains reports whether a is one of the peers. IPv4-mapped IPv6
// addresses count as their IPv4 address.
func (p Peers) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, pre := range p {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

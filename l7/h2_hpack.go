package l7

// HPACK as lbctl writes it (RFC 7541). Response and trailer fields are
// written straight from the backend's bytes into the header block, each as
// a literal never added to the dynamic table (6.2.2), its name by the
// static table's index when the table has it, and :status by the static
// table's entry when there is one. The dynamic table stays empty, as
// HAProxy's and nginx's encoders leave it:
//
//   - Encoding keeps no state, so a stream writes its block on its own,
//     before it takes the connection's write lock, and nothing is searched
//     or copied into strings per field: what a table would save is a few
//     bytes per response, which cost more CPU to find than to send.
//   - Nothing a backend sends is remembered from one response to the next,
//     so no table can tell a client anything about another client's
//     answers (the compression side channel of CRIME and HPACK's own
//     7.1).
//
// A client that changes SETTINGS_HEADER_TABLE_SIZE is owed a dynamic table
// size update at the start of the next block (4.2): every block is built
// with room for one byte before it, which writeHeadersLocked uses for
// h2SizeUpdate when it is owed.

// h2SizeUpdate is a dynamic table size update to 0 (RFC 7541 6.3): no
// table, which every limit a client may set allows.
const h2SizeUpdate = 0x20

// appendHpackInt appends v as an HPACK integer with an n-bit prefix, the
// bits above it in first (RFC 7541 5.1).
func appendHpackInt(dst []byte, first byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(dst, first|byte(v))
	}
	dst = append(dst, first|byte(max))
	for v -= max; v >= 0x80; v >>= 7 {
		dst = append(dst, byte(v)|0x80)
	}
	return append(dst, byte(v))
}

// appendHpackString appends s as an HPACK string literal, without Huffman
// coding (RFC 7541 5.2).
func appendHpackString(dst, s []byte) []byte {
	dst = appendHpackInt(dst, 0, 7, uint64(len(s)))
	return append(dst, s...)
}

// appendH2Status appends the :status field of status, a three-digit code.
func appendH2Status(dst []byte, status int) []byte {
	// The static table's :status entries (RFC 7541 Appendix A).
	switch status {
	case 200:
		return append(dst, 0x80|8)
	case 204:
		return append(dst, 0x80|9)
	case 206:
		return append(dst, 0x80|10)
	case 304:
		return append(dst, 0x80|11)
	case 400:
		return append(dst, 0x80|12)
	case 404:
		return append(dst, 0x80|13)
	case 500:
		return append(dst, 0x80|14)
	}
	// status has three digits: parseResponseHead takes 100 to 599, and
	// lbctl's own answers are among them.
	var digits [3]byte
	digits[0], digits[1], digits[2] = byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10)
	return appendHpackString(append(dst, 8), digits[:]) // a literal named by :status's index
}

// appendH2Field appends the field name: value, its name lower-cased as
// HTTP/2 wants it, as a literal not indexed (RFC 7541 6.2.2).
func appendH2Field(dst, name, value []byte) []byte {
	var buf [32]byte // longer than every name in the static table
	if len(name) <= len(buf) {
		if i := h2StaticName(appendLower(buf[:0], name)); i > 0 {
			return appendHpackString(appendHpackInt(dst, 0, 4, uint64(i)), value)
		}
	}
	dst = appendHpackInt(append(dst, 0), 0, 7, uint64(len(name)))
	return appendHpackString(appendLower(dst, name), value)
}

// appendLower appends b with its ASCII letters lower-cased.
func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendH2FieldString is appendH2Field for fields lbctl writes itself.
func appendH2FieldString(dst []byte, name, value string) []byte {
	return appendH2Field(dst, bytesOf(name), bytesOf(value))
}

// h2StaticName returns the index of the static table's first entry named
// name (lower-case), or 0 when it has none (RFC 7541 Appendix A).
func h2StaticName(name []byte) uint8 {
	switch string(name) {
	case ":authority":
		return 1
	case ":method":
		return 2
	case ":path":
		return 4
	case ":scheme":
		return 6
	case ":status":
		return 8
	case "accept-charset":
		return 15
	case "accept-encoding":
		return 16
	case "accept-language":
		return 17
	case "accept-ranges":
		return 18
	case "accept":
		return 19
	case "access-control-allow-origin":
		return 20
	case "age":
		return 21
	case "allow":
		return 22
	case "authorization":
		return 23
	case "cache-control":
		return 24
	case "content-disposition":
		return 25
	case "content-encoding":
		return 26
	case "content-language":
		return 27
	case "content-length":
		return 28
	case "content-location":
		return 29
	case "content-range":
		return 30
	case "content-type":
		return 31
	case "cookie":
		return 32
	case "date":
		return 33
	case "etag":
		return 34
	case "expect":
		return 35
	case "expires":
		return 36
	case "from":
		return 37
	case "host":
		return 38
	case "if-match":
		return 39
	case "if-modified-since":
		return 40
	case "if-none-match":
		return 41
	case "if-range":
		return 42
	case "if-unmodified-since":
		return 43
	case "last-modified":
		return 44
	case "link":
		return 45
	case "location":
		return 46
	case "max-forwards":
		return 47
	case "proxy-authenticate":
		return 48
	case "proxy-authorization":
		return 49
	case "range":
		return 50
	case "referer":
		return 51
	case "refresh":
		return 52
	case "retry-after":
		return 53
	case "server":
		return 54
	case "set-cookie":
		return 55
	case "strict-transport-security":
		return 56
	case "transfer-encoding":
		return 57
	case "user-agent":
		return 58
	case "vary":
		return 59
	case "via":
		return 60
	case "www-authenticate":
		return 61
	}
	return 0
}

package affinity

import (
	"encoding/binary"
	"net/netip"
)

// Key identifies a client in the table: its source address with the host
// bits beyond the configured prefix cleared. IPv4 addresses (including
// IPv4-mapped IPv6 ones) are kept in their 4-in-6 form so that they never
// collide with a native IPv6 key.
type Key struct{ hi, lo uint64 }

// v4Mapped is the upper half of ::ffff:0:0/96, the IPv4-mapped IPv6 prefix.
const v4MappedHi, v4MappedLo = 0, 0xffff << 32

// KeyOf masks addr to v4prefix bits (IPv4) or v6prefix bits (IPv6) and returns
// its key. Prefixes outside 0..32 and 0..128 are clamped. The zone of an IPv6
// address is ignored.
func KeyOf(addr netip.Addr, v4prefix, v6prefix int) Key {
	addr = addr.Unmap()
	if addr.Is4() {
		a := addr.As4()
		v := binary.BigEndian.Uint32(a[:])
		bits := min(max(v4prefix, 0), 32)
		if bits < 32 {
			v &^= uint32(1<<(32-bits)) - 1
		}
		return Key{hi: v4MappedHi, lo: v4MappedLo | uint64(v)}
	}
	a := addr.As16()
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	bits := min(max(v6prefix, 0), 128)
	switch {
	case bits <= 64:
		lo = 0
		if bits < 64 {
			hi &^= uint64(1)<<(64-bits) - 1
		}
	case bits < 128:
		lo &^= uint64(1)<<(128-bits) - 1
	}
	return Key{hi: hi, lo: lo}
}

// Addr returns the masked address the key stands for, for logs and reports.
func (k Key) Addr() netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], k.hi)
	binary.BigEndian.PutUint64(a[8:], k.lo)
	return netip.AddrFrom16(a).Unmap()
}

// String returns the masked address in its usual notation.
func (k Key) String() string { return k.Addr().String() }

// hash mixes both halves into a well spread 64-bit value for shard choice.
func (k Key) hash() uint64 {
	h := (k.hi ^ k.lo*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return h ^ h>>31
}

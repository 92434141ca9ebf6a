package natview

import (
	"math"
	"math/bits"
)

// HyperLogLog parameters: 2^hllPrecision one-byte registers give a
// standard error of 1.04/sqrt(2048), about 2.3%, in 2 KiB per sketch
// however many items it counts.
const (
	hllPrecision = 11
	hllRegisters = 1 << hllPrecision
)

// HLLStdError is the relative standard error of an HLL estimate; a count
// lies within three of them of the truth 99.7% of the time.
var HLLStdError = 1.04 / math.Sqrt(hllRegisters)

// HLL counts distinct items in fixed memory (Flajolet et al. 2007). Items
// are given as uniformly distributed 64-bit hashes. The zero value is an
// empty sketch. It is not safe for concurrent use: the tracker keeps it
// under its shard's lock.
type HLL struct {
	regs [hllRegisters]uint8
}

// Add counts the item whose hash is h.
func (s *HLL) Add(h uint64) {
	idx := h >> (64 - hllPrecision)
	rank := uint8(bits.LeadingZeros64(h<<hllPrecision|1<<(hllPrecision-1))) + 1
	if s.regs[idx] < rank {
		s.regs[idx] = rank
	}
}

// Merge makes s count every item that o counts too.
func (s *HLL) Merge(o *HLL) {
	for i, r := range o.regs {
		if r > s.regs[i] {
			s.regs[i] = r
		}
	}
}

// Clear empties the sketch.
func (s *HLL) Clear() { clear(s.regs[:]) }

// Estimate returns the estimated number of distinct items added: the
// HyperLogLog estimate, with linear counting over the empty registers for
// small counts, where it is the more accurate.
func (s *HLL) Estimate() int {
	const m = float64(hllRegisters)
	sum, zeros := 0.0, 0
	for _, r := range s.regs {
		sum += inversePowers[r&63]
		if r == 0 {
			zeros++
		}
	}
	if zeros == hllRegisters {
		return 0
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(math.Round(e))
}

// inversePowers[r] is 2^-r, for every rank a register can hold.
var inversePowers = func() (t [64]float64) {
	for r := range t {
		t[r] = math.Ldexp(1, -r)
	}
	return t
}()

// mix is the splitmix64 finalizer: it spreads any 64-bit value over all
// bits, so that hashes of neighbouring ports are independent.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

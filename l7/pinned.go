package l7

import (
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// Pinned returns about how many distinct clients the backend named id
// kept through their cookie recently: the client addresses whose requests
// arrived with a cookie naming it, and stayed there, in the current minute
// and the one before (so a client is counted for one to two minutes after
// its last such request). A draining backend whose count has fallen to 0
// has had no pinned client for at least a minute.
//
// Clients are told apart by their address as lbctl sees it: the cookie
// itself names the backend, the same for every browser pinned there, and
// the address stays the same across a browser's connections. Browsers
// behind one NAT or proxy count as one; the count is 0 only when none of
// them came. It is an estimate within a few percent (see pinCount), and 0
// for an unknown id.
func (p *Proxy) Pinned(id string) int {
	p.setup()
	st := p.current()
	b := st.reg.Get(id)
	if b == nil {
		return 0
	}
	return st.pins[b].count(pinMinute(time.Now()))
}

// pinCount returns b's count of pinned clients in st, or a new one when
// b is not in st (or st is nil): a backend that a reload keeps keeps its
// count.
func (st *poolState) pinCount(b *backend.Backend) *pinCount {
	if c := st.pinsOf(b); c != nil {
		return c
	}
	return new(pinCount)
}

func (st *poolState) pinsOf(b *backend.Backend) *pinCount {
	if st == nil {
		return nil
	}
	return st.pins[b]
}

// pinSeed keys the hash of client addresses; a fresh one per process
// keeps clients from choosing where they land in the sketch.
var pinSeed = maphash.MakeSeed()

// pinClientKey is the hash a client connection from addr is counted by.
func pinClientKey(addr []byte) uint64 { return maphash.Bytes(pinSeed, addr) }

// pinMinute is the window that now falls in.
func pinMinute(now time.Time) int64 { return now.Unix() / 60 }

// Sketch parameters: 2^pinPrecision one-byte registers per minute, packed
// four to a word, give a standard error of 1.04/sqrt(4096), about 1.6%,
// in 4 KiB per minute and 8 KiB per backend, however many clients come.
const (
	pinPrecision = 12
	pinRegisters = 1 << pinPrecision
	pinClearing  = -1 // pinSketch.minute while its registers are cleared
)

// pinCount counts distinct client keys over two rotating one-minute
// windows, in fixed memory and without a lock: each window is a
// HyperLogLog sketch. A key goes into the current minute's sketch; a count
// merges it with the previous minute's. The first key of a new minute
// takes the sketch of two minutes ago, clears it and starts on it.
//
// add allocates nothing, and once a key's register holds its rank it only
// reads (a client's later requests write nothing shared).
type pinCount struct {
	windows [2]pinSketch
}

type pinSketch struct {
	minute atomic.Int64 // the minute counted; pinClearing while cleared
	regs   [pinRegisters / 4]atomic.Uint32
}

// add counts key, a uniformly distributed hash, in minute. A key that
// arrives while its window is being cleared for the new minute is not
// counted: the same client's next request is.
func (c *pinCount) add(key uint64, minute int64) {
	w := &c.windows[minute&1]
	if m := w.minute.Load(); m != minute {
		if m > minute || m == pinClearing || !w.minute.CompareAndSwap(m, pinClearing) {
			return
		}
		for i := range w.regs {
			w.regs[i].Store(0)
		}
		w.minute.Store(minute)
	}
	idx := key >> (64 - pinPrecision)
	rank := uint32(bits.LeadingZeros64(key<<pinPrecision|1<<(pinPrecision-1))) + 1
	word, shift := &w.regs[idx/4], (idx%4)*8
	for {
		old := word.Load()
		if old>>shift&0xff >= rank {
			return
		}
		if word.CompareAndSwap(old, old&^(0xff<<shift)|rank<<shift) {
			return
		}
	}
}

// count estimates the distinct keys added in minute and the minute before.
func (c *pinCount) count(minute int64) int {
	if c == nil {
		return 0
	}
	var merged [pinRegisters]uint8
	for i := range c.windows {
		w := &c.windows[i]
		m := w.minute.Load()
		if m != minute && m != minute-1 {
			continue
		}
		for j := range w.regs {
			v := w.regs[j].Load()
			for k := range 4 {
				merged[j*4+k] = max(merged[j*4+k], uint8(v>>(k*8)))
			}
		}
	}
	return hllEstimate(&merged)
}

// hllEstimate is the HyperLogLog estimate of the registers (Flajolet et
// al. 2007), with linear counting over the empty registers for small
// counts, where it is the more accurate.
func hllEstimate(regs *[pinRegisters]uint8) int {
	const m = float64(pinRegisters)
	sum, zeros := 0.0, 0
	for _, r := range regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(math.Round(e))
}

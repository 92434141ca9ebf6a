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
// them came. Up to 128 clients a minute the count is exact; beyond, it is
// an estimate within a few percent (see pinCount). It is 0 for an
// unknown id.
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
// in 4 KiB per minute.
//
// Beside them, each window keeps its first keys themselves in a small
// open-addressed set of pinExact slots (1 KiB): a count over them is
// exact, where the sketch's registers would merge two clients whose hashes
// share a register (with 30 clients that happens about one time in ten).
// A key that finds no free slot marks the window full, and from then on
// its count is the sketch's: the count is exact while no more than
// pinExact clients came in either minute. A backend's two windows take
// 10 KiB however many clients come.
const (
	pinPrecision = 12
	pinRegisters = 1 << pinPrecision
	pinClearing  = -1 // pinSketch.minute while its registers are cleared
	pinExact     = 128
)

// pinCount counts distinct client keys over two rotating one-minute
// windows, in fixed memory and without a lock: each window is a
// HyperLogLog sketch. A key goes into the current minute's sketch; a count
// merges it with the previous minute's. The first key of a new minute
// takes the sketch of two minutes ago, clears it and starts on it.
//
// add allocates nothing, and once a key is in the window's set and its
// register holds its rank it only reads (a client's later requests write
// nothing shared).
type pinCount struct {
	windows [2]pinSketch
}

type pinSketch struct {
	minute atomic.Int64 // the minute counted; pinClearing while cleared
	full   atomic.Bool  // keys did not all fit in exact: count with regs
	exact  [pinExact]atomic.Uint64
	regs   [pinRegisters / 4]atomic.Uint32
}

// exactKey is key as the exact set stores it: 0 marks a free slot.
func exactKey(key uint64) uint64 { return max(key, 1) }

// remember puts key in the exact set, or marks the window full when it
// has no free slot. It places keys by their low bits (the sketch uses the
// high ones) and probes linearly from there.
func (w *pinSketch) remember(key uint64) {
	k := exactKey(key)
	for i := range pinExact {
		slot := &w.exact[(k+uint64(i))%pinExact]
		v := slot.Load()
		if v == k || v == 0 && (slot.CompareAndSwap(0, k) || slot.Load() == k) {
			return
		}
	}
	w.full.Store(true)
}

// holds reports whether key is in the exact set.
func (w *pinSketch) holds(key uint64) bool {
	k := exactKey(key)
	for i := range pinExact {
		switch w.exact[(k+uint64(i))%pinExact].Load() {
		case k:
			return true
		case 0:
			return false
		}
	}
	return false
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
		for i := range w.exact {
			w.exact[i].Store(0)
		}
		w.full.Store(false)
		w.minute.Store(minute)
	}
	if !w.full.Load() {
		w.remember(key)
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

// count estimates the distinct keys added in minute and the minute before:
// exactly while neither window is full, else from the merged sketches.
func (c *pinCount) count(minute int64) int {
	if c == nil {
		return 0
	}
	var live []*pinSketch
	for i := range c.windows {
		w := &c.windows[i]
		if m := w.minute.Load(); m == minute || m == minute-1 {
			live = append(live, w)
		}
	}
	if n, ok := exactCount(live); ok {
		return n
	}
	var merged [pinRegisters]uint8
	for _, w := range live {
		for j := range w.regs {
			v := w.regs[j].Load()
			for k := range 4 {
				merged[j*4+k] = max(merged[j*4+k], uint8(v>>(k*8)))
			}
		}
	}
	return hllEstimate(&merged)
}

// exactCount counts the distinct keys in the exact sets of windows (one or
// two), or reports false when one of them is full.
func exactCount(windows []*pinSketch) (int, bool) {
	n := 0
	for i, w := range windows {
		if w.full.Load() {
			return 0, false
		}
		for j := range w.exact {
			k := w.exact[j].Load()
			if k != 0 && (i == 0 || !windows[0].holds(k)) {
				n++
			}
		}
	}
	return n, true
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

// Package natview counts, in bounded memory, which client keys carry many
// users: the heavy sources behind the stats page's NAT view. The sketches
// (a windowed Space-Saving top-k with a HyperLogLog per heavy key) live
// here with the counting they serve, so that l4, l7 and the instance
// share one implementation.
//
// A Tracker sees one event per new persistence session (L7: a request
// that lbctl answered with a new cookie) or per accepted connection (L4),
// and keeps, for the busiest keys only, how many events they sent in the
// window, how many distinct sessions (L7: client address and port of the
// connection that got the cookie; L4: source ports) those were, and (L4)
// how many connections are open now. It never holds a map of every client.
package natview

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/affinity"
)

// Sketch dimensions. Keys are spread over shards by hash, each shard with
// its own lock and its own Space-Saving summary of shardSlots keys, so
// that events of different keys rarely wait on each other. Memory is
// fixed: shards*shardSlots*2 HLLs of 2 KiB, about 1 MiB, allocated at the
// first event.
const (
	shards     = 8
	shardSlots = 32
	// Capacity is the number of keys a Tracker follows at once.
	Capacity = shards * shardSlots
)

// Epoch is the length of one counting period. The window a view covers is
// the current epoch and the one before: between one and two epochs.
const Epoch = time.Minute

// Tracker counts events per client key. Its zero value is ready to use
// and counts L4 keys as given; Session masks addresses with V4Prefix and
// V6Prefix first. A nil *Tracker counts nothing, so a proxy without one
// pays a nil check. Its methods are safe for concurrent use, allocate
// nothing once the first event has allocated the sketches, and take only
// the lock of the key's shard.
type Tracker struct {
	// V4Prefix and V6Prefix mask source addresses into keys, as the
	// affinity table does ([affinity] ipv4_prefix, ipv6_prefix). Zero
	// values mean 32 and 128: each address is its own key.
	V4Prefix, V6Prefix int
	// Now is the clock; nil means time.Now. Tests inject theirs.
	Now func() time.Time

	started atomic.Int64 // unix nanoseconds of the first event, 0 before
	seq     atomic.Uint64
	shards  atomic.Pointer[[shards]shard]
}

// shard is one lock's worth of the sketch.
type shard struct {
	mu    sync.Mutex
	epoch int64 // the epoch index counts fall in; see rotate
	slots [shardSlots]slot
	// all counts every distinct session of the shard's events, tracked
	// key or not, per epoch (index epoch&1): the total.
	all    [2]HLL
	events [2]uint64
	_      [64]byte // keeps neighbouring shards' locks off one cache line
}

// slot is one followed key of a shard's Space-Saving summary. Counts are
// kept per epoch (index epoch&1) so that the older one can be dropped.
type slot struct {
	key    affinity.Key
	used   bool
	count  [2]uint64 // events, including inherited ones (err)
	err    [2]uint64 // of count, what the key inherited when it took the slot
	active int64     // connections open now (L4), counted since the key took the slot
	first  uint64    // order in which keys took their slots, for the skew estimate
	seen   [2]HLL    // distinct sessions
}

func (s *slot) windowCount() uint64 { return s.count[0] + s.count[1] }

var seed = maphash.MakeSeed()

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func epochOf(now time.Time) int64 { return now.UnixNano() / int64(Epoch) }

// state returns the shards, allocating them at the first call.
func (t *Tracker) state() *[shards]shard {
	if sh := t.shards.Load(); sh != nil {
		return sh
	}
	t.started.CompareAndSwap(0, t.now().UnixNano())
	t.shards.CompareAndSwap(nil, new([shards]shard))
	return t.shards.Load()
}

// keyHash returns the hash a key is sharded by.
func keyHash(k affinity.Key) uint64 {
	a := k.Addr().As16()
	return maphash.Bytes(seed, a[:])
}

// sessionHash returns the hash a session (full source address and port)
// is counted by.
func sessionHash(addr netip.Addr, port uint16) uint64 {
	var b [18]byte
	a := addr.As16()
	copy(b[:], a[:])
	binary.BigEndian.PutUint16(b[16:], port)
	return maphash.Bytes(seed, b[:])
}

// Session counts a new persistence session from src: lbctl issued a
// cookie to a request that came without a usable one, on the connection
// from src. Connections are told apart by address and port, so a session
// is counted once however many requests of its connection go without a
// cookie.
func (t *Tracker) Session(src netip.AddrPort) {
	if t == nil {
		return
	}
	addr := src.Addr().Unmap()
	v4, v6 := t.V4Prefix, t.V6Prefix
	if v4 == 0 {
		v4 = 32
	}
	if v6 == 0 {
		v6 = 128
	}
	t.event(affinity.KeyOf(addr, v4, v6), sessionHash(addr, src.Port()), 0)
}

// Opened counts a connection accepted from key's client at source port
// port, open until Closed(key).
func (t *Tracker) Opened(key affinity.Key, port uint16) {
	if t == nil {
		return
	}
	t.event(key, mix(keyHash(key)^uint64(port)), 1)
}

// Closed counts the end of a connection that Opened counted.
func (t *Tracker) Closed(key affinity.Key) {
	if t == nil {
		return
	}
	sh := &t.state()[keyHash(key)%shards]
	now := epochOf(t.now())
	sh.mu.Lock()
	sh.rotate(now)
	if s := sh.find(key); s != nil && s.active > 0 {
		s.active--
	}
	sh.mu.Unlock()
}

// event counts one event of key whose session hashes to h; opened is 1
// for an accepted connection.
func (t *Tracker) event(key affinity.Key, h uint64, opened int64) {
	sh := &t.state()[keyHash(key)%shards]
	now := epochOf(t.now())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.rotate(now)
	cur := now & 1
	sh.all[cur].Add(h)
	sh.events[cur]++
	s := sh.find(key)
	if s == nil {
		s = sh.take(key, cur, t.seq.Add(1))
	}
	s.count[cur]++
	s.active += opened
	s.seen[cur].Add(h)
}

// find returns key's slot, or nil when the shard does not follow it.
func (sh *shard) find(key affinity.Key) *slot {
	for i := range sh.slots {
		if s := &sh.slots[i]; s.used && s.key == key {
			return s
		}
	}
	return nil
}

// take gives key a slot: a free one, or the one with the fewest events in
// the window (Space-Saving), whose count key inherits as its error. A slot
// whose key still has connections open goes last.
func (sh *shard) take(key affinity.Key, cur int64, first uint64) *slot {
	var victim *slot
	for i := range sh.slots {
		s := &sh.slots[i]
		if !s.used {
			victim = s
			break
		}
		if victim == nil || less(s, victim) {
			victim = s
		}
	}
	inherited := uint64(0)
	if victim.used {
		inherited = victim.windowCount()
	}
	victim.key, victim.used, victim.active, victim.first = key, true, 0, first
	victim.count = [2]uint64{}
	victim.err = [2]uint64{}
	victim.count[cur], victim.err[cur] = inherited, inherited
	victim.seen[0].Clear()
	victim.seen[1].Clear()
	return victim
}

// less orders slots for eviction: idle before busy, then by fewer events.
func less(a, b *slot) bool {
	if (a.active > 0) != (b.active > 0) {
		return a.active == 0
	}
	return a.windowCount() < b.windowCount()
}

// rotate moves the shard to epoch now: the epoch two back is dropped (its
// counts and sketches cleared to serve the new one), and a key with no
// event left in the window and no open connection frees its slot.
func (sh *shard) rotate(now int64) {
	if now <= sh.epoch {
		return
	}
	gap := now - sh.epoch
	sh.epoch = now
	for e := range min(gap, 2) {
		i := (now - e) & 1
		sh.all[i].Clear()
		sh.events[i] = 0
		for j := range sh.slots {
			s := &sh.slots[j]
			if !s.used {
				continue
			}
			s.count[i], s.err[i] = 0, 0
			s.seen[i].Clear()
		}
	}
	for j := range sh.slots {
		if s := &sh.slots[j]; s.used && s.windowCount() == 0 && s.active == 0 {
			s.used = false
		}
	}
}

// Package affinity owns the source-address affinity of L4 mode: the Table
// from client Key to the id of the backend the client is pinned to, bounded
// by capacity (least recently used entries are evicted) and by a sliding TTL
// (every hit renews it); the snapshot format that carries the pins across a
// restart (Save and Load); and the operator's view of the pins (Get,
// Forget, Range), which the admin API reaches through the instance. Like
// backend and config, it imports no other lbctl package.
//
// The table is sharded so that lookups from many connections do not queue on
// one lock, and expiry is done by the table's own sweeper in small batches so
// that a burst of entries expiring together never holds a shard for long.
package affinity

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used for zero Options fields.
const (
	DefaultTTL      = time.Hour
	DefaultCapacity = 65536
)

// Sharding and sweeping parameters.
const (
	maxShards     = 256  // upper bound on shards; a power of two
	minPerShard   = 1024 // small tables keep one exact LRU
	sweepBatch    = 64   // expired entries removed per lock hold
	sweepBudget   = 256  // expired entries removed per sweep round
	minSweepEvery = 10 * time.Millisecond
	maxSweepEvery = 100 * time.Millisecond
)

// Options configures a Table. The zero value is usable: a one hour TTL, 65536
// entries, and keys on whole addresses.
type Options struct {
	// TTL is how long an entry lives after its last use. Zero means
	// DefaultTTL.
	TTL time.Duration
	// Capacity bounds the number of entries; past it the least recently
	// used entry of the key's shard is evicted. Zero means DefaultCapacity.
	Capacity int
	// IPv4Prefix and IPv6Prefix are the number of leading address bits that
	// form a key. Zero means the whole address (32 and 128).
	IPv4Prefix, IPv6Prefix int
}

// Stats counts what the table has done since it was created.
type Stats struct {
	Hits        uint64 // lookups that found a live entry
	Misses      uint64 // lookups that found none (including expired ones)
	Repins      uint64 // pins that moved a live key to another backend
	Evictions   uint64 // entries dropped to stay within capacity
	Expirations uint64 // entries dropped because their TTL ran out
	Size        int    // entries held now, live or awaiting the sweeper
}

// Table maps client keys to backend ids. It is safe for concurrent use.
// Create it with New and stop its sweeper with Close. SetTTL and
// SetCapacity change its bounds while it serves.
type Table struct {
	// ttl, slack and cutoff decide which pins are live: see horizon.
	ttl    atomic.Int64 // nanoseconds
	slack  atomic.Int64 // a hit renews a pin only when its use is older than this
	cutoff atomic.Int64 // pins last used at or before this instant are dead
	v4, v6 int
	mask   uint64
	limit  atomic.Int64 // capacity over all shards
	size   atomic.Int64 // entries over all shards
	shards []shard

	// outbox, when set, receives every pin made or moved locally, for
	// replication to other instances (see Publish).
	outbox atomic.Pointer[Outbox]

	// resizing serializes SetTTL and SetCapacity.
	resizing sync.Mutex
	// retime tells the sweeper that the TTL changed, so that its period
	// follows.
	retime  chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// pin is the value stored per key. It holds when the pin was last used,
// not when it expires, so that a new TTL applies to every pin at once, and
// the stamp that orders it against pins of the same key made elsewhere
// (see Merge).
type pin struct {
	id    string
	used  int64 // unix nanoseconds
	stamp int64 // when the key was pointed at id; 0 for a pin restored from a version 1 snapshot
}

// shard is one independently locked part of the table.
type shard struct {
	// mu guards items, recency and the counters below.
	mu          sync.Mutex
	items       map[Key]*entry
	recency     entry // sentinel of the recency list (see lru.go)
	hits        uint64
	misses      uint64
	repins      uint64
	evictions   uint64
	expirations uint64
	_           [64]byte // keep neighbouring shards off one cache line
}

// New returns a table configured by opts and starts its sweeper.
func New(opts Options) *Table {
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	capacity := opts.Capacity
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	v4, v6 := opts.IPv4Prefix, opts.IPv6Prefix
	if v4 <= 0 {
		v4 = 32
	}
	if v6 <= 0 {
		v6 = 128
	}
	n := 1
	for n < maxShards && capacity/(n*2) >= minPerShard {
		n *= 2
	}
	t := &Table{
		v4:     v4,
		v6:     v6,
		mask:   uint64(n - 1),
		shards: make([]shard, n),
		retime: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	t.ttl.Store(int64(ttl))
	t.slack.Store(int64(ttl) / 128)
	t.cutoff.Store(math.MinInt64)
	t.limit.Store(int64(capacity))
	for i := range t.shards {
		// Shards are unbounded: capacity is enforced over the whole table
		// in Pin, since hashing never fills shards evenly.
		t.shards[i].init()
	}
	go t.sweep()
	return t
}

// sweepEvery is the sweeper's period for ttl: often enough that expired
// pins do not linger long past a short TTL, never more than needed.
func sweepEvery(ttl time.Duration) time.Duration {
	return min(max(ttl/64, minSweepEvery), maxSweepEvery)
}

// horizon returns the last instant of use that is dead at now: a pin is
// live while its last use is after it. It is now minus the TTL, unless a
// longer TTL has been set since pins expired under the shorter one
// (cutoff), which must not bring those back to life. Pins are live in
// order of last use, so the recency list is also in expiry order, which
// the sweeper and eviction rely on.
func (t *Table) horizon(now int64) int64 {
	return max(now-t.ttl.Load(), t.cutoff.Load())
}

// expires returns when a pin last used at used expires unless used again.
func (t *Table) expires(used int64) time.Time {
	return time.Unix(0, used+t.ttl.Load())
}

// TTL returns the time a pin lives after its last use.
func (t *Table) TTL() time.Duration { return time.Duration(t.ttl.Load()) }

// Capacity returns the bound on the number of pins.
func (t *Table) Capacity() int { return int(t.limit.Load()) }

// SetTTL changes how long a pin lives after its last use, for every pin at
// once: with a shorter TTL, pins idle for longer than it are expired now
// (the sweeper removes them in its usual small batches, and lookups already
// miss them); with a longer one, live pins live longer, but a pin that had
// expired under the old TTL stays expired, whether or not the sweeper had
// removed it yet. The sweeper's period follows the new TTL. Zero or
// negative means DefaultTTL.
func (t *Table) SetTTL(d time.Duration) {
	if d <= 0 {
		d = DefaultTTL
	}
	t.resizing.Lock()
	defer t.resizing.Unlock()
	old := t.ttl.Load()
	if int64(d) == old {
		return
	}
	if int64(d) > old {
		// Pins dead under the old TTL (last used at or before now-old)
		// must stay dead under the longer one.
		t.cutoff.Store(max(t.cutoff.Load(), time.Now().UnixNano()-old))
	}
	t.slack.Store(int64(d) / 128)
	t.ttl.Store(int64(d))
	select {
	case t.retime <- struct{}{}:
	default: // the sweeper has yet to see an earlier change; it reads the latest
	}
}

// SetCapacity changes the bound on the number of pins. When the table holds
// more than n, the least recently used pins are evicted down to n and
// counted as evictions (pins already expired go as expirations). This is
// done shard by shard, at most sweepBatch pins per lock hold, each shard
// keeping the most recently used of its pins in proportion to its size, so
// that no lookup waits long and the pins that go are among the oldest of
// the whole table (exactly the oldest with a single shard). The number of
// shards is fixed when the table is created. Zero or negative means
// DefaultCapacity.
func (t *Table) SetCapacity(n int) {
	if n <= 0 {
		n = DefaultCapacity
	}
	t.resizing.Lock()
	defer t.resizing.Unlock()
	limit := int64(n)
	t.limit.Store(limit)
	// Pins that arrive meanwhile evict on their own once the limit is
	// stored; a pass falls short of the limit only by rounding or by them.
	for total := t.size.Load(); total > limit; total = t.size.Load() {
		evicted := 0
		for i := range t.shards {
			s := &t.shards[i]
			share := -1 // set by the first shrink of the pass
			for {
				removed, more := s.shrink(t, limit, total, &share)
				evicted += removed
				if !more {
					break
				}
			}
		}
		if evicted == 0 {
			return
		}
	}
}

// Key returns the key for a client address, masked to the table's prefixes.
func (t *Table) Key(addr netip.Addr) Key { return KeyOf(addr, t.v4, t.v6) }

func (t *Table) shard(k Key) *shard { return &t.shards[k.hash()&t.mask] }

// Lookup returns the backend id pinned to k. A hit renews the entry's TTL and
// makes it the most recently used.
//
// Renewal rewrites the entry and moves it in the LRU list, which touches two
// neighbours in memory; it is skipped while the TTL is still almost whole
// (within ttl/128), which keeps hot keys on a read-only path. Recency is
// therefore tracked to that granularity, and LRU order stays exactly expiry
// order, which the sweeper relies on.
func (t *Table) Lookup(k Key) (id string, ok bool) {
	now := time.Now().UnixNano()
	horizon := t.horizon(now)
	s := t.shard(k)
	s.mu.Lock()
	e, ok := s.items[k]
	switch {
	case !ok:
		s.misses++
	case e.used <= horizon:
		s.remove(e)
		t.size.Add(-1)
		s.expirations++
		s.misses++
		ok = false
	default:
		if now-e.used > t.slack.Load() {
			e.used = now
			s.touch(e)
		}
		s.hits++
		id = e.id
	}
	s.mu.Unlock()
	return id, ok
}

// PinIf points k at backend id unless another connection got there first:
// it pins when k has no live entry or its entry is still old (the id the
// caller saw, "" for none), and returns the id k is pinned to afterwards.
// When that is not id, the caller lost a race with another connection of
// the same client and should follow the returned pin, so that clients that
// arrive together, or fail over together, all land on one backend. Moving a
// live entry from old to another backend counts as a re-pin.
//
// When a new key takes the table past its capacity, the least recently used
// entry of the key's shard is evicted. Keys hash evenly over shards, so that
// entry is among the oldest of the whole table; with a single shard (tables
// below 2048 entries) it is exactly the oldest.
func (t *Table) PinIf(k Key, old, id string) (current string) {
	now := time.Now().UnixNano()
	horizon := t.horizon(now)
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, existed := s.items[k]
	live := existed && e.used > horizon
	switch {
	case live && e.id != old:
		return e.id
	case existed && !live:
		s.expirations++
	case live && e.id != id:
		s.repins++
	}
	if existed {
		stamp := e.stamp
		if !live || e.id != id {
			stamp = nextStamp(now, e.stamp)
			t.publish(k, id, stamp, now)
		}
		e.pin = pin{id: id, used: now, stamp: stamp}
		s.touch(e)
		return id
	}
	s.insert(k, pin{id: id, used: now, stamp: now})
	t.publish(k, id, now, now)
	if t.size.Add(1) > t.limit.Load() && len(s.items) > 1 {
		// The oldest entry may already have expired, waiting for the
		// sweeper; then it goes as an expiration, not an eviction.
		s.dropOldest(horizon)
		t.size.Add(-1)
	}
	return id
}

// Stats returns the table's counters summed over its shards.
func (t *Table) Stats() Stats {
	var st Stats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Repins += s.repins
		st.Evictions += s.evictions
		st.Expirations += s.expirations
		st.Size += len(s.items)
		s.mu.Unlock()
	}
	return st
}

// Close stops the sweeper and waits for it to exit. Lookups and pins keep
// working afterwards, with expired entries dropped lazily. Close is
// idempotent.
func (t *Table) Close() {
	t.closing.Do(func() { close(t.stop) })
	<-t.done
}

// sweep drops expired entries every interval until Close.
//
// Each round removes at most sweepBudget entries, resuming at the shard
// where the last round stopped. A burst of pins that expire together is
// therefore cleared over several rounds instead of keeping this goroutine
// inside one shard lock after another: on a small machine the kernel may
// take its CPU away for a whole scheduling tick, and a lookup that needs the
// shard it holds would wait that long. Expired entries still in the table
// are already misses, so clearing them later only delays the memory.
func (t *Table) sweep() {
	defer close(t.done)
	tick := time.NewTicker(sweepEvery(t.TTL()))
	defer tick.Stop()
	next := 0 // the shard the next round starts with
	for {
		select {
		case <-t.stop:
			return
		case <-t.retime:
			tick.Reset(sweepEvery(t.TTL()))
		case <-tick.C:
			budget := sweepBudget
			for range t.shards {
				budget -= t.shards[next].expire(t.horizon(time.Now().UnixNano()), &t.size, min(budget, sweepBatch))
				if budget <= 0 {
					break
				}
				next = (next + 1) % len(t.shards)
			}
		}
	}
}

// expire removes up to max of the shard's expired entries (last used at or
// before horizon), oldest first, in one lock hold, and returns how many it
// removed. Every TTL renewal moves its entry to the front of the LRU list,
// so the list is in expiry order and the sweep stops at the first live
// entry.
func (s *shard) expire(horizon int64, size *atomic.Int64, max int) (removed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; removed < max; removed++ {
		e := s.oldest()
		if e == nil || e.used > horizon {
			break
		}
		s.remove(e)
		s.expirations++
	}
	size.Add(int64(-removed))
	return removed
}

// shrink removes, in one lock hold, up to sweepBatch of the shard's least
// recently used entries beyond its share of limit, never taking the table
// below limit. The share is the shard's part of limit in proportion to its
// part of total (the table's size when the pass began); the first call of
// a pass sets it (from -1), the following ones keep it.
// An entry that had already expired counts as an expiration, any other as
// an eviction. It returns how many it removed and whether the shard is
// still over its share.
func (s *shard) shrink(t *Table, limit, total int64, sharep *int) (removed int, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *sharep < 0 {
		*sharep = int(int64(len(s.items)) * limit / total)
	}
	share := *sharep
	horizon := t.horizon(time.Now().UnixNano())
	for len(s.items) > share && removed < sweepBatch && t.size.Load() > limit {
		s.dropOldest(horizon)
		t.size.Add(-1)
		removed++
	}
	return removed, len(s.items) > share && removed == sweepBatch && t.size.Load() > limit
}

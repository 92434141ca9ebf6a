// Package affinity keeps the source-address affinity of L4 mode: a table from
// client Key to the id of the backend the client is pinned to, bounded by
// capacity (least recently used entries are evicted) and by a sliding TTL
// (every hit renews it).
//
// The table is sharded so that lookups from many connections do not queue on
// one lock, and expiry is done by the table's own sweeper in small batches so
// that a burst of entries expiring together never holds a shard for long.
package affinity

import (
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
// Create it with New and stop its sweeper with Close.
type Table struct {
	ttl     int64 // nanoseconds
	slack   int64 // a hit renews the TTL only when it is older than this
	v4, v6  int
	mask    uint64
	limit   int64        // capacity over all shards
	size    atomic.Int64 // entries over all shards
	shards  []shard
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

// pin is the value stored per key.
type pin struct {
	id      string
	expires int64 // unix nanoseconds
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
		ttl:    int64(ttl),
		slack:  int64(ttl) / 128,
		v4:     v4,
		v6:     v6,
		mask:   uint64(n - 1),
		limit:  int64(capacity),
		shards: make([]shard, n),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for i := range t.shards {
		// Shards are unbounded: capacity is enforced over the whole table
		// in Pin, since hashing never fills shards evenly.
		t.shards[i].init()
	}
	go t.sweep(min(max(ttl/64, minSweepEvery), maxSweepEvery))
	return t
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
	s := t.shard(k)
	s.mu.Lock()
	e, ok := s.items[k]
	switch {
	case !ok:
		s.misses++
	case now >= e.expires:
		s.remove(e)
		t.size.Add(-1)
		s.expirations++
		s.misses++
		ok = false
	default:
		if e.expires-now < t.ttl-t.slack {
			e.expires = now + t.ttl
			s.touch(e)
		}
		s.hits++
		id = e.id
	}
	s.mu.Unlock()
	return id, ok
}

// Pin points k at backend id with a fresh TTL. It reports whether this moved
// a live entry from another backend, which is counted as a re-pin.
//
// When a new key takes the table past its capacity, the least recently used
// entry of the key's shard is evicted. Keys hash evenly over shards, so that
// entry is among the oldest of the whole table; with a single shard (tables
// below 2048 entries) it is exactly the oldest.
func (t *Table) Pin(k Key, id string) (repinned bool) {
	_, repinned = t.pin(k, "", id, false)
	return repinned
}

// PinIf points k at backend id unless another connection got there first:
// it pins when k has no live entry or its entry is still old (the id the
// caller saw, "" for none), and returns the id k is pinned to afterwards.
// When that is not id, the caller lost a race with another connection of
// the same client and should follow the returned pin, so that clients that
// arrive together, or fail over together, all land on one backend. Moving a
// live entry from old to another backend counts as a re-pin.
func (t *Table) PinIf(k Key, old, id string) (current string) {
	current, _ = t.pin(k, old, id, true)
	return current
}

// pin stores k -> id with a fresh TTL; when conditional, only if k's live
// entry (if any) is old, returning the live id otherwise.
func (t *Table) pin(k Key, old, id string, conditional bool) (current string, repinned bool) {
	now := time.Now().UnixNano()
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, existed := s.items[k]
	live := existed && now < e.expires
	switch {
	case live && conditional && e.id != old:
		return e.id, false
	case existed && !live:
		s.expirations++
	case live && e.id != id:
		s.repins++
		repinned = true
	}
	if existed {
		e.pin = pin{id: id, expires: now + t.ttl}
		s.touch(e)
		return id, repinned
	}
	s.insert(k, pin{id: id, expires: now + t.ttl})
	if t.size.Add(1) > t.limit && len(s.items) > 1 {
		// The oldest entry may already have expired, waiting for the
		// sweeper; then it goes as an expiration, not an eviction.
		oldest := s.oldest()
		if now >= oldest.expires {
			s.expirations++
		} else {
			s.evictions++
		}
		s.remove(oldest)
		t.size.Add(-1)
	}
	return id, repinned
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
func (t *Table) sweep(every time.Duration) {
	defer close(t.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	next := 0 // the shard the next round starts with
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			budget := sweepBudget
			for range t.shards {
				budget -= t.shards[next].expire(time.Now().UnixNano(), &t.size, min(budget, sweepBatch))
				if budget <= 0 {
					break
				}
				next = (next + 1) % len(t.shards)
			}
		}
	}
}

// expire removes up to max of the shard's expired entries, oldest first,
// in one lock hold, and returns how many it removed. Every TTL renewal moves
// its entry to the front of the LRU list, so the list is in expiry order
// and the sweep stops at the first live entry.
func (s *shard) expire(now int64, size *atomic.Int64, max int) (removed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; removed < max; removed++ {
		e := s.oldest()
		if e == nil || now < e.expires {
			break
		}
		s.remove(e)
		s.expirations++
	}
	size.Add(int64(-removed))
	return removed
}

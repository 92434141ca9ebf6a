package affinity

import (
	"sync/atomic"
	"time"
)

// Replication. Instances that share their pins (see package cluster) need
// two things of the table: the pins this instance makes or moves, as they
// happen, without the data path ever waiting for the network; and a way to
// apply a pin made elsewhere that does not send it out again.
//
// The first is the Outbox: a bounded queue that Pin and PinIf write a
// Change into, lock-free and without allocating, and that one reader
// drains. When it is full the change is dropped and counted; the
// periodic full exchange of tables between instances repairs the loss.
// The second is Merge.
//
// Pins of one key made on different instances are ordered by their stamp,
// the instant the key was pointed at its backend, and then by backend id:
// the greater (stamp, id) wins wherever the two meet, so every instance
// converges on the same pin whatever order the changes arrive in. A local
// pin always takes a stamp above the one it replaces (see nextStamp), so
// a re-pin made here after a pin learnt from an instance whose clock runs
// ahead still wins everywhere, as it must: it is the later decision.

// Change is a pin made or moved by this instance, or with an empty ID a
// pin the operator forgot here.
type Change struct {
	Key   Key
	ID    string
	Stamp int64 // orders the pin against others of Key (see Merge)
	Used  int64 // when the pin was last used, unix nanoseconds
}

// Outbox is a bounded multi-producer, single-consumer queue of Changes.
// Producers never block and never allocate: a Change that finds the queue
// full is dropped and counted. Create it with NewOutbox.
//
// It is the bounded queue of D. Vyukov: each slot carries a sequence
// number saying whether it is free for the producer at a position or
// filled for the consumer at it, so producers contend only on one atomic
// counter and the consumer on none.
type Outbox struct {
	head    atomic.Uint64 // next position a producer claims
	_       [56]byte      // keep producers' counter off the consumer's line
	tail    uint64        // next position the consumer reads; the consumer's alone
	mask    uint64
	slots   []outboxSlot
	dropped atomic.Uint64
}

type outboxSlot struct {
	seq atomic.Uint64
	c   Change
}

// NewOutbox returns an outbox holding up to size changes, rounded up to a
// power of two (at least 2).
func NewOutbox(size int) *Outbox {
	n := 2
	for n < size {
		n *= 2
	}
	o := &Outbox{mask: uint64(n - 1), slots: make([]outboxSlot, n)}
	for i := range o.slots {
		o.slots[i].seq.Store(uint64(i))
	}
	return o
}

// put adds c, or drops and counts it when the outbox is full.
func (o *Outbox) put(c Change) bool {
	pos := o.head.Load()
	for {
		slot := &o.slots[pos&o.mask]
		seq := slot.seq.Load()
		switch diff := int64(seq - pos); {
		case diff == 0:
			if o.head.CompareAndSwap(pos, pos+1) {
				slot.c = c
				slot.seq.Store(pos + 1)
				return true
			}
			pos = o.head.Load()
		case diff < 0: // the slot still holds a change from a lap ago: full
			o.dropped.Add(1)
			return false
		default: // another producer took pos
			pos = o.head.Load()
		}
	}
}

// Take appends to buf the changes waiting, oldest first, up to cap(buf),
// and returns it. Only one goroutine may call Take.
func (o *Outbox) Take(buf []Change) []Change {
	for len(buf) < cap(buf) {
		slot := &o.slots[o.tail&o.mask]
		if slot.seq.Load() != o.tail+1 {
			break // empty, or the producer of this slot is still writing it
		}
		buf = append(buf, slot.c)
		slot.c = Change{}
		slot.seq.Store(o.tail + o.mask + 1)
		o.tail++
	}
	return buf
}

// Dropped returns how many changes found the outbox full.
func (o *Outbox) Dropped() uint64 { return o.dropped.Load() }

// Publish makes the table write every pin it makes or moves from now on
// into o; nil stops it. Renewals of a pin by use are not published: the
// full exchange of tables carries their last use.
func (t *Table) Publish(o *Outbox) { t.outbox.Store(o) }

// publish hands a local change to the outbox, if there is one.
func (t *Table) publish(k Key, id string, stamp, used int64) {
	if o := t.outbox.Load(); o != nil {
		o.put(Change{Key: k, ID: id, Stamp: stamp, Used: used})
	}
}

// nextStamp returns the stamp of a local pin made at now replacing one
// stamped prev: now, or just above prev when a clock ahead of ours made
// that, so that the new pin wins over the one it replaces.
func nextStamp(now, prev int64) int64 { return max(now, prev+1) }

// wins reports whether a pin stamped stamp to id beats one stamped
// oldStamp to oldID: the later stamp wins, and on equal stamps the greater
// id, so that the choice is the same on every instance.
func wins(stamp int64, id string, oldStamp int64, oldID string) bool {
	if stamp != oldStamp {
		return stamp > oldStamp
	}
	return id > oldID
}

// MergeResult says what Merge did with a pin.
type MergeResult uint8

const (
	// MergeIgnored: the pin had expired, or lost to the live pin of its
	// key.
	MergeIgnored MergeResult = iota
	// MergeRenewed: the key had this very pin; its last use moved up.
	MergeRenewed
	// MergeApplied: the key is now pinned as the merged pin says, where
	// it had no live pin or a losing one.
	MergeApplied
)

// Merge applies a pin that another instance made or holds: key k to id,
// stamped stamp, last used at used (unix nanoseconds; a time ahead of
// this instance's clock counts as now). It never publishes. A pin whose
// last use is a TTL or more ago is ignored; one the key's live pin beats
// (see wins) too. The same pin renews the local one to the later of the
// two last uses, so that a client using one instance keeps its pin alive
// on the others. A winning pin replaces the local one, keeping the later
// last use. The pin takes its place in recency order and, past capacity,
// evicts the least recently used pin of k's shard, as Pin does. Moving a
// live pin here is not counted as a re-pin: that is the other instance's.
//
// An empty id is a pin forgotten elsewhere: it removes k's live pin when
// it beats it (an operator's forget, later than the pin), so that the
// forget holds on every instance.
func (t *Table) Merge(k Key, id string, stamp, used int64) MergeResult {
	now := time.Now().UnixNano()
	if id == "" {
		return t.mergeForget(k, stamp, now)
	}
	used = min(used, now)
	horizon := t.horizon(now)
	if used <= horizon {
		return MergeIgnored
	}
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[k]
	if ok && e.used > horizon {
		result := MergeRenewed
		switch {
		case e.id == id && e.stamp == stamp:
			if used <= e.used {
				return MergeRenewed
			}
		case wins(stamp, id, e.stamp, e.id):
			e.id, e.stamp = id, stamp
			result = MergeApplied
			if used <= e.used {
				return result
			}
		default:
			return MergeIgnored
		}
		e.used = used
		s.unlink(e)
		s.place(e)
		return result
	}
	if ok {
		s.remove(e)
		t.size.Add(-1)
		s.expirations++
	}
	t.admit(s, k, pin{id: id, used: used, stamp: stamp})
	return MergeApplied
}

// mergeForget removes k's live pin if a forget stamped stamp beats it.
func (t *Table) mergeForget(k Key, stamp, now int64) MergeResult {
	horizon := t.horizon(now)
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[k]
	if !ok || e.used <= horizon || !wins(stamp, "", e.stamp, e.id) {
		return MergeIgnored
	}
	s.remove(e)
	t.size.Add(-1)
	return MergeApplied
}

// admit adds a pin of k, which has no entry in s, in recency order (see
// place) and, past capacity, evicts the least recently used pin of s: how
// a pin made elsewhere (Merge) or saved before (Restore) comes in. s.mu is
// held.
func (t *Table) admit(s *shard, k Key, p pin) {
	e := &entry{key: k, pin: p}
	s.items[k] = e
	s.place(e)
	if t.size.Add(1) > t.limit.Load() && len(s.items) > 1 {
		s.remove(s.oldest())
		s.evictions++
		t.size.Add(-1)
	}
}

// place links e, not in the recency list, after every entry used later
// than it, keeping the list in order of last use, which the sweeper and
// eviction rely on. Pins merged as they happen are the most recent and go
// first at once; s.mu must be held.
func (s *shard) place(e *entry) {
	at := &s.recency
	for at.next != &s.recency && at.next.used > e.used {
		at = at.next
	}
	e.prev, e.next = at, at.next
	at.next.prev = e
	at.next = e
}

// Stamped is a live pin with what Merge needs to apply it elsewhere.
type Stamped struct {
	Key   Key
	ID    string
	Stamp int64
	Used  int64
}

// RangeStamped calls fn for every live pin with its stamp and last use,
// as Range does (a batch per lock hold, fn called with no lock held),
// until fn returns false. It is how one instance sends its whole table to
// another.
func (t *Table) RangeStamped(fn func(Stamped) bool) {
	var batch [rangeBatch]pinned
	for i := range t.shards {
		if !t.shards[i].visit(t, batch[:0], nil, fn) {
			return
		}
	}
}

// emitStamped is emit for RangeStamped.
func (t *Table) emitStamped(batch []pinned, fn func(Stamped) bool) bool {
	horizon := t.horizon(time.Now().UnixNano())
	for _, p := range batch {
		if p.used <= horizon {
			continue
		}
		if !fn(Stamped{Key: p.key, ID: p.id, Stamp: p.stamp, Used: p.used}) {
			return false
		}
	}
	return true
}

// KeyFrom returns the key with the two halves that Halves returned, as
// another instance sent them.
func KeyFrom(hi, lo uint64) Key { return Key{hi: hi, lo: lo} }

// Halves returns the key's two 64-bit halves, for sending to another
// instance.
func (k Key) Halves() (hi, lo uint64) { return k.hi, k.lo }

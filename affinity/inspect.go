package affinity

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// rangeBatch is how many map slots Range reads per lock hold. It bounds how
// long a lookup can wait behind an operator listing the table, however large
// the shard.
const rangeBatch = 64

// ErrBadKey is wrapped by ParseKey's errors, so that callers can tell
// malformed operator input from other failures.
var ErrBadKey = errors.New("bad client key")

// ParseKey parses a client key as an operator writes it, an IPv4 or IPv6
// address ("203.0.113.7", "2001:db8::1"), and masks it with the table's
// prefixes, so that any address of a client's prefix names its pin. The
// masked form that Key.String prints parses back to the same key.
func (t *Table) ParseKey(s string) (Key, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return Key{}, fmt.Errorf("%w %q: want an IPv4 or IPv6 address, as 203.0.113.7 or 2001:db8::1", ErrBadKey, s)
	}
	return t.Key(addr), nil
}

// Get returns the backend id pinned to k and when the pin expires unless it
// is used again. It is an inspection: it neither renews the pin nor counts
// as a hit or a miss. An expired pin is not reported, by the same test
// Lookup applies (a pin is live strictly before its expiry instant).
func (t *Table) Get(k Key) (id string, expires time.Time, ok bool) {
	horizon := t.horizon(time.Now().UnixNano())
	s := t.shard(k)
	s.mu.Lock()
	e, ok := s.items[k]
	var p pin
	if ok {
		p = e.pin
	}
	s.mu.Unlock()
	if !ok || p.used <= horizon {
		return "", time.Time{}, false
	}
	return p.id, t.expires(p.used), true
}

// Forget removes the live pin of k and reports whether there was one; the
// client is placed afresh at its next connection. With an outbox (see
// Publish), the removal is published as a Change with no ID. The removal is the
// operator's, so it counts neither as an eviction nor as an expiration. An
// expired pin still awaiting the sweeper is left to it, to be counted as the
// expiration it is, and Forget reports false.
func (t *Table) Forget(k Key) bool {
	horizon := t.horizon(time.Now().UnixNano())
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[k]
	if !ok || e.used <= horizon {
		return false
	}
	s.remove(e)
	t.size.Add(-1)
	t.publish(k, "", nextStamp(time.Now().UnixNano(), e.stamp), 0)
	return true
}

// Range calls fn for every live pin, shard by shard, until fn returns false.
// expires is as Get reports it.
//
// Each shard is read rangeBatch entries per lock hold, copied out, and fn is
// called with no lock held, so fn may use the table and a slow fn delays no
// lookup. Range allocates nothing of its own. The result is not a snapshot
// of one instant: a pin present and live throughout is visited exactly once,
// with its value as of its batch; one pinned, moved, forgotten or expiring
// while Range runs may be visited with its old value, its new one, or not at
// all, and one forgotten and pinned again may be visited twice. A pin whose
// expiry passed before fn would be called with it is skipped.
func (t *Table) Range(fn func(k Key, id string, expires time.Time) bool) {
	var batch [rangeBatch]pinned
	for i := range t.shards {
		if !t.shards[i].visit(t, batch[:0], fn, nil) {
			return
		}
	}
}

// pinned is a pin copied out of a shard for Range.
type pinned struct {
	key Key
	pin
}

// visit passes the shard's live pins to fn (or, when fn is nil, to
// stamped), collecting up to cap(batch) of them per lock hold into batch.
// It reports whether the callee wants more.
//
// Go's map iteration allows the map to change between steps, with the
// semantics Range documents; the iterator only ever advances with s.mu held,
// and every change to the map is made under s.mu, so no step overlaps a
// change.
func (s *shard) visit(t *Table, batch []pinned, fn func(Key, string, time.Time) bool, stamped func(Stamped) bool) bool {
	emit := func(b []pinned) bool {
		if fn != nil {
			return t.emit(b, fn)
		}
		return t.emitStamped(b, stamped)
	}
	s.mu.Lock()
	horizon := t.horizon(time.Now().UnixNano())
	read := 0
	for k, e := range s.items {
		if e.used > horizon {
			batch = append(batch, pinned{key: k, pin: e.pin})
		}
		if read++; read < cap(batch) {
			continue
		}
		s.mu.Unlock()
		if !emit(batch) {
			return false
		}
		batch, read = batch[:0], 0
		s.mu.Lock()
		horizon = t.horizon(time.Now().UnixNano())
	}
	s.mu.Unlock()
	return emit(batch)
}

// emit calls fn for each pin of batch still live now, until fn returns
// false, and reports whether it did not.
func (t *Table) emit(batch []pinned, fn func(Key, string, time.Time) bool) bool {
	horizon := t.horizon(time.Now().UnixNano())
	for _, p := range batch {
		if p.used <= horizon {
			continue
		}
		if !fn(p.key, p.id, t.expires(p.used)) {
			return false
		}
	}
	return true
}

// CountByBackend returns how many live pins each backend id has; ids with
// none are absent. It is one Range over the table, for the "pinned clients"
// of every backend at once: counting on demand keeps the pin path as it is
// and gives exactly the pins Range and Get report, with expired ones never
// counted.
func (t *Table) CountByBackend() map[string]int {
	counts := make(map[string]int)
	t.Range(func(_ Key, id string, _ time.Time) bool {
		counts[id]++
		return true
	})
	return counts
}

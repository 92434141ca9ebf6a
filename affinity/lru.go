package affinity

// entry is one pin in a shard: a map value that is also a node of the
// shard's recency list.
type entry struct {
	prev, next *entry // towards the most and the least recently used
	key        Key
	pin
}

// The shard's recency list is kept here rather than in a library LRU so
// that Range can walk the shard's map a batch at a time, letting go of the
// lock between batches; a library LRU offers only a copy of all its keys,
// made under its lock in one go. The list is circular through the shard's
// sentinel entry: sentinel.next is the most recently used entry and
// sentinel.prev the least. Every method below needs s.mu held.

// init makes the shard an empty table.
func (s *shard) init() {
	s.items = make(map[Key]*entry)
	s.recency.next = &s.recency
	s.recency.prev = &s.recency
}

// insert adds k as the most recently used entry. k must not be present.
func (s *shard) insert(k Key, p pin) {
	e := &entry{key: k, pin: p}
	s.items[k] = e
	s.pushFront(e)
}

// touch makes e the most recently used entry.
func (s *shard) touch(e *entry) {
	if s.recency.next == e {
		return
	}
	s.unlink(e)
	s.pushFront(e)
}

// remove drops e from the shard.
func (s *shard) remove(e *entry) {
	s.unlink(e)
	delete(s.items, e.key)
}

// oldest returns the least recently used entry, or nil when the shard is
// empty.
func (s *shard) oldest() *entry {
	if e := s.recency.prev; e != &s.recency {
		return e
	}
	return nil
}

// dropOldest removes the least recently used entry of a shard that has
// one, to make room: counted as an expiration when it was last used at or
// before horizon (it waited for the sweeper), else as an eviction. The
// caller takes it off the table's size.
func (s *shard) dropOldest(horizon int64) {
	e := s.oldest()
	if e.used <= horizon {
		s.expirations++
	} else {
		s.evictions++
	}
	s.remove(e)
}

func (s *shard) pushFront(e *entry) {
	root := &s.recency
	e.prev = root
	e.next = root.next
	root.next.prev = e
	root.next = e
}

func (s *shard) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

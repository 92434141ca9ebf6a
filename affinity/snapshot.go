package affinity

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

// The snapshot format Save writes and Load reads, all integers big endian:
//
//	header:  magic "LBPINS\r\n" (8 bytes), version uint16 (2)
//	pin:     kind byte 1, key hi uint64, key lo uint64,
//	         remaining TTL int64 (nanoseconds), stamp int64 (version 2
//	         only), id length uvarint, id
//	end:     kind byte 0, pin count uint64, CRC-32C uint32 of every byte
//	         before it, header included
//
// The end record makes a truncated file an error rather than a shorter
// table, and the checksum catches a changed byte. The stamp is the one
// that orders the pin against pins of its key made on other instances of
// a cluster (see Merge): an upgrade hands the table over with it, so that
// the pins the new process serves rank as they did in the old one.
// Version 1 snapshots, without stamps, are still read; their pins restore
// with stamp 0, which any pin made since beats. Nothing follows the end
// record that Load reads, so a snapshot can be one section of a larger file.
const (
	snapshotMagic   = "LBPINS\r\n"
	snapshotVersion = 2
	kindEnd         = 0
	kindPin         = 1
	// maxSnapshotID bounds the id length Load accepts, far above any
	// configurable id, so that a forged length allocates nothing large.
	maxSnapshotID = 1024
	// maxSnapshotIDs bounds the distinct ids readSnapshot shares, so that
	// a forged snapshot naming a new id per pin costs no more than plain
	// copies.
	maxSnapshotIDs = 4096
)

// ErrBadSnapshot is wrapped by Load's errors about the snapshot itself (a
// foreign, truncated or corrupt file), as opposed to a failing reader.
var ErrBadSnapshot = errors.New("bad affinity snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes every live pin to w in the snapshot format: its key, its
// backend id and its remaining TTL. It returns how many pins it wrote.
//
// The pins are read with Range, so no lookup waits on the writing however
// large the table or slow w; the snapshot is not of one instant (see
// Range), which for pins saved to survive a restart means at worst a pin
// made or moved during the save is saved with its old value or not at all.
func (t *Table) Save(w io.Writer) (int, error) {
	return t.SaveSince(w, time.Time{}, time.Now())
}

// SaveSince is Save limited to the pins made, moved or renewed at or after
// since (a pin's last use, to the renewal granularity Lookup describes):
// the pins that changed since an earlier save began, when since is taken
// before it. The zero since saves every pin. The remaining TTLs are
// counted from now, which Merge is then given. An upgrade sends a whole
// snapshot while the old process still serves, then the changes since,
// which are few, once it has stopped accepting (see Merge).
func (t *Table) SaveSince(w io.Writer, since, now time.Time) (int, error) {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var buf [64]byte
	head := append(buf[:0], snapshotMagic...)
	head = binary.BigEndian.AppendUint16(head, snapshotVersion)
	bw.Write(head)
	n := 0
	each := t.RangeStamped
	if !since.IsZero() {
		each = func(fn func(Stamped) bool) { t.rangeSince(since.UnixNano(), fn) }
	}
	each(func(p Stamped) bool {
		rec := append(buf[:0], kindPin)
		rec = binary.BigEndian.AppendUint64(rec, p.Key.hi)
		rec = binary.BigEndian.AppendUint64(rec, p.Key.lo)
		rec = binary.BigEndian.AppendUint64(rec, uint64(t.expires(p.Used).Sub(now)))
		rec = binary.BigEndian.AppendUint64(rec, uint64(p.Stamp))
		rec = binary.AppendUvarint(rec, uint64(len(p.ID)))
		bw.Write(rec)
		_, err := bw.WriteString(p.ID)
		n++
		return err == nil
	})
	end := append(buf[:0], kindEnd)
	end = binary.BigEndian.AppendUint64(end, uint64(n))
	bw.Write(end)
	// The checksum covers everything before it, so it is taken once the
	// buffer has reached crc.
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("save affinity snapshot: %w", err)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32(buf[:0], crc.Sum32())); err != nil {
		return 0, fmt.Errorf("save affinity snapshot: %w", err)
	}
	return n, nil
}

// rangeSince is RangeStamped limited to the pins last used at or after since
// (unix nanoseconds). A shard's recency list is in order of last use, so the
// pins changed since are at its front: each shard's are read from there in
// one lock hold, and the walk stops at the first older pin, so that the
// changes of the last seconds are read in time proportional to them, not to
// the table. A shard with more than a batch of them is read whole, as
// Range reads it, keeping its lock holds as short.
func (t *Table) rangeSince(since int64, fn func(Stamped) bool) {
	var batch [rangeBatch]pinned
	recent := func(p Stamped) bool {
		return p.Used < since || fn(p)
	}
	for i := range t.shards {
		s := &t.shards[i]
		got, whole := batch[:0], true
		s.mu.Lock()
		for e := s.recency.next; e != &s.recency && e.used >= since; e = e.next {
			if len(got) == cap(got) {
				whole = false
				break
			}
			got = append(got, pinned{key: e.key, pin: e.pin})
		}
		s.mu.Unlock()
		if !whole {
			if !s.visit(t, batch[:0], nil, recent) {
				return
			}
			continue
		}
		if !t.emitStamped(got, fn) {
			return
		}
	}
}

// savedPin is one pin read from a snapshot.
type savedPin struct {
	key       Key
	id        string
	remaining time.Duration
	stamp     int64
}

// Load reads a snapshot that Save wrote and restores its pins, each with
// the TTL it had left when saved (never more than the table's TTL), and
// returns how many it restored. Pins whose time ran out, pins to backends
// keep rejects (nil keeps all) and pins whose key the table's prefixes
// would not have made (the prefixes changed) are dropped. The whole
// snapshot is read and checked before any pin is restored: a foreign,
// truncated or corrupt snapshot restores nothing and is an error wrapping
// ErrBadSnapshot.
//
// Load reads nothing past the snapshot's end when r is a *bufio.Reader, so
// that the caller can read what follows.
func (t *Table) Load(r io.Reader, keep func(id string) bool) (loaded int, err error) {
	return t.load(r, keep, time.Time{})
}

// MergeSnapshot is Load of a snapshot that SaveSince wrote at savedAt (its now) in
// another process on this machine, into a table that may already hold
// pins: each pin expires at savedAt plus its remaining TTL, as in the
// process that saved it, and it replaces a live pin of its key that was
// last used before it, so that the newer of two decisions wins. An
// upgrade's new process merges the whole snapshot, then the changes since
// (see SaveSince), so that the moves and new pins the old process made
// meanwhile replace or join the pins the first restored.
func (t *Table) MergeSnapshot(r io.Reader, keep func(id string) bool, savedAt time.Time) (merged int, err error) {
	return t.load(r, keep, savedAt)
}

// load restores a snapshot's pins: from now, or with merge's rules from
// savedAt when it is not zero.
func (t *Table) load(r io.Reader, keep func(id string) bool, savedAt time.Time) (loaded int, err error) {
	pins, err := readSnapshot(bufio.NewReader(r))
	if err != nil {
		return 0, err
	}
	// Oldest first, so that each pin restored is the most recent so far
	// and goes to the front of its shard's recency list at once.
	slices.SortStableFunc(pins, func(a, b savedPin) int { return cmp.Compare(a.remaining, b.remaining) })
	t.reserve(len(pins))
	from, merge := savedAt, !savedAt.IsZero()
	if !merge {
		from = time.Now()
	}
	for _, p := range pins {
		if p.remaining <= 0 || (keep != nil && !keep(p.id)) || t.Key(p.key.Addr()) != p.key {
			continue
		}
		if t.restore(p.key, p.id, p.stamp, from.Add(p.remaining), merge) {
			loaded++
		}
	}
	return loaded, nil
}

// reserve makes room for n pins spread over the shards, in the shards that
// hold none yet (a table being loaded at start), so that a large load does
// not grow each shard's map step by step, rehashing it at every step.
func (t *Table) reserve(n int) {
	per := min(n, int(t.limit.Load())) / len(t.shards)
	if per < minPerShard {
		return
	}
	per += per / 8 // hashing never spreads keys evenly
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if len(s.items) == 0 {
			s.items = make(map[Key]*entry, per)
		}
		s.mu.Unlock()
	}
}

// checkedReader reads through br and adds what it reads to a checksum.
type checkedReader struct {
	br  *bufio.Reader
	crc hash.Hash32
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *checkedReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

// readSnapshot reads and checks a whole snapshot from br.
func readSnapshot(br *bufio.Reader) ([]savedPin, error) {
	cr := &checkedReader{br: br, crc: crc32.New(castagnoli)}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, args...)...)
	}
	truncated := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return bad("truncated")
		}
		return fmt.Errorf("read affinity snapshot: %w", err)
	}
	var head [len(snapshotMagic) + 2]byte
	if _, err := io.ReadFull(cr, head[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || string(head[:len(snapshotMagic)]) != snapshotMagic {
			return nil, bad("not an affinity snapshot")
		}
		return nil, truncated(err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, bad("not an affinity snapshot")
	}
	version := binary.BigEndian.Uint16(head[len(snapshotMagic):])
	if version != 1 && version != snapshotVersion {
		return nil, bad("version %d, this lbctl reads versions 1 and %d", version, snapshotVersion)
	}
	fixed := 24 // key and remaining TTL
	if version >= 2 {
		fixed += 8 // stamp
	}
	var pins []savedPin
	var rec [32]byte
	var idBuf [maxSnapshotID]byte
	ids := map[string]string{}
	for {
		kind, err := cr.ReadByte()
		if err != nil {
			return nil, truncated(err)
		}
		switch kind {
		case kindPin:
		case kindEnd:
			if _, err := io.ReadFull(cr, rec[:8]); err != nil {
				return nil, truncated(err)
			}
			count := binary.BigEndian.Uint64(rec[:8])
			want := cr.crc.Sum32()
			if _, err := io.ReadFull(br, rec[:4]); err != nil {
				return nil, truncated(err)
			}
			if got := binary.BigEndian.Uint32(rec[:4]); got != want {
				return nil, bad("checksum mismatch")
			}
			if count != uint64(len(pins)) {
				return nil, bad("%d pins where the end record says %d", len(pins), count)
			}
			return pins, nil
		default:
			return nil, bad("unknown record kind %d", kind)
		}
		if _, err := io.ReadFull(cr, rec[:fixed]); err != nil {
			return nil, truncated(err)
		}
		var stamp int64
		if fixed > 24 {
			stamp = int64(binary.BigEndian.Uint64(rec[24:32]))
		}
		n, err := binary.ReadUvarint(cr)
		if err != nil {
			return nil, truncated(err)
		}
		if n == 0 || n > maxSnapshotID {
			return nil, bad("backend id of %d bytes", n)
		}
		raw := idBuf[:n]
		if _, err := io.ReadFull(cr, raw); err != nil {
			return nil, truncated(err)
		}
		// A table names few backends: each id is made a string once and
		// shared by its pins, as the pins of a running table share it.
		id, ok := ids[string(raw)]
		if !ok {
			if len(ids) >= maxSnapshotIDs {
				clear(ids)
			}
			id = string(raw)
			ids[id] = id
		}
		pins = append(pins, savedPin{
			key:       Key{hi: binary.BigEndian.Uint64(rec[:8]), lo: binary.BigEndian.Uint64(rec[8:16])},
			remaining: time.Duration(binary.BigEndian.Uint64(rec[16:24])),
			stamp:     stamp,
			id:        id,
		})
	}
}

// Restore pins k to backend id so that it expires at expires unless used
// again, as if it had last been used a TTL before: it brings back a pin
// saved before a restart with the time it had left, never more than the
// TTL. It restores nothing and returns false when expires has passed or k
// already has a live pin, which is newer than a saved one. Restore places
// the pin in recency order among the others (oldest first when loading
// many makes that immediate) and, past capacity, evicts the least recently
// used pin of k's shard, as Pin does.
func (t *Table) Restore(k Key, id string, expires time.Time) bool {
	return t.restore(k, id, 0, expires, false)
}

// restore is Restore of a pin stamped stamp; with newer, a live pin of k
// last used before the saved one is replaced rather than kept.
func (t *Table) restore(k Key, id string, stamp int64, expires time.Time, newer bool) bool {
	now := time.Now().UnixNano()
	used := min(expires.UnixNano()-t.ttl.Load(), now)
	horizon := t.horizon(now)
	if used <= horizon {
		return false
	}
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[k]; ok {
		live := e.used > horizon
		if live && (!newer || e.used >= used) {
			return false
		}
		s.remove(e)
		t.size.Add(-1)
		switch {
		case !live:
			s.expirations++
		case e.id != id:
			s.repins++
		}
	}
	t.admit(s, k, pin{id: id, used: used, stamp: stamp})
	return true
}

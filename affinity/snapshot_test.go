package affinity

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// snapshotPins returns every live pin of tb as key -> id.
func snapshotPins(tb *Table) map[Key]string {
	out := map[Key]string{}
	tb.Range(func(k Key, id string, _ time.Time) bool {
		out[k] = id
		return true
	})
	return out
}

func TestSnapshotRoundTripKeys(t *testing.T) {
	opts := Options{IPv4Prefix: 24, IPv6Prefix: 64}
	src := New(opts)
	defer src.Close()
	addrs := []string{"203.0.113.7", "198.51.100.250", "::ffff:192.0.2.9", "2001:db8:1:2:3:4:5:6", "2001:db8:ffff::1", "fe80::1"}
	want := map[Key]string{}
	for i, a := range addrs {
		k := src.Key(netip.MustParseAddr(a))
		id := []string{"app-01", "app-02", "app-03"}[i%3]
		src.Pin(k, id)
		want[k] = id
	}
	var buf bytes.Buffer
	n, err := src.Save(&buf)
	if err != nil || n != len(want) {
		t.Fatalf("Save = %d, %v; want %d pins", n, err, len(want))
	}
	dst := New(opts)
	defer dst.Close()
	loaded, err := dst.Load(&buf, nil)
	if err != nil || loaded != len(want) {
		t.Fatalf("Load = %d, %v; want %d", loaded, err, len(want))
	}
	got := snapshotPins(dst)
	if len(got) != len(want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for k, id := range want {
		if got[k] != id {
			t.Errorf("key %s: loaded %q, want %q", k, got[k], id)
		}
		// The key is the masked one the running table would make.
		if dst.Key(k.Addr()) != k {
			t.Errorf("key %s is not masked as the table masks it", k)
		}
	}
}

func TestSnapshotKeepsRemainingTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := New(Options{TTL: time.Hour})
		defer src.Close()
		old := src.Key(netip.MustParseAddr("192.0.2.1"))
		fresh := src.Key(netip.MustParseAddr("192.0.2.2"))
		dying := src.Key(netip.MustParseAddr("192.0.2.3"))
		src.Pin(dying, "app-01")
		time.Sleep(10 * time.Minute)
		src.Pin(old, "app-01")
		time.Sleep(20 * time.Minute)
		src.Pin(fresh, "app-02")
		var buf bytes.Buffer
		if _, err := src.Save(&buf); err != nil {
			t.Fatal(err)
		}
		// The process is down for 35 minutes, longer than dying had left.
		time.Sleep(35 * time.Minute)
		dst := New(Options{TTL: time.Hour})
		defer dst.Close()
		loaded, err := dst.Load(&buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Saved remaining TTLs are counted from the save; the restart
		// does not consume them (the table does not know its downtime).
		if loaded != 3 {
			t.Fatalf("loaded %d, want 3", loaded)
		}
		now := time.Now()
		for _, c := range []struct {
			k    Key
			left time.Duration
		}{{dying, 30 * time.Minute}, {old, 40 * time.Minute}, {fresh, time.Hour}} {
			_, exp, ok := dst.Get(c.k)
			if !ok || exp.Sub(now) != c.left {
				t.Errorf("%s: expires in %v (ok %v), want %v", c.k, exp.Sub(now), ok, c.left)
			}
		}
		time.Sleep(30 * time.Minute)
		if _, _, ok := dst.Get(dying); ok {
			t.Errorf("%s outlived its remaining TTL", dying)
		}
		if _, ok := dst.Lookup(old); !ok {
			t.Errorf("%s expired before its remaining TTL", old)
		}
	})
}

func TestSnapshotLoadDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := New(Options{TTL: time.Hour})
		defer src.Close()
		keys := make([]Key, 4)
		for i := range keys {
			keys[i] = src.Key(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}))
		}
		src.Pin(keys[0], "gone")
		src.Pin(keys[1], "app-01")
		time.Sleep(50 * time.Minute)
		src.Pin(keys[2], "app-01")
		var buf bytes.Buffer
		if _, err := src.Save(&buf); err != nil {
			t.Fatal(err)
		}
		// A shorter TTL caps what is restored; a narrower prefix drops
		// keys it would not have made.
		dst := New(Options{TTL: 5 * time.Minute})
		defer dst.Close()
		loaded, err := dst.Load(bytes.NewReader(buf.Bytes()), func(id string) bool { return id != "gone" })
		if err != nil || loaded != 2 {
			t.Fatalf("Load = %d, %v; want 2", loaded, err)
		}
		if _, _, ok := dst.Get(keys[0]); ok {
			t.Error("pin to a backend keep rejects was restored")
		}
		if _, exp, ok := dst.Get(keys[1]); !ok || time.Until(exp) != 5*time.Minute {
			t.Errorf("capped pin expires in %v (ok %v), want 5m", time.Until(exp), ok)
		}
		narrow := New(Options{IPv4Prefix: 24})
		defer narrow.Close()
		if loaded, err := narrow.Load(bytes.NewReader(buf.Bytes()), nil); err != nil || loaded != 0 {
			t.Errorf("Load into a /24 table = %d, %v; want 0 (keys of /32 no longer match)", loaded, err)
		}
	})
}

func TestSnapshotCorrupt(t *testing.T) {
	src := New(Options{})
	defer src.Close()
	for i := range 50 {
		src.Pin(src.Key(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})), "app-01")
	}
	var buf bytes.Buffer
	if _, err := src.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	cases := map[string][]byte{
		"empty":     {},
		"foreign":   []byte("[affinity]\nttl = \"1h\"\n"),
		"header":    good[:10],
		"truncated": good[:len(good)/2],
		"no crc":    good[:len(good)-2],
		"version":   append(append([]byte(snapshotMagic), 0, 9), good[10:]...),
	}
	for _, at := range []int{12, len(good) / 2, len(good) - 6, len(good) - 1} {
		flipped := bytes.Clone(good)
		flipped[at] ^= 0x10
		cases["flipped byte "+strconv.Itoa(at)] = flipped
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst := New(Options{})
			defer dst.Close()
			loaded, err := dst.Load(bytes.NewReader(data), nil)
			if !errors.Is(err, ErrBadSnapshot) {
				t.Errorf("Load = %d, %v; want ErrBadSnapshot", loaded, err)
			}
			if loaded != 0 || dst.Stats().Size != 0 {
				t.Errorf("corrupt snapshot restored %d pins (size %d)", loaded, dst.Stats().Size)
			}
		})
	}
}

func TestSnapshotIsASection(t *testing.T) {
	src := New(Options{})
	defer src.Close()
	src.Pin(src.Key(netip.MustParseAddr("192.0.2.1")), "app-01")
	var buf bytes.Buffer
	if _, err := src.Save(&buf); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after")
	br := bufio.NewReader(&buf)
	dst := New(Options{})
	defer dst.Close()
	if n, err := dst.Load(br, nil); err != nil || n != 1 {
		t.Fatalf("Load = %d, %v", n, err)
	}
	rest, _ := br.ReadString(0)
	if rest != "after" {
		t.Errorf("after the snapshot, read %q, want %q", rest, "after")
	}
}

func TestRestoreKeepsRecencyOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := New(Options{TTL: time.Hour, Capacity: 3})
		defer tb.Close()
		k := func(i byte) Key { return tb.Key(netip.AddrFrom4([4]byte{10, 2, 0, i})) }
		now := time.Now()
		tb.Restore(k(1), "a", now.Add(50*time.Minute))
		tb.Restore(k(2), "a", now.Add(10*time.Minute))
		tb.Restore(k(3), "a", now.Add(30*time.Minute))
		if tb.Restore(k(3), "b", now.Add(time.Hour)) {
			t.Error("Restore replaced a live pin")
		}
		// Past capacity the oldest (k2, 10 minutes left) goes.
		tb.Pin(k(4), "a")
		if _, _, ok := tb.Get(k(2)); ok {
			t.Error("eviction did not take the pin with the least time left")
		}
		// The sweeper expires in order: after 35 minutes only k1 and k4.
		time.Sleep(35 * time.Minute)
		synctest.Wait()
		if st := tb.Stats(); st.Size != 2 {
			t.Errorf("after 35m the table holds %d pins, want 2", st.Size)
		}
	})
}

// FuzzLoad feeds Load arbitrary bytes, seeded with a real snapshot: it
// must not panic, and whatever it does not reject is a valid snapshot.
func FuzzLoad(f *testing.F) {
	src := New(Options{})
	for i := range 5 {
		src.Pin(src.Key(netip.AddrFrom4([4]byte{10, 3, 0, byte(i)})), "app-0"+strconv.Itoa(i))
	}
	var buf bytes.Buffer
	if _, err := src.Save(&buf); err != nil {
		f.Fatal(err)
	}
	src.Close()
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic + "\x00\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tb := New(Options{})
		defer tb.Close()
		n, err := tb.Load(bytes.NewReader(data), nil)
		if err != nil && n != 0 {
			t.Errorf("Load = %d, %v: pins restored from a rejected snapshot", n, err)
		}
	})
}

// BenchmarkSnapshot1M saves and loads a table of a million pins, and
// reports the file's bytes per pin.
func BenchmarkSnapshot1M(b *testing.B) {
	const n = 1 << 20
	src := New(Options{Capacity: n})
	defer src.Close()
	for i := range n {
		src.Pin(src.Key(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})), "app-0"+strconv.Itoa(i%8))
	}
	var buf bytes.Buffer
	b.Run("save", func(b *testing.B) {
		for b.Loop() {
			buf.Reset()
			if _, err := src.Save(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len())/n, "bytes/pin")
	})
	b.Run("load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst := New(Options{Capacity: n})
			if got, err := dst.Load(bytes.NewReader(buf.Bytes()), nil); err != nil || got != n {
				b.Fatalf("Load = %d, %v", got, err)
			}
			dst.Close()
		}
	})
}

// An upgrade's hand-over: a whole snapshot, then pins change in the old
// table, then SaveSince the first save's start carries only those changes,
// and Merge applies them over what the first restored: a new pin is added,
// a moved one follows its move, an untouched one stays as it was.
func TestSaveSinceAndMerge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := New(Options{TTL: time.Hour})
		defer old.Close()
		k := func(i byte) Key { return old.Key(netip.AddrFrom4([4]byte{10, 4, 0, i})) }
		for i := range byte(10) {
			old.Pin(k(i), "app-01")
		}
		time.Sleep(time.Minute)
		since := time.Now()
		var first bytes.Buffer
		if n, err := old.Save(&first); err != nil || n != 10 {
			t.Fatalf("Save = %d, %v", n, err)
		}
		time.Sleep(time.Second)
		old.Pin(k(3), "app-02")  // moved after the first snapshot
		old.Pin(k(20), "app-03") // new after the first snapshot

		var second bytes.Buffer
		secondAt := time.Now()
		if n, err := old.SaveSince(&second, since, secondAt); err != nil || n != 2 {
			t.Fatalf("SaveSince = %d, %v; want the 2 pins changed since", n, err)
		}
		next := New(Options{TTL: time.Hour})
		defer next.Close()
		// Loaded later than saved, as a new process reads while the old
		// one serves on: the pins' times are the old process's.
		time.Sleep(5 * time.Second)
		if n, err := next.MergeSnapshot(&first, nil, since); err != nil || n != 10 {
			t.Fatalf("Merge of the first = %d, %v", n, err)
		}
		if n, err := next.MergeSnapshot(&second, nil, secondAt); err != nil || n != 2 {
			t.Fatalf("Merge = %d, %v; want 2", n, err)
		}
		want := snapshotPins(old)
		if got := snapshotPins(next); len(got) != 11 || len(got) != len(want) {
			t.Fatalf("after Merge %d pins, want 11", len(got))
		}
		for key, id := range want {
			if got, _, _ := next.Get(key); got != id {
				t.Errorf("%s: %q after Merge, want %q", key, got, id)
			}
		}
		// Merge keeps a live pin used after the saved one: k(3) moves
		// again in next, and merging the second snapshot again keeps it.
		next.Pin(k(3), "app-01")
		second.Reset()
		old.SaveSince(&second, since, secondAt)
		next.MergeSnapshot(&second, nil, secondAt)
		if got, _, _ := next.Get(k(3)); got != "app-01" {
			t.Errorf("Merge replaced a newer pin: k3 on %q, want app-01", got)
		}
		if st := next.Stats(); st.Repins != 2 || st.Expirations != 0 {
			t.Errorf("stats after the merges %+v, want 2 repins (one merged, one pinned) and no expirations", st)
		}
	})
}

// BenchmarkSaveSince1M measures the second part of an upgrade's hand-over
// over a table of a million pins: the thousand pins made since the first
// part, which is how long the upgrade pauses accepting (plus the merge).
func BenchmarkSaveSince1M(b *testing.B) {
	const n = 1 << 20
	src := New(Options{Capacity: 2 * n})
	defer src.Close()
	for i := range n {
		src.Pin(src.Key(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})), "app-0"+strconv.Itoa(i%8))
	}
	since := time.Now()
	for i := range 1000 {
		src.Pin(src.Key(netip.AddrFrom4([4]byte{11, 0, byte(i >> 8), byte(i)})), "app-01")
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if got, err := src.SaveSince(&buf, since, time.Now()); err != nil || got != 1000 {
			b.Fatalf("SaveSince = %d, %v; want 1000", got, err)
		}
	}
}

// SaveSince reads the pins changed since from the front of each shard's
// recency list, and a shard with more of them than a batch in full: both
// give exactly the changed pins.
func TestSaveSinceManyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, changed := range []int{rangeBatch - 1, rangeBatch, 3 * rangeBatch} {
			tb := New(Options{TTL: time.Hour, Capacity: 1000}) // one shard
			k := func(i int) Key { return tb.Key(netip.AddrFrom4([4]byte{10, 5, byte(i >> 8), byte(i)})) }
			for i := range 500 {
				tb.Pin(k(i), "app-01")
			}
			time.Sleep(time.Minute)
			since := time.Now()
			for i := range changed {
				tb.Pin(k(i*2), "app-02")
			}
			time.Sleep(time.Second)
			var buf bytes.Buffer
			if n, err := tb.SaveSince(&buf, since, time.Now()); err != nil || n != changed {
				t.Errorf("%d changed: SaveSince = %d, %v", changed, n, err)
			}
			dst := New(Options{TTL: time.Hour, Capacity: 1000})
			dst.MergeSnapshot(&buf, nil, time.Now())
			for key, id := range snapshotPins(dst) {
				if id != "app-02" {
					t.Errorf("%d changed: %s saved on %s, which it left before since", changed, key, id)
				}
			}
			dst.Close()
			tb.Close()
		}
	})
}

// A snapshot carries each pin's stamp, through SaveSince and MergeSnapshot
// alike; one of version 1, written before stamps were, still loads, its
// pins stamped 0.
func TestSnapshotStamps(t *testing.T) {
	tb := New(Options{TTL: time.Hour})
	defer tb.Close()
	k := tb.Key(netip.MustParseAddr("192.0.2.7"))
	stamp := time.Now().Add(-time.Minute).UnixNano()
	tb.Merge(k, "app-02", stamp, time.Now().UnixNano())
	for _, since := range []time.Time{{}, time.Now().Add(-time.Second)} {
		var buf bytes.Buffer
		if _, err := tb.SaveSince(&buf, since, time.Now()); err != nil {
			t.Fatal(err)
		}
		next := New(Options{TTL: time.Hour})
		defer next.Close()
		if n, err := next.MergeSnapshot(&buf, nil, time.Now()); err != nil || n != 1 {
			t.Fatalf("since %v: merged %d, %v", since, n, err)
		}
		next.RangeStamped(func(p Stamped) bool {
			if p.Stamp != stamp || p.ID != "app-02" {
				t.Errorf("since %v: restored %s stamped %d, want app-02 stamped %d", since, p.ID, p.Stamp, stamp)
			}
			return true
		})
	}

	// Version 1: header, one pin of 10 minutes left, the end record.
	crc := crc32.New(castagnoli)
	var v1 bytes.Buffer
	w := io.MultiWriter(&v1, crc)
	hi, lo := k.Halves()
	rec := append([]byte(snapshotMagic), 0, 1, kindPin)
	rec = binary.BigEndian.AppendUint64(rec, hi)
	rec = binary.BigEndian.AppendUint64(rec, lo)
	rec = binary.BigEndian.AppendUint64(rec, uint64(10*time.Minute))
	rec = binary.AppendUvarint(rec, 6)
	rec = append(rec, "app-01"...)
	rec = append(rec, kindEnd)
	rec = binary.BigEndian.AppendUint64(rec, 1)
	w.Write(rec)
	v1.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	old := New(Options{TTL: time.Hour})
	defer old.Close()
	if n, err := old.Load(&v1, nil); err != nil || n != 1 {
		t.Fatalf("version 1 snapshot: loaded %d, %v", n, err)
	}
	old.RangeStamped(func(p Stamped) bool {
		if p.Stamp != 0 || p.ID != "app-01" {
			t.Errorf("version 1 snapshot restored %s stamped %d, want app-01 stamped 0", p.ID, p.Stamp)
		}
		return true
	})
}

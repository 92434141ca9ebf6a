package instance

import (
	"bufio"
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// The two parts of an upgrade's hand-over on one stream: the first brings
// every pin and admin state, the second what changed since, merged over it;
// a backend the new config lacks loses its pins; a process in another mode
// reads the stream through and keeps the admin states alone.
func TestHandover(t *testing.T) {
	dir := t.TempDir()
	var out lockedBuffer
	old := newStateInstance(t, "l4", filepath.Join(dir, "old"), "1h", &out, "app-01", "app-02", "app-03")
	defer old.Close()
	tb := old.Table()
	key := func(a string) netip.Addr { return netip.MustParseAddr(a) }
	tb.PinIf(tb.Key(key("192.0.2.1")), "", "app-01")
	tb.PinIf(tb.Key(key("192.0.2.2")), "", "app-02")
	tb.PinIf(tb.Key(key("192.0.2.3")), "", "app-03")

	var stream bytes.Buffer
	since := time.Now()
	if _, err := old.writeHandover(&stream, time.Time{}); err != nil {
		t.Fatal(err)
	}
	tb.PinIf(tb.Key(key("192.0.2.1")), "app-01", "app-02") // moved meanwhile
	tb.PinIf(tb.Key(key("192.0.2.4")), "", "app-01")       // new meanwhile
	if _, err := old.SetAdminState("app-02", backend.Drain, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	pins, err := old.writeHandover(&stream, since)
	if err != nil || pins != 2 {
		t.Fatalf("second part: %d pins, %v; want the 2 changed", pins, err)
	}
	raw := stream.Bytes()

	// The new config has no app-03.
	next := newStateInstance(t, "l4", filepath.Join(dir, "next"), "1h", &out, "app-01", "app-02")
	defer next.Close()
	br := bufio.NewReader(bytes.NewReader(raw))
	if states, pins, err := next.readHandover(br); err != nil || states != 2 || pins != 2 {
		t.Fatalf("first part: %d states, %d pins, %v; want 2, 2", states, pins, err)
	}
	if states, pins, err := next.readHandover(br); err != nil || states != 2 || pins != 2 {
		t.Fatalf("second part: %d states, %d pins, %v; want 2, 2", states, pins, err)
	}
	for a, want := range map[string]string{"192.0.2.1": "app-02", "192.0.2.2": "app-02", "192.0.2.3": "", "192.0.2.4": "app-01"} {
		if id, _, _ := next.Table().Get(next.Table().Key(key(a))); id != want {
			t.Errorf("%s pinned to %q, want %q", a, id, want)
		}
	}
	if st, _ := next.Pool().Registry().Get("app-02").Admin(); st != backend.Drain {
		t.Errorf("app-02 is %v, want the drain set between the parts", st)
	}

	l7 := newStateInstance(t, "l7", filepath.Join(dir, "l7"), "1h", &out, "app-01", "app-02")
	defer l7.Close()
	br = bufio.NewReader(bytes.NewReader(raw))
	for i := range 2 {
		if states, pins, err := l7.readHandover(br); err != nil || states != 2 || pins != 0 {
			t.Errorf("L7, part %d: %d states, %d pins, %v; want 2, 0", i+1, states, pins, err)
		}
	}
	if st, _ := l7.Pool().Registry().Get("app-02").Admin(); st != backend.Drain {
		t.Errorf("L7: app-02 is %v, want drain", st)
	}

	// A damaged stream is an error, not a panic or a partial table.
	bad := append([]byte(nil), raw...)
	bad[len(bad)/3] ^= 0xff
	fresh := newStateInstance(t, "l4", filepath.Join(dir, "fresh"), "1h", &out, "app-01", "app-02")
	defer fresh.Close()
	br = bufio.NewReader(bytes.NewReader(bad))
	_, _, err1 := fresh.readHandover(br)
	_, _, err2 := fresh.readHandover(br)
	if err1 == nil && err2 == nil {
		t.Error("a damaged hand-over read without an error")
	}
	if _, _, err := fresh.readHandover(bufio.NewReader(strings.NewReader("\x07\x00\x00\x00\x00\x00\x00\x00\x00"))); err == nil {
		t.Error("a hand-over that begins with 7 read without an error")
	}
}

// The hand-over carries each pin's stamp, so that the pins of the new
// process rank against other members' pins as they did in the old one: a
// pin another member made before the old process re-pinned the key loses
// to the re-pin after the upgrade too, and a later one still wins.
func TestHandoverKeepsStamps(t *testing.T) {
	dir := t.TempDir()
	var out lockedBuffer
	old := newStateInstance(t, "l4", filepath.Join(dir, "old"), "1h", &out, "app-01", "app-02", "app-03")
	defer old.Close()
	tb := old.Table()
	a := tb.Key(netip.MustParseAddr("192.0.2.1"))
	b := tb.Key(netip.MustParseAddr("192.0.2.2"))
	now := time.Now().UnixNano()
	// Learnt from another member, then re-pinned here.
	tb.Merge(a, "app-01", now-int64(time.Minute), now-int64(time.Minute))
	tb.PinIf(a, "app-01", "app-02")
	tb.Merge(b, "app-03", now-int64(time.Second), now-int64(time.Second))
	want := map[affinity.Key]int64{}
	tb.RangeStamped(func(p affinity.Stamped) bool { want[p.Key] = p.Stamp; return true })

	var stream bytes.Buffer
	if _, err := old.writeHandover(&stream, time.Time{}); err != nil {
		t.Fatal(err)
	}
	next := newStateInstance(t, "l4", filepath.Join(dir, "next"), "1h", &out, "app-01", "app-02", "app-03")
	defer next.Close()
	if _, pins, err := next.readHandover(bufio.NewReader(&stream)); err != nil || pins != 2 {
		t.Fatalf("hand-over: %d pins, %v; want 2", pins, err)
	}
	got := map[affinity.Key]int64{}
	next.Table().RangeStamped(func(p affinity.Stamped) bool { got[p.Key] = p.Stamp; return true })
	for k, s := range want {
		if got[k] != s {
			t.Errorf("pin %s stamped %d in the old process, %d in the new", k, s, got[k])
		}
	}
	// The other member's older pin of a comes again (a push/pull): the
	// re-pin made before the upgrade wins. Its newer pin of b is the
	// same pin and renews it.
	if r := next.Table().Merge(a, "app-01", now-int64(time.Minute), now); r != affinity.MergeIgnored {
		t.Errorf("an older pin of another member merged over the handed-over re-pin: %v", r)
	}
	if id, _, _ := next.Table().Get(a); id != "app-02" {
		t.Errorf("192.0.2.1 pinned to %q after the merge, want app-02", id)
	}
	if r := next.Table().Merge(b, "app-03", now-int64(time.Second), now); r != affinity.MergeRenewed {
		t.Errorf("the same pin from another member: %v, want renewed", r)
	}
}

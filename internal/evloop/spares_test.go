package evloop

import "testing"

// Spares hands back what was put, at full capacity, up to Max buffers,
// and makes new ones of Size when it has none.
func TestSpares(t *testing.T) {
	s := Spares{Size: 16, Max: 2}
	a, b, c := s.Get(), s.Get(), s.Get()
	if len(a) != 16 || len(b) != 16 || len(c) != 16 {
		t.Fatalf("new buffers of %d, %d, %d bytes, want 16", len(a), len(b), len(c))
	}
	s.Put(a[:0])
	s.Put(b[:3])
	s.Put(c) // over Max: dropped
	if n := len(s.free); n != 2 {
		t.Fatalf("keeps %d buffers, want 2", n)
	}
	if got := s.Get(); &got[0] != &b[0] || len(got) != 16 {
		t.Errorf("Get: a buffer of %d bytes, want the last one put, whole", len(got))
	}
	if got := s.Get(); &got[0] != &a[0] {
		t.Error("Get: not the first buffer put")
	}
	if got := s.Get(); &got[0] == &c[0] {
		t.Error("a buffer put past Max came back")
	}
	if n := testing.AllocsPerRun(100, func() { s.Put(s.Get()) }); n != 0 {
		t.Errorf("a Get and Put of a kept buffer allocate %v times, want 0", n)
	}
}

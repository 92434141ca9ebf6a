package evloop

// Spares keeps the buffers that a loop's connections let go, for the next
// to take without allocating. It belongs to one loop, so it takes no lock.
// Set Size and Max before use.
type Spares struct {
	Size int // the length of a buffer Get makes
	Max  int // how many buffers are kept at the most
	free [][]byte
}

// Get returns a buffer kept, at its full capacity, or a new one of Size
// bytes.
func (s *Spares) Get() []byte {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return b
	}
	return make([]byte, s.Size)
}

// Put keeps b for a later Get, unless Max buffers are kept already. The
// caller must not use b afterwards.
func (s *Spares) Put(b []byte) {
	if len(s.free) < s.Max {
		s.free = append(s.free, b[:cap(b)])
	}
}

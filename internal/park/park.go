// Package park keeps idle connections without a goroutine each. A front
// door whose connections are served by goroutines over net.TCPConn hands a
// connection that has gone idle to a Watcher, lets its goroutine end and
// its buffers go back to their pools, and gets the connection back, to
// serve on a fresh goroutine, when its client sends again. The watcher also
// enforces the connections' idle deadlines and closes them all when it is
// stopped.
//
// A parked connection is its raw socket descriptor alone: Detach takes it
// out of Go's runtime (the net.TCPConn, its addresses and its poller entry
// are let go), the watcher keeps the descriptor and a small record in a
// slot of one slice, and Attach makes a net.TCPConn of it again when it is
// handed back. An idle connection then costs the proxy its socket and a
// few dozen bytes.
//
// On Linux the watcher is an epoll set of its own, waited on through the
// runtime's poller as the L4 event loop does, with one deadline heap for
// every parked connection instead of a timer each. Elsewhere New, Detach
// and Attach report errors.ErrUnsupported and connections stay with their
// goroutines.
package park

import (
	"time"
)

// heap is a min-heap of slot numbers by deadline. pos tells where a slot
// sits in it, so that a slot leaves it in O(log n) when its connection
// wakes before its deadline.
type heap struct {
	at    []int32 // slot numbers
	until func(int32) int64
	pos   func(int32) *int32
}

func (h *heap) less(i, j int) bool { return h.until(h.at[i]) < h.until(h.at[j]) }

func (h *heap) swap(i, j int) {
	h.at[i], h.at[j] = h.at[j], h.at[i]
	*h.pos(h.at[i]) = int32(i)
	*h.pos(h.at[j]) = int32(j)
}

func (h *heap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *heap) down(i int) {
	n := len(h.at)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

func (h *heap) push(slot int32) {
	h.at = append(h.at, slot)
	*h.pos(slot) = int32(len(h.at) - 1)
	h.up(len(h.at) - 1)
}

// remove takes the slot at index i out of the heap.
func (h *heap) remove(i int) {
	last := len(h.at) - 1
	if i != last {
		h.swap(i, last)
	}
	*h.pos(h.at[last]) = -1
	h.at = h.at[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
}

// front returns the slot with the earliest deadline, or -1.
func (h *heap) front() int32 {
	if len(h.at) == 0 {
		return -1
	}
	return h.at[0]
}

// monotonic returns t as nanoseconds since start on the monotonic clock,
// or 0 for the zero time (no deadline); a deadline already past is 1.
func monotonic(start, t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(start)), 1)
}

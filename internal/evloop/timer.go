package evloop

import "slices"

// Timer puts an owner (a connection of the handler's) on one of a loop's
// timeout queues: intrusive, so that arming and moving it allocates
// nothing. At is the loop time the timer was last armed; it is due at At
// plus its queue's timeout.
type Timer[S any] struct {
	Owner      *S
	At         int64
	prev, next *Timer[S]
	q          *Queue[S]
}

// Armed reports whether t is on a queue.
func (t *Timer[S]) Armed() bool { return t.q != nil }

// Queue returns the queue t is on, or nil.
func (t *Timer[S]) Queue() *Queue[S] { return t.q }

// Stop takes t off its queue, if it is on one.
func (t *Timer[S]) Stop() {
	if t.q == nil {
		return
	}
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next, t.q = nil, nil, nil
}

// Queue is the timers that share one timeout, D nanoseconds (0 for none:
// its timers are never due), kept in the order they were armed so that
// their deadlines come in list order. A handler keeps a queue per timeout
// in use (see Queues): a new timeout applies to the timers armed after it,
// and those armed under the old one stay in order in theirs.
type Queue[S any] struct {
	D    int64
	root Timer[S]
}

func (q *Queue[S]) init() { q.root.next, q.root.prev = &q.root, &q.root }

// Front returns the timer armed longest ago, or nil.
func (q *Queue[S]) Front() *Timer[S] {
	if q.root.next == &q.root {
		return nil
	}
	return q.root.next
}

// Arm puts t at the back of q, armed at now, taking it off any queue it
// was on.
func (q *Queue[S]) Arm(t *Timer[S], now int64) {
	t.Stop()
	t.At = now
	t.q = q
	t.prev, t.next = q.root.prev, &q.root
	q.root.prev.next = t
	q.root.prev = t
}

// Touch arms t again at now, when q has a timeout and t was not armed at
// now already: what an idle timeout does with each sign of life.
func (q *Queue[S]) Touch(t *Timer[S], now int64) {
	if q.D > 0 && t.At != now {
		q.Arm(t, now)
	}
}

// Due returns the owner of the timer at the front of q when it is due by
// now, or nil.
func (q *Queue[S]) Due(now int64) *S {
	t := q.Front()
	if t == nil || q.D == 0 || t.At+q.D > now {
		return nil
	}
	return t.Owner
}

// Each calls fn with the owner of every timer on q, front first; fn may
// stop the timer it is given.
func (q *Queue[S]) Each(fn func(*S)) {
	for t := q.Front(); t != nil; {
		next := t.next
		if next == &q.root {
			next = nil
		}
		fn(t.Owner)
		t = next
	}
}

// Queues are a handler's queues of one kind (dials, idle connections), one
// per timeout in use.
type Queues[S any] []*Queue[S]

// Of returns the queue of timeout d, adding one when there is none.
func (qs *Queues[S]) Of(d int64) *Queue[S] {
	for _, q := range *qs {
		if q.D == d {
			return q
		}
	}
	q := &Queue[S]{D: d}
	q.init()
	*qs = append(*qs, q)
	return q
}

// Prune drops the empty queues other than that of timeout keep, the one
// new timers use.
func (qs *Queues[S]) Prune(keep int64) {
	*qs = slices.DeleteFunc(*qs, func(q *Queue[S]) bool { return q.D != keep && q.Front() == nil })
}

// Next returns when the soonest timer of qs is due, in loop time, or -1
// when none is.
func (qs Queues[S]) Next() int64 {
	next := int64(-1)
	for _, q := range qs {
		if t := q.Front(); t != nil && q.D > 0 && (next < 0 || t.At+q.D < next) {
			next = t.At + q.D
		}
	}
	return next
}

// Each calls fn with the owner of every timer of qs; fn may stop the
// timer it is given.
func (qs Queues[S]) Each(fn func(*S)) {
	for _, q := range qs {
		q.Each(fn)
	}
}

// Soonest returns the sooner of two loop times, where -1 is never.
func Soonest(a, b int64) int64 {
	if a < 0 || (b >= 0 && b < a) {
		return b
	}
	return a
}

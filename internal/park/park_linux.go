//go:build linux

package park

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Watcher holds parked connections of type T (the caller's handle on each)
// and gives each back exactly once: to ready when its client sends
// something or hangs up, to expire when its deadline passes or the watcher
// stops. Serve runs it; it implements the Server of internal/accept.
type Watcher[T any] struct {
	ready, expire func(T)

	start   time.Time // the origin of the monotonic deadlines
	epfd    int
	poller  *os.File // epfd in the runtime's poller, which Serve sleeps on
	rc      syscall.RawConn
	events  []unix.EpollEvent
	pollFn  func(uintptr) bool // w.pollOnce
	found   int                // what the last pollOnce found
	pollErr error

	mu      sync.Mutex // guards what follows
	stopped bool
	waiting int64 // the poller's deadline (monotonic); 0: none; -1: to be set again
	slots   []slot[T]
	free    []int32 // slot numbers not in use
	heap    heap    // the slots in use that have a deadline
	parked  int
}

// slot is one parked connection.
type slot[T any] struct {
	x     T
	until int64 // monotonic deadline; 0 means none
	fd    int32
	gen   uint32 // tags each parking, so that a stale event is dropped
	pos   int32  // index in the heap, or -1
	inUse bool
}

// New returns a watcher that hands woken connections to ready and expired
// ones to expire; both run in Serve's goroutine (expire also in Stop's and
// Release's) and must not block.
func New[T any](ready, expire func(T)) (*Watcher[T], error) {
	w := &Watcher[T]{ready: ready, expire: expire, start: time.Now(), epfd: -1,
		events: make([]unix.EpollEvent, 128)}
	w.heap.until = func(i int32) int64 { return w.slots[i].until }
	w.heap.pos = func(i int32) *int32 { return &w.slots[i].pos }
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("park: epoll_create1: %w", err)
	}
	// An epoll descriptor polls as readable while it has events ready,
	// so the runtime's poller can wait for it like for a socket, and
	// Serve sleeps without holding a thread.
	if err := unix.SetNonblock(w.epfd, true); err != nil {
		unix.Close(w.epfd)
		return nil, fmt.Errorf("park: epoll: %w", err)
	}
	w.poller = os.NewFile(uintptr(w.epfd), "park-epoll")
	if w.rc, err = w.poller.SyscallConn(); err != nil {
		w.poller.Close()
		return nil, fmt.Errorf("park: epoll: %w", err)
	}
	w.pollFn = w.pollOnce
	return w, nil
}

// Park starts watching x, whose socket is fd, until its client sends
// something or until passes (the zero time: no deadline). The caller must
// keep fd open and leave it alone until x comes back through ready or
// expire. Park reports false, keeping nothing, once the watcher has
// stopped or when fd cannot be watched.
func (w *Watcher[T]) Park(fd int, until time.Time, x T) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	var i int32
	if n := len(w.free); n > 0 {
		i = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		w.slots = append(w.slots, slot[T]{})
		i = int32(len(w.slots) - 1)
	}
	s := &w.slots[i]
	s.gen++
	s.x, s.fd, s.pos, s.inUse = x, int32(fd), -1, true
	s.until = monotonic(w.start, until)
	// One-shot and level-triggered: input already waiting wakes it at
	// once, and one wake is all a parking gets.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: i, Pad: int32(s.gen)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		w.release(i)
		return false
	}
	w.parked++
	if s.until != 0 {
		w.heap.push(i)
		if w.waiting == 0 || s.until < w.waiting {
			w.setDeadline(s.until)
		}
	}
	return true
}

// Parked returns how many connections the watcher holds.
func (w *Watcher[T]) Parked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.parked
}

// setDeadline makes the poller's wait end at until (0: never). The caller
// holds mu.
func (w *Watcher[T]) setDeadline(until int64) {
	w.waiting = until
	var t time.Time
	if until != 0 {
		t = w.start.Add(time.Duration(until))
	}
	w.poller.SetReadDeadline(t)
}

// take ends the parking in slot i and returns its connection: out of the
// epoll set and the heap, the slot free for the next. The caller holds mu.
func (w *Watcher[T]) take(i int32) T {
	s := &w.slots[i]
	x := s.x
	ev := unix.EpollEvent{}
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(s.fd), &ev)
	if s.pos >= 0 {
		w.heap.remove(int(s.pos))
	}
	w.parked--
	w.release(i)
	return x
}

// release frees slot i. The caller holds mu.
func (w *Watcher[T]) release(i int32) {
	s := &w.slots[i]
	var zero T
	s.x, s.inUse, s.pos, s.until = zero, false, -1, 0
	w.free = append(w.free, i)
}

// Serve watches the parked connections until Stop, handing each on as it
// wakes or expires. On a failure of epoll it expires every connection and
// returns the error.
func (w *Watcher[T]) Serve() error {
	var woke, due []T
	for {
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return nil
		}
		now := int64(time.Since(w.start))
		for i := w.heap.front(); i >= 0 && w.slots[i].until <= now; i = w.heap.front() {
			due = append(due, w.take(i))
		}
		next := int64(0)
		if i := w.heap.front(); i >= 0 {
			next = w.slots[i].until
		}
		if next != w.waiting {
			w.setDeadline(next)
		}
		w.mu.Unlock()
		if len(due) > 0 {
			w.handOn(w.expire, due)
			due = due[:0]
			continue
		}

		n, err := w.wait()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.mu.Lock()
			w.waiting = -1 // set it again, even to the same instant
			w.mu.Unlock()
			continue
		}
		if err != nil {
			w.Stop(true)
			return fmt.Errorf("park: epoll_wait: %w", err)
		}
		w.mu.Lock()
		for _, ev := range w.events[:n] {
			i := ev.Fd
			if i < 0 || int(i) >= len(w.slots) {
				continue
			}
			if s := &w.slots[i]; s.inUse && s.gen == uint32(ev.Pad) {
				woke = append(woke, w.take(i))
			}
		}
		w.mu.Unlock()
		w.handOn(w.ready, woke)
		woke = woke[:0]
	}
}

// handOn gives each of xs to fn and clears xs.
func (w *Watcher[T]) handOn(fn func(T), xs []T) {
	var zero T
	for i, x := range xs {
		fn(x)
		xs[i] = zero
	}
}

// wait returns how many events are ready, waiting for the first until the
// poller's deadline.
func (w *Watcher[T]) wait() (int, error) {
	w.found, w.pollErr = 0, nil
	if err := w.rc.Read(w.pollFn); err != nil {
		return 0, err
	}
	return w.found, w.pollErr
}

// pollOnce takes the events ready now; it reports false, to wait on, when
// there are none. The runtime's poller calls it from Serve's wait.
func (w *Watcher[T]) pollOnce(uintptr) bool {
	n, err := unix.EpollWait(w.epfd, w.events, 0)
	switch {
	case errors.Is(err, unix.EINTR):
		return false
	case err != nil:
		w.pollErr = err
		return true
	}
	w.found = n
	return n > 0
}

// Stop expires every parked connection, refuses any more, and ends Serve.
// abort makes no difference: a parked connection is idle, and a stopping
// front door closes its idle connections at once. It does not block.
func (w *Watcher[T]) Stop(abort bool) {
	w.mu.Lock()
	w.stopped = true
	var all []T
	for i := range w.slots {
		if w.slots[i].inUse {
			all = append(all, w.take(int32(i)))
		}
	}
	// A deadline in the past ends the wait in progress, or the next.
	w.waiting = 1
	w.poller.SetReadDeadline(time.Unix(1, 0))
	w.mu.Unlock()
	w.handOn(w.expire, all)
}

// Release stops the watcher if Stop has not, and closes its epoll set.
// Call it once Serve has returned, or instead of Serve.
func (w *Watcher[T]) Release() {
	w.Stop(true)
	w.poller.Close()
}

//go:build linux

package park

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Watcher holds parked connections, each a socket descriptor and a record
// of type T (what the caller needs to serve it again), and gives each back
// exactly once: its descriptor and record to ready when its client sends
// something or hangs up, its record to expire, the descriptor closed, when
// its deadline passes or the watcher stops. Serve runs it; it implements
// the Server of internal/accept.
type Watcher[T any] struct {
	ready  func(fd int, x T)
	expire func(x T)

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

// slot is one parked connection: its descriptor and record, stored in the
// watcher's one slice of slots, so that parking allocates nothing per
// connection. With a record free of pointers, the collector does not scan
// the slots either.
type slot[T any] struct {
	until int64 // monotonic deadline; 0 means none
	fd    int32
	gen   uint32 // tags each parking, so that a stale event is dropped
	pos   int32  // index in the heap, or -1
	inUse bool
	x     T
}

// New returns a watcher that hands woken connections to ready and expired
// ones to expire; both run in Serve's goroutine (expire also in Stop's and
// Release's) and must not block.
func New[T any](ready func(fd int, x T), expire func(x T)) (*Watcher[T], error) {
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

// Park starts watching the socket fd, with its record x, until its client
// sends something or until passes (the zero time: no deadline). From then
// on the watcher owns fd: it hands it to ready, or closes it before it
// hands x to expire. Park reports false, keeping nothing (fd stays the
// caller's), once the watcher has stopped or when fd cannot be watched.
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

// ParkConn parks c's socket by its raw descriptor (see Detach): c is
// closed, and the socket is the watcher's as with Park. When it reports
// false, nothing is kept and the socket is closed, or, when it could not be
// detached, c is left open for the caller to close.
func (w *Watcher[T]) ParkConn(c *net.TCPConn, until time.Time, x T) bool {
	fd, err := Detach(c)
	if err != nil {
		return false
	}
	if !w.Park(fd, until, x) {
		unix.Close(fd)
		return false
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

// parking is one connection taken out of the watcher, on its way to ready
// or expire.
type parking[T any] struct {
	fd int
	x  T
}

// take ends the parking in slot i and returns its connection: out of the
// epoll set and the heap, the slot free for the next. The caller holds mu.
func (w *Watcher[T]) take(i int32) parking[T] {
	s := &w.slots[i]
	p := parking[T]{fd: int(s.fd), x: s.x}
	// The descriptor leaves the set explicitly: a socket that ready
	// duplicates would otherwise stay in it after fd is closed.
	ev := unix.EpollEvent{}
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, p.fd, &ev)
	if s.pos >= 0 {
		w.heap.remove(int(s.pos))
	}
	w.parked--
	w.release(i)
	return p
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
	var woke, due []parking[T]
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
			w.expireAll(due)
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
		var zero parking[T]
		for i, p := range woke {
			w.ready(p.fd, p.x)
			woke[i] = zero
		}
		woke = woke[:0]
	}
}

// expireAll closes the descriptor of each of ps and hands its record to
// expire.
func (w *Watcher[T]) expireAll(ps []parking[T]) {
	var zero parking[T]
	for i, p := range ps {
		unix.Close(p.fd)
		w.expire(p.x)
		ps[i] = zero
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
	var all []parking[T]
	for i := range w.slots {
		if w.slots[i].inUse {
			all = append(all, w.take(int32(i)))
		}
	}
	// A deadline in the past ends the wait in progress, or the next.
	w.waiting = 1
	w.poller.SetReadDeadline(time.Unix(1, 0))
	w.mu.Unlock()
	w.expireAll(all)
}

// Release stops the watcher if Stop has not, and closes its epoll set.
// Call it once Serve has returned, or instead of Serve.
func (w *Watcher[T]) Release() {
	w.Stop(true)
	w.poller.Close()
}

// Detach takes c's socket out of Go's runtime: it returns a duplicate of
// c's descriptor and closes c, which gives c's poller entry back to the
// runtime and lets the collector have its netFD and addresses, while the
// socket stays open on the duplicate, untouched (no FIN, no reset, unread
// input kept). A connection parked through its raw descriptor costs no
// more than that descriptor and a watcher slot. On failure c is left as
// it was.
func Detach(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("park: detach: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("park: detach: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("park: detach: dup: %w", derr)
	}
	c.Close()
	return fd, nil
}

// Attach makes a net.TCPConn of the socket fd, registered with Go's
// runtime again, and closes fd (the connection gets a duplicate of it).
// It fails, fd closed all the same, when the socket is no longer a
// connected TCP socket, such as when its client reset it while parked.
func Attach(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "parked")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("park: attach: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if a, isTCP := c.RemoteAddr().(*net.TCPAddr); !ok || !isTCP || a == nil {
		c.Close()
		return nil, fmt.Errorf("park: attach: %w", unix.ENOTCONN)
	}
	return tc, nil
}

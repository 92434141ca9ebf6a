//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/accept"
)

// Handler is a front door's side of a loop: what it does with the
// connections the loop accepts and with the events of the sockets it
// registered. The loop calls it from its own goroutine only, so the
// handler's state needs no lock.
type Handler[S any] interface {
	// Accepted begins serving a connection the loop accepted: fd is a
	// non-blocking socket, which the handler now owns.
	Accepted(fd int, peer netip.AddrPort)
	// Event acts on what an event told about ep, whose Readable,
	// Writable and RDHUP the loop has updated; events are the epoll bits.
	Event(ep *Endpoint[S], events uint32)
	// Work runs once per wake after the events: the work the handler
	// carried over from its last turn, and what other goroutines asked of
	// it since.
	Work()
	// Expire acts on the handler's timers due by the loop's Now, and
	// returns when the next is due, in loop time (-1 for none), and
	// whether work was carried over that must run without waiting.
	Expire() (next int64, busy bool)
	// Open returns how many connections the handler serves: a retired or
	// stopped loop ends once it is zero.
	Open() int
	// CloseAll closes every connection at once, and every socket the
	// handler still holds: the loop calls it as it ends, however it ends.
	CloseAll()
}

// Endpoint is one socket registered in a loop, with what its events have
// told since it was last drained. Owner is the handler's connection that
// the socket belongs to.
type Endpoint[S any] struct {
	FD       int
	Owner    *S
	Readable bool // may have data (or an end) to read
	Writable bool // may take more bytes
	RDHUP    bool // the peer has sent its FIN (or the socket hung up)
	gen      uint32
}

// Reset empties ep for the socket fd (-1 for none) of owner.
func (ep *Endpoint[S]) Reset(fd int, owner *S) { *ep = Endpoint[S]{FD: fd, Owner: owner} }

// ErrStopped is what Serve returns when Stop ended the loop.
var ErrStopped = errors.New("event loop stopped")

// Loop is one event loop: a goroutine (the one running Serve) that owns
// a duplicate of a listening socket, an epoll set, and every socket its
// handler registers. Other goroutines reach it only through Stop, Retire,
// Wake and Accepted.
//
// The loop sleeps in the runtime's poller, not in epoll_wait: a goroutine
// blocked in a system call makes the runtime hand its processor to
// another thread and take it back on return, which on one core costs more
// than the proxying. Its system calls are raw (see sys_linux.go).
type Loop[S any] struct {
	h    Handler[S]
	name string       // the listener's address, for errors and logs
	log  *slog.Logger // accept failures

	epfd   int
	lnfd   int // -1 once closed
	wakefd int
	events []unix.EpollEvent

	poller   *os.File
	pollerRC syscall.RawConn
	pollFn   func(uintptr) bool // l.pollOnce
	ready0   int                // what the last pollOnce found
	pollErr  error
	deadline int64 // the poller's read deadline, as loop time; 0 before the first

	eps []*Endpoint[S] // by descriptor
	gen uint32         // tags each registration, so stale events are dropped

	start    time.Time
	now      int64 // nanoseconds since start, read once per wake
	lnReady  bool  // the listener may have connections to accept
	acceptAt int64 // accepting resumes then after a failed accept
	backoff  accept.Backoff
	next     int64 // the handler's next timer, -1 for none
	busy     bool  // the handler carried work over
	accepted atomic.Uint64

	stopping, aborting, retiring atomic.Bool
	// doneAccepting is closed by the loop once it will accept no more
	// connections; notAccepting says it is closed, and is the loop's alone.
	doneAccepting chan struct{}
	notAccepting  bool
}

const (
	// acceptBatch bounds the connections accepted per wake, so that a
	// flood of new connections cannot starve the established ones.
	acceptBatch = 64
	// MaxWait bounds how long the loop sleeps, in milliseconds, even with
	// no timer due: an edge that never came (a lost wake-up, a connection
	// announced to nobody) then costs at most this long, and the loop
	// never parks forever.
	MaxWait = 1000
)

// New returns a loop for h with its own duplicate of the listening socket
// lnfd (the caller keeps lnfd), named by the listener's address name, and
// logging accept failures to log. The caller sets the handler with
// SetHandler before Serve; Release closes what New opened.
//
// The listener is registered with EPOLLEXCLUSIVE, which holds the kernel
// to waking one loop per new connection only where a loop sleeps in
// epoll_wait itself. The loops sleep in the runtime's poller instead, so a
// new connection wakes every idle loop; those that lose the race find no
// event (the kernel checks the socket again before it reports an edge) and
// sleep again, at the cost of a wake-up and an empty epoll_wait each.
func New[S any](lnfd int, name string, log *slog.Logger) (*Loop[S], error) {
	l := &Loop[S]{
		name:          name,
		log:           log,
		epfd:          -1,
		lnfd:          -1,
		wakefd:        -1,
		events:        make([]unix.EpollEvent, 256),
		start:         time.Now(),
		lnReady:       true,
		next:          -1,
		doneAccepting: make(chan struct{}),
	}
	if err := l.open(lnfd); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// SetHandler makes h the loop's handler; it must be called before Serve.
func (l *Loop[S]) SetHandler(h Handler[S]) { l.h = h }

func (l *Loop[S]) open(lnfd int) error {
	var err error
	if l.lnfd, err = unix.FcntlInt(uintptr(lnfd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
		return fmt.Errorf("duplicate listener: %w", err)
	}
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	for fd, flags := range map[int]uint32{l.lnfd: unix.EPOLLEXCLUSIVE, l.wakefd: 0} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET | flags, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	// An epoll descriptor polls as readable while it has events ready, so
	// the runtime's poller can wait for it like for a socket.
	if err := unix.SetNonblock(l.epfd, true); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	l.poller = os.NewFile(uintptr(l.epfd), "evloop-epoll")
	if l.pollerRC, err = l.poller.SyscallConn(); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	l.pollFn = l.pollOnce
	return nil
}

// TakeListener returns a duplicate of ln's socket and closes ln: the
// runtime's poller then forgets the socket, and only the event loops are
// woken by new connections.
func TakeListener(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(lfd uintptr) {
		fd, derr = unix.FcntlInt(lfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("duplicate listener: %w", derr)
	}
	ln.Close()
	return fd, nil
}

// Now returns the loop's clock, nanoseconds since it was made, as read
// once per wake.
func (l *Loop[S]) Now() int64 { return l.now }

// Time returns the loop's clock, as read once per wake, as a time of day.
func (l *Loop[S]) Time() time.Time { return l.start.Add(time.Duration(l.now)) }

// Clock reads the loop's clock afresh.
func (l *Loop[S]) Clock() int64 { return int64(time.Since(l.start)) }

// ListenerFD returns the loop's duplicate of the listening socket, -1
// once closed. Only the loop's goroutine may read it while the loop
// serves.
func (l *Loop[S]) ListenerFD() int { return l.lnfd }

// Stopping reports whether Stop has asked the loop to end: a handler
// then closes its idle connections and lets the busy ones finish.
func (l *Loop[S]) Stopping() bool { return l.stopping.Load() }

// Accepted returns how many connections the loop has accepted.
func (l *Loop[S]) Accepted() uint64 { return l.accepted.Load() }

// Name returns the address of the listener the loop serves.
func (l *Loop[S]) Name() string { return l.name }

// wait returns the ready events, waiting up to timeout milliseconds (as
// timeout computes it: at most MaxWait) for the first.
func (l *Loop[S]) wait(timeout int) (int, error) {
	if timeout == 0 {
		return l.poll()
	}
	until := l.now + int64(timeout)*int64(time.Millisecond) // in loop time
	// With no timer due before the cap, a deadline still ahead will do
	// (every deadline is at most MaxWait away): waking a little early is
	// harmless, and moving the poller's deadline on every wake is not.
	if timeout == MaxWait && l.deadline > l.now {
		until = l.deadline
	}
	if until != l.deadline {
		l.deadline = until
		l.poller.SetReadDeadline(l.start.Add(time.Duration(until)))
	}
	l.ready0, l.pollErr = 0, nil
	rerr := l.pollerRC.Read(l.pollFn)
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return l.ready0, l.pollErr
}

// pollOnce is what the runtime's poller calls while the loop waits: it
// reports true once events are ready (or polling failed), and false to
// wait on. Bound once as pollFn, so that a wait allocates nothing.
func (l *Loop[S]) pollOnce(uintptr) bool {
	l.ready0, l.pollErr = l.poll()
	return l.ready0 != 0 || l.pollErr != nil
}

// Wake makes the loop return from its wait and look at its requests.
func (l *Loop[S]) Wake() {
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

// poll returns the events ready now.
func (l *Loop[S]) poll() (int, error) {
	n, e := sysPoll(l.epfd, l.events)
	if e == unix.EINTR {
		return 0, nil
	} else if e != 0 {
		return 0, e
	}
	return n, nil
}

// Serve runs the loop until Stop ends it (returning ErrStopped), Retire
// has closed its listener and its handler's connections have ended
// (returning an error wrapping net.ErrClosed), or it fails.
func (l *Loop[S]) Serve() error {
	defer l.stopAccepting()
	for {
		timeout := l.timeout()
		n, werr := l.wait(timeout)
		if werr != nil {
			l.h.CloseAll()
			return fmt.Errorf("epoll_wait: %w", werr)
		}
		if n == 0 && timeout == MaxWait {
			// Look at the listener again: a connection whose edge was
			// lost then waits at most MaxWait, not forever.
			l.lnReady = true
		}
		l.now = int64(time.Since(l.start))
		for i := range n {
			ev := &l.events[i]
			switch fd := int(ev.Fd); {
			case fd == l.wakefd && ev.Pad == 0:
				var b [8]byte
				Read(l.wakefd, b[:])
			case fd == l.lnfd && ev.Pad == 0:
				l.lnReady = true
			default:
				l.event(fd, uint32(ev.Pad), ev.Events)
			}
		}
		l.h.Work()
		if l.aborting.Load() {
			l.h.CloseAll()
			return ErrStopped
		}
		if (l.stopping.Load() || l.retiring.Load()) && l.lnfd >= 0 {
			Close(l.lnfd)
			l.lnfd = -1
			l.stopAccepting()
		}
		if l.lnfd >= 0 && l.lnReady && l.now >= l.acceptAt {
			if err := l.accept(); err != nil {
				l.h.CloseAll()
				return err
			}
		}
		l.next, l.busy = l.h.Expire()
		if l.lnfd < 0 && l.h.Open() == 0 {
			l.h.CloseAll()
			if !l.stopping.Load() {
				return fmt.Errorf("%s: %w", l.name, net.ErrClosed)
			}
			return ErrStopped
		}
	}
}

// event folds one epoll event into its endpoint's state and hands it to
// the handler, unless the descriptor was closed (and perhaps reused) since
// it was registered.
func (l *Loop[S]) event(fd int, gen uint32, ev uint32) {
	if fd >= len(l.eps) || l.eps[fd] == nil || l.eps[fd].gen != gen {
		return
	}
	ep := l.eps[fd]
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ep.Readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		ep.RDHUP = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ep.Writable = true
	}
	l.h.Event(ep, ev)
}

// timeout returns how long the wait may sleep, in milliseconds: until the
// handler's next timer or the accept retry, and at most MaxWait.
func (l *Loop[S]) timeout() int {
	if l.lnfd >= 0 && l.lnReady && l.acceptAt <= l.now || l.busy {
		return 0 // an accept batch or the handler's work was cut short
	}
	next := l.next
	if l.lnfd >= 0 && l.lnReady {
		next = Soonest(next, l.acceptAt)
	}
	if next < 0 {
		return MaxWait
	}
	// Round up: waking a little late is harmless, early is a wasted wake.
	now := int64(time.Since(l.start))
	return int(min(max(next-now+int64(time.Millisecond)-1, 0)/int64(time.Millisecond), MaxWait))
}

// accept takes up to acceptBatch connections off the listener and hands
// each to the handler.
func (l *Loop[S]) accept() error {
	for range acceptBatch {
		fd, peer, err := sysAccept(l.lnfd)
		switch err {
		case 0:
			l.accepted.Add(1) // written by this loop alone: uncontended
			l.backoff.Reset()
			l.h.Accepted(fd, peer)
			continue
		case unix.EAGAIN:
			l.lnReady = false
			return nil
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO, unix.EPERM:
			continue // that connection is gone; the next may be fine
		case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
			return fmt.Errorf("accept: %w", err)
		}
		// Out of descriptors or memory: retry later, and say so.
		l.acceptAt = l.now + int64(l.backoff.Failed(l.log, l.name, err))
		return nil
	}
	return nil // more may be waiting: lnReady stays true
}

// Stop asks the loop to stop accepting and end once its handler's
// connections have, or with abort to close them all and end now, and
// wakes it.
func (l *Loop[S]) Stop(abort bool) {
	if abort {
		l.aborting.Store(true)
	}
	l.stopping.Store(true)
	l.Wake()
}

// Retire asks the loop to close its listener and end once its handler's
// connections have, and wakes it; the loop closes the channel returned
// once it will accept no more.
func (l *Loop[S]) Retire() <-chan struct{} {
	l.retiring.Store(true)
	l.Wake()
	return l.doneAccepting
}

// stopAccepting tells Retire's caller that the loop accepts no more; the
// loop calls it as it closes its listener and as it ends.
func (l *Loop[S]) stopAccepting() {
	if !l.notAccepting {
		l.notAccepting = true
		close(l.doneAccepting)
	}
}

// Register adds ep's socket to the epoll set, edge-triggered, for input,
// output and the peer's FIN, tagged with a new generation.
func (l *Loop[S]) Register(ep *Endpoint[S]) unix.Errno {
	if l.gen++; l.gen == 0 {
		l.gen = 1 // 0 marks the listener and the wake-up descriptor
	}
	ep.gen = l.gen
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(ep.FD),
		Pad:    int32(ep.gen),
	}
	if err := sysEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ep.FD, &ev); err != 0 {
		return err
	}
	for ep.FD >= len(l.eps) {
		l.eps = append(l.eps, make([]*Endpoint[S], max(len(l.eps), 64))...)
	}
	l.eps[ep.FD] = ep
	return 0
}

// Detach drops ep from the loop without closing its socket, and returns
// the socket (-1 for none): what a handler does to hand a connection over
// to code outside the loop. The socket leaves the epoll set.
func (l *Loop[S]) Detach(ep *Endpoint[S]) int {
	fd := ep.FD
	if fd < 0 {
		return -1
	}
	if fd < len(l.eps) && l.eps[fd] == ep {
		l.eps[fd] = nil
		sysEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	ep.Reset(-1, ep.Owner)
	return fd
}

// Move makes dst the endpoint of src's socket, with what src's events
// have told, and empties src: what a handler does to pass a socket from
// one of its connections to another without closing it. dst keeps its
// Owner.
func (l *Loop[S]) Move(dst, src *Endpoint[S]) {
	owner := dst.Owner
	*dst = *src
	dst.Owner = owner
	if src.FD >= 0 && src.FD < len(l.eps) && l.eps[src.FD] == src {
		l.eps[src.FD] = dst
	}
	src.Reset(-1, src.Owner)
}

// Forget closes ep's socket, which also drops it from the epoll set.
func (l *Loop[S]) Forget(ep *Endpoint[S]) {
	if ep.FD < 0 {
		return
	}
	if ep.FD < len(l.eps) && l.eps[ep.FD] == ep {
		l.eps[ep.FD] = nil
	}
	Close(ep.FD)
	ep.Reset(-1, ep.Owner)
}

// Release closes the loop's own descriptors once it has stopped serving.
func (l *Loop[S]) Release() {
	if l.poller != nil {
		l.poller.Close() // and with it epfd
		l.poller = nil
		l.epfd = -1
	}
	for _, fd := range []*int{&l.lnfd, &l.wakefd, &l.epfd} {
		if *fd >= 0 {
			Close(*fd)
			*fd = -1
		}
	}
}

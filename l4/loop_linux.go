//go:build linux

package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
)

// eventLoop serves the connections it accepts on a listener from a single
// goroutine, the way HAProxy and nginx do, one loop per core (see
// Proxy.Loops) accepting from the listener's one socket: it owns the client
// and backend sockets as raw non-blocking descriptors in its own
// edge-triggered epoll set, and moves bytes with read/write for small
// messages and splice(2) through a pipe once a direction carries bulk data.
//
// Compared with a goroutine per connection over net.TCPConn, a connection
// costs no goroutine, no stack growth and about a quarter fewer system
// calls (about 18 against 24 for a short connection, as many as HAProxy
// makes): the peer's address comes with accept, a connect is known to have
// succeeded from its writable event, close drops the descriptor from the
// epoll set by itself, and a socket is read only when it has signalled
// data, so no read is made that is known to find nothing.
//
// The loop's state belongs to its goroutine alone; other goroutines reach
// it only through its stopping, aborting, closing and retiring flags and
// wake, and read its accepted count. What the loops of a proxy share (the
// affinity table, the pool and its backends' counters, Counts) is sharded
// or atomic: no loop waits for another. Nor does it wait on anything but
// epoll: its log lines (and those of passive health) are handed to the
// proxy's log writer, never written in the loop.
type eventLoop struct {
	p  *Proxy
	ln net.Listener // what Serve was given, for StopAccepting

	epfd   int
	lnfd   int // -1 once closed
	lnAddr string
	wakefd int
	events []unix.EpollEvent
	// poller is epfd as a file in the runtime's poller. The loop sleeps
	// there, not in epoll_wait: a goroutine blocked in a system call
	// makes the runtime hand its processor to another thread and take it
	// back on return, which on one core costs more than the proxying.
	poller   *os.File
	pollerRC syscall.RawConn
	pollFn   func(uintptr) bool // l.pollOnce
	ready0   int                // what the last pollOnce found
	pollErr  error
	deadline int64 // the poller's read deadline, as loop time; 0 before the first

	eps      []*endpoint // by descriptor
	gen      uint32      // tags each registration, so stale events are dropped
	sessions int         // open sessions
	free     []*session
	bufs     [][]byte                     // spare pending-data buffers
	pipes    [][2]int                     // spare empty pipes
	scratch  []byte                       // every read of the small-message path lands here
	targets  map[*backend.Backend]*target // see target
	reg      *backend.Registry            // the pool targets was last pruned for

	ready      []readyRef // sessions whose pump left work, run next
	spare      []readyRef // the other ready buffer, swapped each round
	serial     uint64
	connecting queues // sessions dialling, by connect timeout
	active     queues // relaying sessions, by idle timeout

	start    time.Time
	now      int64 // nanoseconds since start, read once per wake
	lnReady  bool  // the listener may have connections to accept
	acceptAt int64 // accepting resumes then after a failed accept
	backoff  accept.Backoff
	// accepted counts the connections this loop accepted: how the
	// accepts spread over the loops (see Proxy.LoopAccepts, which knows
	// the loop by its index among its listener's loops).
	accepted atomic.Uint64
	index    int

	// stopping asks the loop to stop accepting and end once its sessions
	// have, aborting to close every session and end now: see Stop.
	stopping, aborting atomic.Bool

	// closing asks the loop to close the sessions of the backends named
	// in closeIDs (guarded by p.mu): see Proxy.CloseConns.
	closing  atomic.Bool
	closeIDs []string
	// retiring asks the loop to close its listener and end once its
	// sessions have: see Proxy.StopAccepting.
	retiring atomic.Bool
	// doneAccepting is closed by the loop once it will accept no more
	// connections: it has closed its listener, or ended. StopAccepting
	// waits for it. notAccepting says it is closed; the loop's alone.
	doneAccepting chan struct{}
	notAccepting  bool
}

const (
	// bufSize is the small-message buffer. A read that fills it marks the
	// direction as bulk, which then splices.
	bufSize = 16 << 10
	// pipeSize is how much one splice moves at most.
	pipeSize = 64 << 10
	// acceptBatch bounds the connections accepted per wake, so that a
	// flood of new connections cannot starve the established ones.
	acceptBatch = 64
	// spares bounds the buffers and pipes kept for reuse.
	spares = 64
)

// newEventLoops returns n event loops serving ln together, or nil and the
// reason when ln or the backends need the portable engine: a listener
// that is not TCP, or a backend address that is not an IP literal (a name
// is resolved by each dial of the portable engine, and the loop must never
// block on DNS).
//
// The loops share ln's one socket: each holds a duplicate of it in its own
// epoll set, registered with EPOLLEXCLUSIVE, and accepts from the one
// queue. A listener handed over by an upgrade, or retired by a reload that
// moves the listen address, is then still one socket whose queue no loop
// can strand (see the README's "Every core").
func (p *Proxy) newEventLoops(ln net.Listener, n int) ([]*eventLoop, string, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Sprintf("the listener is a %T, not a TCP listener", ln), nil
	}
	reg := p.Pool.Registry()
	for _, b := range reg.All() {
		if newTargetFor(b.Address()) == nil {
			return nil, fmt.Sprintf("backend %s has address %q, not an IP literal, and the event loop never resolves names", b.ID, b.Address()), nil
		}
	}
	lnfd, err := takeListener(tl)
	if err != nil {
		return nil, "", fmt.Errorf("l4: event loop: %w", err)
	}
	defer sysClose(lnfd) // each loop holds a duplicate of its own
	loops := make([]*eventLoop, 0, n)
	for i := range n {
		l := &eventLoop{
			index:   i,
			p:       p,
			ln:      ln,
			epfd:    -1,
			lnfd:    -1,
			wakefd:  -1,
			lnAddr:  tl.Addr().String(),
			events:  make([]unix.EpollEvent, 256),
			scratch: make([]byte, bufSize),
			targets: make(map[*backend.Backend]*target, reg.Len()),
			reg:     reg,
			start:   time.Now(),
			lnReady: true,

			doneAccepting: make(chan struct{}),
		}
		for _, b := range reg.All() {
			l.targets[b] = newTargetFor(b.Address())
		}
		loops = append(loops, l)
		if err := l.open(lnfd); err != nil {
			for _, l := range loops {
				l.closeFDs()
			}
			return nil, "", fmt.Errorf("l4: event loop: %w", err)
		}
	}
	return loops, "", nil
}

// takeListener returns a duplicate of ln's socket and closes ln: the
// runtime's poller then forgets the socket, and only the event loops are
// woken by new connections.
func takeListener(ln *net.TCPListener) (int, error) {
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

// errNotLiteral is the dial error of a backend that a reload gave a host
// name while an event loop serves: the loop dials IP literals only.
var errNotLiteral = errors.New("address is not an IP literal, which the event loop needs (a restart serves names)")

// target returns b's address in the form connect takes, built on first use
// (b joined with a reload) and again when a reload changed b's address. It
// returns nil for an address that is not an IP literal. On a miss after a
// reload it also forgets the targets of backends the reload removed.
func (l *eventLoop) target(b *backend.Backend) *target {
	addr := b.Address()
	if t := l.targets[b]; t != nil && t.address == addr {
		return t
	}
	if reg := l.p.Pool.Registry(); reg != l.reg {
		l.reg = reg
		for old := range l.targets {
			if reg.Get(old.ID) != old {
				delete(l.targets, old)
			}
		}
	}
	t := newTargetFor(addr)
	if t != nil {
		l.targets[b] = t
	}
	return t
}

// newTargetFor returns the target of addr, or nil when addr is not an IP
// literal with a port (or carries an IPv6 zone).
func newTargetFor(addr string) *target {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
	}
	t := newTarget(ap)
	t.address = addr
	return t
}

// open gives the loop its own duplicate of the listening socket lnfd, and
// creates its epoll set and wake-up descriptor.
//
// The listener is registered with EPOLLEXCLUSIVE, which holds the kernel to
// waking one loop per new connection only where a loop sleeps in
// epoll_wait itself. The loops sleep in the runtime's poller instead, so a
// new connection wakes every idle loop; those that lose the race find no
// event (the kernel checks the socket again before it reports an edge) and
// sleep again, at the cost of a wake-up and an empty epoll_wait each.
func (l *eventLoop) open(lnfd int) error {
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
	l.poller = os.NewFile(uintptr(l.epfd), "l4-epoll")
	if l.pollerRC, err = l.poller.SyscallConn(); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	l.pollFn = l.pollOnce
	return nil
}

// wait returns the ready events, waiting up to timeout milliseconds (as
// timeout computes it: at most maxWait) for the first.
func (l *eventLoop) wait(timeout int) (int, error) {
	if timeout == 0 {
		return l.poll()
	}
	until := l.now + int64(timeout)*int64(time.Millisecond) // in loop time
	// With no timer due before the cap, a deadline still ahead will do
	// (every deadline is at most maxWait away): waking a little early is
	// harmless, and moving the poller's deadline on every wake is not.
	if timeout == maxWait && l.deadline > l.now {
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
func (l *eventLoop) pollOnce(uintptr) bool {
	l.ready0, l.pollErr = l.poll()
	return l.ready0 != 0 || l.pollErr != nil
}

// wake makes the loop return from epoll_wait and look at its flags.
func (l *eventLoop) wake() {
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

// poll returns the events ready now.
func (l *eventLoop) poll() (int, error) {
	n, e := sysPoll(l.epfd, l.events)
	if e == unix.EINTR {
		return 0, nil
	} else if e != 0 {
		return 0, e
	}
	return n, nil
}

// Serve serves until the proxy is shut down (returning ErrProxyClosed),
// the loop is retired and its sessions have ended (returning
// net.ErrClosed), or the loop fails. The proxy's accept loop runs it (see
// accept.Loop.Run), stops it through Stop and releases its descriptors
// through Release once it has left the proxy's set, so that no wake ever
// writes to a closed descriptor.
func (l *eventLoop) Serve() (err error) {
	l.p.addLoop(l)
	defer l.p.removeLoop(l)
	defer l.stopAccepting()
	for {
		timeout := l.timeout()
		n, werr := l.wait(timeout)
		if werr != nil {
			l.closeAll()
			return fmt.Errorf("l4: epoll_wait: %w", werr)
		}
		if n == 0 && timeout == maxWait {
			// Look at the listener again: a connection whose edge was
			// lost then waits at most maxWait, not forever.
			l.lnReady = true
		}
		l.now = int64(time.Since(l.start))
		for i := range n {
			ev := &l.events[i]
			switch fd := int(ev.Fd); {
			case fd == l.wakefd && ev.Pad == 0:
				var b [8]byte
				sysRead(l.wakefd, b[:])
			case fd == l.lnfd && ev.Pad == 0:
				l.lnReady = true
			default:
				l.event(fd, uint32(ev.Pad), ev.Events)
			}
		}
		l.runReady()
		if l.closing.Load() {
			l.closeConns()
		}
		if l.aborting.Load() {
			l.closeAll()
			return ErrProxyClosed
		}
		if (l.stopping.Load() || l.retiring.Load()) && l.lnfd >= 0 {
			sysClose(l.lnfd)
			l.lnfd = -1
			l.stopAccepting()
		}
		if l.lnfd >= 0 && l.lnReady && l.now >= l.acceptAt {
			if err := l.accept(); err != nil {
				l.closeAll()
				return err
			}
		}
		l.expire()
		if l.lnfd < 0 && l.sessions == 0 {
			if !l.stopping.Load() {
				return fmt.Errorf("l4: %s: %w", l.lnAddr, net.ErrClosed)
			}
			return ErrProxyClosed
		}
	}
}

// runReady gives the sessions whose pump ran out of budget another turn.
func (l *eventLoop) runReady() {
	if len(l.ready) == 0 {
		return
	}
	ready := l.ready
	l.ready = l.spare[:0]
	for _, r := range ready {
		if r.s.serial == r.serial && r.s.queued {
			r.s.queued = false
			l.relay(r.s)
		}
	}
	clear(ready)
	l.spare = ready[:0]
}

// maxWait bounds how long the loop sleeps, in milliseconds, even with no
// timer due: an edge that never came (a lost wake-up, a connection
// announced to nobody) then costs at most this long, and the loop never
// parks forever.
const maxWait = 1000

// timeout returns how long epoll_wait may sleep, in milliseconds: until
// the next connect deadline, idle deadline or accept retry, and at most
// maxWait.
func (l *eventLoop) timeout() int {
	if l.lnfd >= 0 && l.lnReady && l.acceptAt <= l.now || len(l.ready) > 0 {
		return 0 // an accept batch or a pump was cut short
	}
	next := int64(-1)
	soonest := func(t int64) {
		if next < 0 || t < next {
			next = t
		}
	}
	for _, q := range l.connecting {
		if s := q.front(); s != nil {
			soonest(s.deadline)
		}
	}
	for _, q := range l.active {
		if s := q.front(); s != nil && q.d > 0 {
			soonest(s.last + q.d)
		}
	}
	if l.lnfd >= 0 && l.lnReady {
		soonest(l.acceptAt)
	}
	if next < 0 {
		return maxWait
	}
	// Round up: waking a little late is harmless, early is a wasted wake.
	now := int64(time.Since(l.start))
	return int(min(max(next-now+int64(time.Millisecond)-1, 0)/int64(time.Millisecond), maxWait))
}

// accept takes up to acceptBatch connections off the listener and starts
// each one's dial.
func (l *eventLoop) accept() error {
	for range acceptBatch {
		fd, peer, err := sysAccept(l.lnfd)
		switch err {
		case 0:
			l.accepted.Add(1) // written by this loop alone: uncontended
			l.backoff.Reset()
			l.startSession(fd, peer)
			continue
		case unix.EAGAIN:
			l.lnReady = false
			return nil
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO, unix.EPERM:
			continue // that connection is gone; the next may be fine
		case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
			return fmt.Errorf("l4: accept: %w", err)
		}
		// Out of descriptors or memory: retry later, and say so.
		l.acceptAt = l.now + int64(l.backoff.Failed(l.p.loopLog, l.lnAddr, err))
		return nil
	}
	return nil // more may be waiting: lnReady stays true
}

// expire fails over dials past their connect timeout and closes sessions
// idle for their idle timeout, then lets go of the queues of timeouts that
// are no longer in use.
func (l *eventLoop) expire() {
	for _, q := range l.connecting {
		for s := q.front(); s != nil && s.deadline <= l.now; s = q.front() {
			l.dialFailed(s, errConnectTimeout)
		}
	}
	for _, q := range l.active {
		if q.d == 0 {
			continue
		}
		for s := q.front(); s != nil && s.last+q.d <= l.now; s = q.front() {
			l.closeSession(s)
		}
	}
	if len(l.connecting) > 1 || len(l.active) > 1 {
		cfg := l.p.tuned.Load()
		l.connecting.prune(int64(cfg.dialer.Timeout))
		l.active.prune(int64(cfg.idle))
	}
}

// errConnectTimeout is a dial that did not complete within the connect
// timeout.
var errConnectTimeout = errors.New("connect: i/o timeout")

// closeAll closes every session at once.
func (l *eventLoop) closeAll() {
	for _, qs := range []queues{l.connecting, l.active} {
		for _, q := range qs {
			for s := q.front(); s != nil; s = q.front() {
				l.closeSession(s)
			}
		}
	}
}

// Stop asks the loop to stop accepting and end once its sessions have, or
// with abort to close them all and end now, and wakes it. The proxy's
// accept loop calls it, from Shutdown and Close.
func (l *eventLoop) Stop(abort bool) {
	if abort {
		l.aborting.Store(true)
	}
	l.stopping.Store(true)
	l.wake()
}

// Release closes the loop's descriptors once it has stopped serving.
func (l *eventLoop) Release() { l.closeFDs() }

// listener returns the listener the loop was made for.
func (l *eventLoop) listener() net.Listener { return l.ln }

// retire asks the loop to stop accepting and to end once its sessions
// have, and wakes it; the loop closes the channel returned once it will
// accept no more. The caller holds p.mu.
func (l *eventLoop) retire() <-chan struct{} {
	l.retiring.Store(true)
	l.wake()
	return l.doneAccepting
}

// stopAccepting tells StopAccepting that the loop accepts no more; the
// loop calls it as it closes its listener and as it ends.
func (l *eventLoop) stopAccepting() {
	if !l.notAccepting {
		l.notAccepting = true
		close(l.doneAccepting)
	}
}

// closeConnsLater asks the loop to close the sessions of the backend
// named id at its next wake, and wakes it. The caller holds p.mu.
func (l *eventLoop) closeConnsLater(id string) {
	l.closeIDs = append(l.closeIDs, id)
	l.closing.Store(true)
	l.wake()
}

// closeConns closes the sessions, relaying or dialling, of the backends
// that closeConnsLater named.
func (l *eventLoop) closeConns() {
	l.p.mu.Lock()
	ids := l.closeIDs
	l.closeIDs = nil
	l.closing.Store(false)
	l.p.mu.Unlock()
	for _, qs := range []queues{l.connecting, l.active} {
		for _, q := range qs {
			for s := q.front(); s != nil; {
				next := s.next
				if next == &q.root {
					next = nil
				}
				if s.b != nil && slices.Contains(ids, s.b.ID) {
					l.closeSession(s)
				}
				s = next
			}
		}
	}
}

// closeFDs closes the loop's own descriptors and spare pipes.
func (l *eventLoop) closeFDs() {
	if l.poller != nil {
		l.poller.Close() // and with it epfd
		l.epfd = -1
	}
	for _, fd := range []*int{&l.lnfd, &l.wakefd, &l.epfd} {
		if *fd >= 0 {
			sysClose(*fd)
			*fd = -1
		}
	}
	for _, pp := range l.pipes {
		sysClose(pp[0])
		sysClose(pp[1])
	}
	l.pipes = nil
}

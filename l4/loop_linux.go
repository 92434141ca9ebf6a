//go:build linux

package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/evloop"
)

// eventLoop serves the connections it accepts on a listener from a single
// goroutine, the way HAProxy and nginx do, one loop per core (see
// Proxy.Loops) accepting from the listener's one socket: it is L4's
// handler on an evloop.Loop, which owns the epoll set, the accepts and the
// loop's sleep, while the handler owns the client and backend sockets as
// raw non-blocking descriptors and moves bytes with read/write for small
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
// The handler's state belongs to the loop's goroutine alone; other
// goroutines reach it only through the core (Stop, Retire, Wake, its
// accepted count) and the closing flag. What the loops of a proxy share
// (the affinity table, the pool and its backends' counters, Counts) is
// sharded or atomic: no loop waits for another. Nor does it wait on
// anything but epoll: its log lines (and those of passive health) are
// handed to the proxy's log writer, never written in the loop.
type eventLoop struct {
	core  *evloop.Loop[session]
	p     *Proxy
	ln    net.Listener // what Serve was given, for StopAccepting
	index int          // among its listener's loops, for Proxy.LoopAccepts

	sessions int // open sessions
	free     []*session
	bufs     evloop.Spares // spare pending-data buffers, of bufSize
	pipes    [][2]int      // spare empty pipes
	scratch  []byte        // every read of the small-message path lands here
	targets  evloop.Targets[*backend.Backend, *backend.Registry]

	ready      []readyRef // sessions whose pump left work, run next
	spare      []readyRef // the other ready buffer, swapped each round
	serial     uint64
	connecting evloop.Queues[session] // sessions dialling, by connect timeout
	active     evloop.Queues[session] // relaying sessions, by idle timeout

	// closing asks the loop to close the sessions of the backends named
	// in closeIDs (guarded by p.mu): see Proxy.CloseConns.
	closing  atomic.Bool
	closeIDs []string
}

// target is a backend address in the form connect takes.
type target = evloop.Target

const (
	// bufSize is the small-message buffer. A read that fills it marks the
	// direction as bulk, which then splices.
	bufSize = 16 << 10
	// pipeSize is how much one splice moves at most.
	pipeSize = 64 << 10
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
		if evloop.TargetFor(b.Address()) == nil {
			return nil, fmt.Sprintf("backend %s has address %q, not an IP literal, and the event loop never resolves names", b.ID, b.Address()), nil
		}
	}
	lnfd, err := evloop.TakeListener(tl)
	if err != nil {
		return nil, "", fmt.Errorf("l4: event loop: %w", err)
	}
	defer evloop.Close(lnfd) // each loop holds a duplicate of its own
	name := tl.Addr().String()
	loops := make([]*eventLoop, 0, n)
	for i := range n {
		core, err := evloop.New[session](lnfd, name, p.loopLog)
		if err != nil {
			for _, l := range loops {
				l.Release()
			}
			return nil, "", fmt.Errorf("l4: event loop: %w", err)
		}
		l := &eventLoop{
			core:    core,
			index:   i,
			p:       p,
			ln:      ln,
			scratch: make([]byte, bufSize),
			bufs:    evloop.Spares{Size: bufSize, Max: spares},
		}
		core.SetHandler(l)
		for _, b := range reg.All() {
			l.targets.Get(b, b.Address(), reg)
		}
		loops = append(loops, l)
	}
	return loops, "", nil
}

// target returns b's address in the form connect takes, or nil when it
// is not an IP literal (see evloop.Targets).
func (l *eventLoop) target(b *backend.Backend) *target {
	return l.targets.Get(b, b.Address(), l.p.Pool.Registry())
}

// Serve serves until the proxy is shut down (returning ErrProxyClosed),
// the loop is retired and its sessions have ended (returning
// net.ErrClosed), or the loop fails. The proxy's accept loop runs it (see
// accept.Loop.Run), stops it through Stop and releases its descriptors
// through Release once it has left the proxy's set, so that no wake ever
// writes to a closed descriptor.
func (l *eventLoop) Serve() error {
	l.p.addLoop(l)
	defer l.p.removeLoop(l)
	err := l.core.Serve()
	if errors.Is(err, evloop.ErrStopped) {
		return ErrProxyClosed
	}
	return fmt.Errorf("l4: %w", err)
}

// Accepted starts the session of a connection the loop accepted.
func (l *eventLoop) Accepted(fd int, peer netip.AddrPort) { l.startSession(fd, peer) }

// Work gives the sessions whose pump ran out of budget another turn, and
// closes the sessions CloseConns asked to.
func (l *eventLoop) Work() {
	l.runReady()
	if l.closing.Load() {
		l.closeConns()
	}
}

// Open returns how many sessions are open.
func (l *eventLoop) Open() int { return l.sessions }

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

// Expire fails over dials past their connect timeout and closes sessions
// idle for their idle timeout, then lets go of the queues of timeouts that
// are no longer in use. It returns when the next of them is due, and
// whether a pump left work for the next turn.
func (l *eventLoop) Expire() (next int64, busy bool) {
	now := l.core.Now()
	for _, q := range l.connecting {
		for s := q.Due(now); s != nil; s = q.Due(now) {
			l.dialFailed(s, errConnectTimeout)
		}
	}
	for _, q := range l.active {
		for s := q.Due(now); s != nil; s = q.Due(now) {
			l.closeSession(s)
		}
	}
	if len(l.connecting) > 1 || len(l.active) > 1 {
		cfg := l.p.tuned.Load()
		l.connecting.Prune(int64(cfg.dialer.Timeout))
		l.active.Prune(int64(cfg.idle))
	}
	return evloop.Soonest(l.connecting.Next(), l.active.Next()), len(l.ready) > 0
}

// errConnectTimeout is a dial that did not complete within the connect
// timeout.
var errConnectTimeout = errors.New("connect: i/o timeout")

// CloseAll closes every session at once.
func (l *eventLoop) CloseAll() {
	for _, qs := range []evloop.Queues[session]{l.connecting, l.active} {
		for _, q := range qs {
			for t := q.Front(); t != nil; t = q.Front() {
				l.closeSession(t.Owner)
			}
		}
	}
}

// Stop asks the loop to stop accepting and end once its sessions have, or
// with abort to close them all and end now, and wakes it. The proxy's
// accept loop calls it, from Shutdown and Close.
func (l *eventLoop) Stop(abort bool) { l.core.Stop(abort) }

// Release closes the loop's descriptors and spare pipes once it has
// stopped serving.
func (l *eventLoop) Release() {
	l.core.Release()
	for _, pp := range l.pipes {
		evloop.Close(pp[0])
		evloop.Close(pp[1])
	}
	l.pipes = nil
}

// wake makes the loop look at its requests.
func (l *eventLoop) wake() { l.core.Wake() }

// name returns the address of the listener the loop serves.
func (l *eventLoop) name() string { return l.core.Name() }

// listener returns the listener the loop was made for.
func (l *eventLoop) listener() net.Listener { return l.ln }

// accepted returns how many connections the loop accepted: how the
// accepts spread over the loops (see Proxy.LoopAccepts).
func (l *eventLoop) accepted() uint64 { return l.core.Accepted() }

// retire asks the loop to stop accepting and to end once its sessions
// have, and wakes it; the loop closes the channel returned once it will
// accept no more. The caller holds p.mu.
func (l *eventLoop) retire() <-chan struct{} { return l.core.Retire() }

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
	for _, qs := range []evloop.Queues[session]{l.connecting, l.active} {
		qs.Each(func(s *session) {
			if s.b != nil && slices.Contains(ids, s.b.ID) {
				l.closeSession(s)
			}
		})
	}
}

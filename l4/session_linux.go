//go:build linux

package l4

import (
	"context"
	"log/slog"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/evloop"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// testHookAccepted, when set before Serve, sees every accepted client
// socket (tests shrink its send buffer to make a client slow).
var testHookAccepted func(fd int)

// session is one client connection in the event loop: the client socket,
// the backend socket once dialled, and a direction each way.
type session struct {
	client, server endpoint
	up, down       direction // client to server, server to client

	key     affinity.Key
	addr    netip.AddrPort   // the client's, for logs
	seen    string           // the pin this session last saw
	try     backend.Attempt  // the choice of backend, step by step
	b       *backend.Backend // the backend dialled or connected, acquired
	start   int64            // loop time of the accept, for the access log
	lastErr error            // the last failed dial

	cfg      *settings // the proxy's settings when s was accepted
	serial   uint64    // tells this use of the session from later ones
	relaying bool
	queued   bool // on the loop's ready list: pump stopped with work left
	// timer is on a connecting queue from the dial's start (or the
	// PROXY header's wait), then on the relaying queue of s's idle
	// timeout since bytes last moved, either way.
	timer evloop.Timer[session]

	header *proxyproto.Reader // the PROXY header being read: see proxyproto_linux.go
}

// endpoint is one socket of a session with what its events have told.
type endpoint = evloop.Endpoint[session]

// direction moves the bytes one way.
type direction struct {
	src, dst *endpoint
	buf      []byte // a buffer from the loop's spares while pending is not empty
	pending  []byte // read but not yet written, within buf
	bulk     bool   // a read filled the buffer; splice from now on
	piped    bool   // pipe is open
	pipe     [2]int
	inPipe   int   // bytes spliced into pipe and not yet out
	written  int64 // bytes written to dst, for the access log
	eof      bool  // src has ended
	done     bool  // and everything, the end included, went to dst
}

// startSession begins serving an accepted client: it looks up the pin and
// dials the backend.
func (l *eventLoop) startSession(fd int, peer netip.AddrPort) {
	s := l.newSession()
	s.client.FD = fd
	s.addr = peer
	s.cfg = l.p.tuned.Load()
	s.start = l.core.Now()
	l.p.loop.Counts.Opened()
	if l.awaitHeader(s) {
		return
	}
	l.place(s)
	evloop.SetNoDelay(fd)
	if testHookAccepted != nil {
		testHookAccepted(fd)
	}
	if err := l.core.Register(&s.client); err != 0 {
		s.lastErr = err
		l.refuse(s)
		return
	}
	l.dial(s)
}

// place keys s by its client's address, looks up the client's pin and
// begins the choice of its backend.
func (l *eventLoop) place(s *session) {
	s.key = l.p.Table.Key(s.addr.Addr())
	l.p.NAT.Opened(s.key, s.addr.Port())
	s.seen, _ = l.p.Table.Lookup(s.key)
	s.try = l.p.attempt(s.key, s.seen, s.cfg)
}

// dial starts a connection to the backend s should use next, failing over
// in selector order while connect fails at once; with none left, the
// client is refused.
func (l *eventLoop) dial(s *session) {
	for {
		b, seen := l.p.choose(&s.try, s.key, s.seen)
		s.seen = seen
		if b == nil {
			l.refuse(s)
			return
		}
		t := l.target(b)
		if t == nil {
			// Not the backend's fault: passive health is not told.
			s.lastErr = b.DialError(evloop.ErrNotLiteral)
			s.try.Fail(b)
			continue
		}
		fd, err := evloop.Socket(t.Family)
		if err != 0 {
			// Out of descriptors here says nothing of the backend.
			s.lastErr = b.DialError(err)
			l.refuse(s)
			return
		}
		if testHookDialing != nil {
			testHookDialing(uintptr(fd))
		}
		b.Acquire()
		err = evloop.Connect(fd, t)
		if err == 0 || err == unix.EINPROGRESS {
			s.b, s.server.FD = b, fd
			if err := l.core.Register(&s.server); err != 0 {
				evloop.Close(fd)
				s.server.FD = -1
				s.b = nil
				b.Release()
				s.lastErr = err
				l.refuse(s)
				return
			}
			l.connecting.Of(int64(s.cfg.dialer.Timeout)).Arm(&s.timer, l.core.Now())
			return
		}
		evloop.Close(fd)
		b.Release()
		l.failed(s, b, err)
	}
}

// dialFailed ends the dial in progress (refused, reset, or past the
// connect timeout) and moves on to the next backend.
func (l *eventLoop) dialFailed(s *session, err error) {
	if s.header != nil { // the header's wait, not a dial, timed out
		l.headerTimedOut(s)
		return
	}
	s.timer.Stop()
	l.core.Forget(&s.server)
	b := s.b
	s.b = nil
	b.Release()
	l.failed(s, b, err)
	l.dial(s)
}

// failed records a failed dial to b: passive health (which leaves out the
// proxy's own faults, see backend.LocalFault), and b is avoided for the
// rest of this session's attempt.
func (l *eventLoop) failed(s *session, b *backend.Backend, err error) {
	s.lastErr = b.DialError(err)
	b.CountConnectFailure()
	l.p.loopHealth.ReportFailure(b, s.lastErr)
	s.try.Fail(b)
}

// refuse closes a client no backend took.
func (l *eventLoop) refuse(s *session) {
	// In an outage every client is refused: build the line only when it
	// is logged.
	if lg := l.p.loopLog; lg.Enabled(context.Background(), slog.LevelDebug) {
		lg.Debug("client refused", "client", s.addr.String(), "error", refused(s.lastErr))
	}
	l.closeSession(s)
}

// Event acts on what an epoll event told about ep, a socket of one of the
// loop's sessions.
func (l *eventLoop) Event(ep *endpoint, ev uint32) {
	s := ep.Owner
	if s.relaying && ev&unix.EPOLLERR != 0 {
		l.closeSession(s) // reset: nothing more can be delivered either way
		return
	}
	if s.header != nil {
		if ep == &s.client {
			l.readHeader(s)
		}
		return
	}
	if !s.relaying {
		if ep != &s.server {
			return // the client waits for its backend
		}
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := unix.ECONNREFUSED
			if n, gerr := unix.GetsockoptInt(ep.FD, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && n != 0 {
				err = unix.Errno(n)
			}
			l.dialFailed(s, err)
			return
		}
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		s.b.CountServed()
		s.b.CountConnected()
		s.relaying = true
		l.active.Of(int64(s.cfg.idle)).Arm(&s.timer, l.core.Now())
		l.queueProxyHeader(s)
	}
	l.relay(s)
}

// relay moves what can be moved both ways, and closes the session when
// both directions have ended or either failed.
func (l *eventLoop) relay(s *session) {
	upMore, ok := l.pump(s, &s.up, &s.down)
	var downMore bool
	if ok {
		downMore, ok = l.pump(s, &s.down, &s.up)
	}
	if !ok || (s.up.done && s.down.done) {
		l.closeSession(s)
		return
	}
	if (upMore || downMore) && !s.queued {
		s.queued = true
		l.ready = append(l.ready, readyRef{s, s.serial})
	}
}

// readyRef is a session with work left after its pump's budget ran out;
// serial tells whether the session has been closed (and reused) since.
type readyRef struct {
	s      *session
	serial uint64
}

// pumpSteps bounds the system calls one pump makes before it lets the
// other connections have their turn, so that a fast bulk transfer cannot
// starve them; what is left is carried on the loop's ready list. (A
// variable, so that tests can make every pump run out.)
var pumpSteps = 32

// pump moves bytes from d.src to d.dst until one of them would block or
// the budget of pumpSteps system calls is spent (more is then true: there
// may be work left that no new event will announce). ok is false when
// either socket failed: the session is then closed.
//
// Small messages (request/response protocols) go through the loop's
// scratch buffer: one read and one write each, copied aside only when the
// destination cannot take them all. A read that fills the buffer marks the
// direction as bulk, which then splices through a pipe in the kernel (what
// HAProxy's splice-auto does); splicing a few hundred bytes would cost more
// than it saves.
func (l *eventLoop) pump(s *session, d, other *direction) (more, ok bool) {
	for steps := 0; !d.done; steps++ {
		if steps == pumpSteps {
			return true, true
		}
		var r moved
		switch {
		case len(d.pending) > 0:
			r = l.writePending(s, d)
		case d.inPipe > 0:
			r = l.writePipe(s, d)
		case d.eof:
			// Forward the end. When the other way has ended too, the
			// session closes next, and close sends the FIN itself.
			d.done = true
			if !other.done {
				evloop.ShutdownWrite(d.dst.FD)
			}
		case !d.src.Readable:
			return false, true
		case d.bulk:
			r = l.readPipe(s, d)
		default:
			r = l.readSmall(s, d)
		}
		switch r {
		case pumpBlocked:
			return false, true
		case pumpFailed:
			return false, false
		}
	}
	return false, true
}

// moved is what one step of a pump came to.
type moved uint8

const (
	pumpOn      moved = iota // the pump may take its next step
	pumpBlocked              // a socket would block: its next edge resumes the pump
	pumpFailed               // a socket failed: the session closes
)

// writePending writes the bytes that d's destination could not take
// before.
func (l *eventLoop) writePending(s *session, d *direction) moved {
	if !d.dst.Writable {
		return pumpBlocked
	}
	n, err := evloop.Write(d.dst.FD, d.pending)
	if err == unix.EAGAIN {
		d.dst.Writable = false
		return pumpBlocked
	} else if err != 0 {
		return pumpFailed
	}
	d.written += int64(n)
	l.touch(s) // a slow reader that takes bytes is not idle
	if d.pending = d.pending[n:]; len(d.pending) > 0 {
		d.dst.Writable = false // a short write: the socket is full
		return pumpBlocked
	}
	l.bufs.Put(d.buf)
	d.buf, d.pending = nil, nil
	return pumpOn
}

// writePipe splices what d's pipe holds to its destination.
func (l *eventLoop) writePipe(s *session, d *direction) moved {
	if !d.dst.Writable {
		return pumpBlocked
	}
	n, err := evloop.Splice(d.pipe[0], d.dst.FD, d.inPipe)
	if err == unix.EAGAIN {
		d.dst.Writable = false
		return pumpBlocked
	} else if err != 0 {
		return pumpFailed
	}
	d.inPipe -= n
	d.written += int64(n)
	l.touch(s)
	return pumpOn
}

// readPipe splices from d's source into its pipe, once the direction
// carries bulk data.
func (l *eventLoop) readPipe(s *session, d *direction) moved {
	if !d.piped && !l.getPipe(d) {
		return pumpFailed
	}
	n, err := evloop.Splice(d.src.FD, d.pipe[1], pipeSize)
	switch {
	case err == unix.EAGAIN: // the pipe is empty, so the socket is
		d.src.Readable = false
	case err != 0:
		return pumpFailed
	case n == 0:
		d.eof = true
	default:
		d.inPipe = n
		l.touch(s)
	}
	return pumpOn
}

// readSmall reads a small message into the loop's scratch buffer and
// writes it on at once, setting aside what the destination cannot take.
// A read that fills the buffer marks the direction as bulk.
func (l *eventLoop) readSmall(s *session, d *direction) moved {
	n, err := evloop.Read(d.src.FD, l.scratch)
	switch {
	case err == unix.EAGAIN:
		d.src.Readable = false
		return pumpOn
	case err != 0:
		return pumpFailed
	case n == 0:
		d.eof = true
		return pumpOn
	}
	l.touch(s)
	data := l.scratch[:n]
	if d.dst.Writable {
		w, err := evloop.Write(d.dst.FD, data)
		if err != 0 && err != unix.EAGAIN {
			return pumpFailed
		}
		if err == 0 {
			data = data[w:]
			d.written += int64(w)
		}
	}
	if len(data) > 0 {
		d.dst.Writable = false
		d.buf = l.bufs.Get()
		d.pending = d.buf[:copy(d.buf, data)]
	}
	if n == len(l.scratch) {
		d.bulk = true
	} else if !d.src.RDHUP {
		// A short read emptied the socket; more data brings another
		// edge. After the peer's FIN, read on to see it.
		d.src.Readable = false
	}
	return pumpOn
}

// touch records that s moved bytes now, for the idle timeout.
func (l *eventLoop) touch(s *session) {
	if q := s.timer.Queue(); q != nil {
		q.Touch(&s.timer, l.core.Now())
	}
}

func (l *eventLoop) newSession() *session {
	var s *session
	if n := len(l.free); n > 0 {
		s, l.free = l.free[n-1], l.free[:n-1]
	} else {
		s = new(session)
	}
	s.client.Reset(-1, s)
	s.server.Reset(-1, s)
	s.timer.Owner = s
	s.up = direction{src: &s.client, dst: &s.server}
	s.down = direction{src: &s.server, dst: &s.client}
	l.serial++
	s.serial = l.serial
	l.sessions++
	return s
}

// closeSession closes both sockets, returns what s borrowed, and keeps s
// for reuse.
func (l *eventLoop) closeSession(s *session) {
	s.timer.Stop()
	l.p.NAT.Closed(s.key)
	l.core.Forget(&s.client)
	l.core.Forget(&s.server)
	if s.b != nil {
		s.b.Release()
	}
	for _, d := range []*direction{&s.up, &s.down} {
		if d.buf != nil {
			l.bufs.Put(d.buf)
		}
		l.putPipe(d)
	}
	l.logSession(s)
	l.p.loop.Counts.Closed()
	*s = session{}
	l.sessions--
	if len(l.free) < 1024 {
		l.free = append(l.free, s)
	}
}

// getPipe gives d an empty pipe.
func (l *eventLoop) getPipe(d *direction) bool {
	if n := len(l.pipes); n > 0 {
		d.pipe, l.pipes = l.pipes[n-1], l.pipes[:n-1]
		d.piped = true
		return true
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return false
	}
	// A larger pipe moves more per splice; the default (64 KiB) is the
	// fallback when the system limit is lower.
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize)
	d.pipe, d.piped = p, true
	return true
}

// putPipe keeps d's pipe for reuse when it is empty, and closes it if not.
func (l *eventLoop) putPipe(d *direction) {
	if !d.piped {
		return
	}
	if d.inPipe == 0 && len(l.pipes) < spares {
		l.pipes = append(l.pipes, d.pipe)
	} else {
		evloop.Close(d.pipe[0])
		evloop.Close(d.pipe[1])
	}
	d.pipe, d.piped = [2]int{}, false
}

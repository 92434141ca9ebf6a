//go:build linux

package l4

import (
	"sync"

	"github.com/lbctl/lbctl/internal/evloop"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// The event loop reads a PROXY protocol header as it reads everything:
// off the non-blocking socket as it arrives, never waiting. A session from
// a PROXY listener starts in the header state (s.header set): its client
// socket is registered, the session waits on a connecting queue of the
// header timeout (so the loop's timers cover it; see headerTimedOut), and
// each readable event moves the header on. Once the header is whole, the
// session starts as any other, keyed on the client the header names; no
// byte past the header has been read, so what the client sent after it
// reaches the backend untouched.

// headerReaders keeps the readers of finished headers for the next ones.
var headerReaders = sync.Pool{New: func() any { return new(proxyproto.Reader) }}

// awaitHeader puts s, just accepted from peer, in the header state when
// the listener takes PROXY headers, and reports whether it did (or refused
// s): the caller then leaves s to the header's events.
func (l *eventLoop) awaitHeader(s *session) bool {
	pp := l.p.ProxyProtocol
	if !pp.On() {
		return false
	}
	if err := pp.Admit(s.addr.Addr()); err != nil {
		s.lastErr = err
		l.p.loop.Counts.RefusedProxy()
		l.refuse(s)
		return true
	}
	if err := l.core.Register(&s.client); err != 0 {
		s.lastErr = err
		l.refuse(s)
		return true
	}
	s.header = headerReaders.Get().(*proxyproto.Reader)
	s.header.Reset()
	l.connecting.Of(int64(pp.Wait())).Arm(&s.timer, l.core.Now())
	l.readHeader(s) // it may all be there already
	return true
}

// readHeader moves s's header on and, once it is whole, starts the
// session for the client it names.
func (l *eventLoop) readHeader(s *session) {
	src, ok, done, err := s.header.ReadFrom(s.client.FD)
	if err != nil {
		s.lastErr = err
		l.p.loop.Counts.RefusedProxy()
		l.refuse(s)
		return
	}
	if !done {
		return // the rest comes with the next readable event
	}
	s.timer.Stop()
	headerReaders.Put(s.header)
	s.header = nil
	if ok {
		s.addr = src
	}
	l.place(s)
	evloop.SetNoDelay(s.client.FD)
	l.dial(s)
}

// headerTimedOut refuses a session whose header did not come in time.
func (l *eventLoop) headerTimedOut(s *session) {
	s.lastErr = errHeaderTimeout
	l.p.loop.Counts.RefusedProxy()
	l.refuse(s)
}

// errHeaderTimeout is a PROXY protocol header that did not arrive within
// its timeout.
var errHeaderTimeout = proxyprotoError("PROXY protocol header: i/o timeout")

type proxyprotoError string

func (e proxyprotoError) Error() string { return string(e) }

// queueProxyHeader puts the PROXY protocol header s's backend wants, if
// any, first in the bytes going to it, before anything of the client's.
func (l *eventLoop) queueProxyHeader(s *session) {
	v := s.b.SendProxy()
	if v == 0 {
		return
	}
	s.up.buf = l.bufs.Get()
	s.up.pending = proxyproto.Append(s.up.buf[:0], v, s.addr, evloop.LocalAddr(s.client.FD))
	// The header goes out as the first of the client's bytes, but it is
	// not the client's: the access log's bytes_in leaves it out, as the
	// goroutine engine's does.
	s.up.written = -int64(len(s.up.pending))
}

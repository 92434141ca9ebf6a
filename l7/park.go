package l7

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/park"
)

// An idle kept-alive client connection is parked: once it has waited
// parkAfter for its next request, its goroutine ends, its session and
// buffers go back to their pools, and the proxy's watcher (internal/park)
// holds its socket until the client sends again, when the connection is
// served anew on a fresh goroutine, or until the idle timeout, when the
// watcher closes it. Shutdown and Close stop the watcher, which closes
// every parked connection at once, as they close idle connections.
//
// The watcher holds the raw socket alone (park.Detach): the accept record,
// the net.TCPConn with its addresses and Go's poller entry are let go, and
// what the connection needs to be served again, the client a PROXY header
// named, is packed into its watcher slot (parkedConn). When the client
// sends, park.Attach makes a new net.TCPConn of the socket and a new
// accept record carries it. An idle connection then costs its socket and
// a slot of a few dozen bytes instead of a goroutine's stack and a session
// (see the README's figures). The price is in system calls, once per pause
// of over parkAfter: 3 more to park (the duplicate, the runtime's
// deregistration, the close) and 15 more to wake (the new net.TCPConn's
// registration, addresses and socket options).
//
// Parking waits parkAfter so that the kept-alive path is unchanged for a
// client that sends its next request soon: waiting costs nothing more than
// the idle timeout's deadline, which is set anyway, and a connection is
// parked at most once per pause between its requests.
//
// Only a plain TCP client connection is parked; where the watcher is not
// available (outside Linux, or when it cannot start), idle connections
// keep their goroutines as before.
//
// A connection served anew has input waiting: handle takes it as a new
// connection, whose wait for its first request ends at once, and whose
// head then gets the header timeout from that moment, as a later
// request's head gets it from its first byte.

// parkAfter is how long an idle kept-alive connection waits on its
// goroutine before it is parked.
const parkAfter = time.Second

// errParked ends the serving of a connection that was handed to the
// watcher: the session lets go of it without closing it.
var errParked = errors.New("connection parked")

// parking is a proxy's watcher of parked connections, started with the
// first connection to park (see Proxy.watcher).
type parking struct {
	mu     sync.Mutex // guards w and the starting of it
	w      *park.Watcher[parkedConn]
	failed atomic.Bool   // the watcher could not start: nothing parks
	after  time.Duration // parkAfter, or what a test sets before Serve
}

// watcher returns the proxy's watcher, starting it under the proxy's
// accept loop on first use, or nil when connections cannot park.
func (p *Proxy) watcher() *park.Watcher[parkedConn] {
	p.parks.mu.Lock()
	defer p.parks.mu.Unlock()
	if p.parks.w != nil || p.parks.failed.Load() {
		return p.parks.w
	}
	w, err := park.New(p.unpark, p.expireParked)
	if err != nil {
		p.parks.failed.Store(true)
		if !errors.Is(err, errors.ErrUnsupported) {
			p.logger().Warn("idle connections cannot be parked; each keeps its goroutine", "error", err)
		}
		return nil
	}
	if !p.loop.Start(w) {
		p.parks.failed.Store(true) // closing: nothing parks any more
		return nil
	}
	p.parks.w = w
	return w
}

// waitIdle waits for the first byte of the client's next request, for up
// to the idle timeout. A connection still idle after parkAfter is asked to
// park (accept.Conn.Park) and waitIdle returns errParked; the accept loop
// hands it to parkConn once the session has let go of it. A connection
// that sent empty lines alone since its last request (mayPark false) does
// not park, so that their count (maxBlankHeads) is not lost.
func (s *session) waitIdle(ac *accept.Conn, mayPark bool) error {
	now := time.Now()
	until := time.Time{}
	if s.cfg.idle > 0 {
		until = now.Add(s.cfg.idle)
	}
	after := s.p.parkAfterOf()
	if !mayPark || (s.cfg.idle > 0 && s.cfg.idle <= after) || !s.parkable(ac) {
		s.client.SetReadDeadline(until)
		return s.in.waitByte()
	}
	s.client.SetReadDeadline(now.Add(after))
	err := s.in.waitByte()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if s.p.watcher() == nil {
		// No watcher after all: wait out the idle timeout here.
		s.client.SetReadDeadline(until)
		return s.in.waitByte()
	}
	ac.Park(until)
	return errParked
}

// parkable reports whether the session's client connection may park: a
// plain TCP connection (a TLS session's state lives in its tls.Conn, which
// a connection served anew would not have) whose PROXY client, if any, fits
// a parkedConn (a header names no zone), with the proxy's watcher
// available (or not tried).
func (s *session) parkable(ac *accept.Conn) bool {
	return s.sec == nil && s.client == ac.TCPConn && ac.Client.Addr().Zone() == "" &&
		!s.p.parks.failed.Load()
}

// parkAfterOf returns how long an idle connection waits before parking.
func (p *Proxy) parkAfterOf() time.Duration {
	if p.parks.after > 0 {
		return p.parks.after
	}
	return parkAfter
}

// parkedConn is what a parked connection keeps besides its socket: the
// client its PROXY header named (accept.Conn.Client), packed without
// pointers into the watcher's slot.
type parkedConn struct {
	ip   [16]byte
	port uint16
	kind uint8 // 0: no PROXY client (the peer is the client); 4 or 6: ip's family
}

// packClient returns the parkedConn of a connection whose client is a,
// which has no zone.
func packClient(a netip.AddrPort) parkedConn {
	var r parkedConn
	ip := a.Addr()
	switch {
	case ip.Is4():
		r.kind = 4
	case ip.Is6():
		r.kind = 6
	default:
		return r
	}
	r.ip, r.port = ip.As16(), a.Port()
	return r
}

// client returns the client packClient packed.
func (r parkedConn) client() netip.AddrPort {
	switch r.kind {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom16(r.ip).Unmap(), r.port)
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16(r.ip), r.port)
	}
	return netip.AddrPort{}
}

// parkConn is the accept loop's Park hook: it hands c's socket to the
// watcher until its client sends again or until passes, and lets go of c.
func (p *Proxy) parkConn(c *accept.Conn, until time.Time) bool {
	w := p.watcher()
	if w == nil {
		return false
	}
	return w.ParkConn(c.TCPConn, until, packClient(c.Client))
}

// unpark serves a parked connection again once its client has sent
// something (or hung up): a new net.TCPConn of its socket, under a new
// accept record that is Resumed and keeps its PROXY client. A socket that
// can no longer be served (reset while parked) is closed and counted so.
func (p *Proxy) unpark(fd int, r parkedConn) {
	c, err := park.Attach(fd)
	if err != nil {
		p.loop.Counts.Closed()
		return
	}
	p.loop.Unpark(&accept.Conn{TCPConn: c, Client: r.client()})
}

// expireParked counts closed a connection the watcher closed, parked past
// its idle timeout or at shutdown.
func (p *Proxy) expireParked(parkedConn) { p.loop.Counts.Closed() }

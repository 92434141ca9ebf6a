package l7

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/peek"
)

// session is the state of one client connection, reused across its
// requests and, through Proxy.sessions, across connections, so that a
// request allocates nothing once the pool is warm.
type session struct {
	p      *Proxy
	client *net.TCPConn
	// sec is the TLS session over client; nil on a plain listener.
	sec    *tls.Conn
	ip     []byte // the client's address, as X-Forwarded-For shows it
	pinKey uint64 // the client's address hashed, for Proxy.Pinned
	// addrKey is the client's address hashed alike on every instance,
	// for the Maglev policy (see backend.AddrHash).
	addrKey uint64

	in   connReader  // client input; holds whole request heads
	up   connReader  // backend input; holds whole response heads
	cw   timedWriter // client output
	uw   timedWriter // backend output, for the exchange in progress
	upIO upIO        // reads and writes the backend connection
	out  []byte      // heads being written
	tmp  []byte      // a Cookie value with the persistence cookie removed

	req  requestHead
	resp responseHead
	try  backend.Attempt // the choice of backend for the exchange in progress
	st   *poolState      // the pool as the exchange in progress sees it
	cfg  *settings       // the proxy's settings as the request in progress sees them
	// sized is the settings the client reader's head limit was last set
	// from: a new limit waits until the reader holds nothing.
	sized *settings

	flight inflight          // the exchange in progress, for CloseConns
	acct   account           // what the request in progress reports when it ends
	rec    *accesslog.Record // the access log's record, made with the first request it logs

	isHead, http10 bool // facts of s.req that outlive its buffer
	keep           bool // the exchange in progress leaves the connection open for another request

	inBuf []byte // the client reader's small buffer, of smallHead bytes

	from netip.AddrPort // the client, for send_proxy headers: see setClient
}

// smallHead is the size of a connection's own input buffer: most request
// heads fit, and a connection waiting for its next request holds no more.
const smallHead = 4 << 10

// upBufSize is the buffer a backend response is read through: its head
// must fit.
const upBufSize = 64 << 10

func (p *Proxy) getSession(c *net.TCPConn, sec *tls.Conn) *session {
	s, _ := p.sessions.Get().(*session)
	if s == nil {
		s = &session{
			p:     p,
			inBuf: make([]byte, smallHead),
			out:   make([]byte, 0, 4096),
			tmp:   make([]byte, 0, 1024),
			ip:    make([]byte, 0, 64),
		}
	}
	s.client, s.sec = c, sec
	cfg := p.tuned.Load()
	if sec != nil {
		s.in.reset(sec, s.small(cfg), cfg.heads)
	} else {
		s.in.reset(c, s.small(cfg), cfg.heads)
	}
	s.sized = cfg
	s.cw = timedWriter{c: c, sec: sec}
	s.tune(cfg)
	s.ip = s.ip[:0]
	s.addrKey = 0
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr := a.AddrPort().Addr().Unmap()
		s.ip = addr.AppendTo(s.ip)
		s.addrKey = backend.AddrHash(addr)
	}
	s.pinKey = pinClientKey(s.ip)
	return s
}

// small returns the buffer of the session's own that the client reader
// starts on under cfg: no larger than the largest head cfg accepts, so
// that it enforces the limit when it is the only buffer.
func (s *session) small(cfg *settings) []byte {
	return s.inBuf[:min(smallHead, cfg.maxHead)]
}

// tune makes cfg the settings of the request in progress.
func (s *session) tune(cfg *settings) {
	s.cfg = cfg
	s.cw.idle = cfg.idle
}

func (p *Proxy) putSession(s *session) {
	s.client, s.sec = nil, nil
	s.st = nil
	s.cfg, s.sized = nil, nil
	s.in.reset(nil, s.inBuf, nil)
	s.cw = timedWriter{}
	s.uw = timedWriter{}
	s.req.reset()
	s.resp.reset()
	p.sessions.Put(s)
}

// handle serves one client connection: requests in order until the client
// or a response closes it, the idle timeout passes, or the proxy shuts down.
//
// A connection that is idle long enough between requests is parked
// instead (see park.go): handle returns without closing it, and serves it
// again, as a connection with input waiting, when its client sends.
func (p *Proxy) handle(ac *accept.Conn) {
	c := ac.TCPConn
	parked := false
	defer func() {
		if !parked {
			c.Close()
		}
	}()
	// A parked connection served again (see park.go) has had its PROXY
	// header read, and is plain TCP: only a new one reads a header and
	// shakes hands.
	client := ac.Client
	var sec *tls.Conn
	if !ac.Resumed() {
		var ok bool
		if client, ok = p.proxyClient(c); !ok {
			return
		}
		ac.Client = client
		if p.TLS != nil {
			// A PROXY protocol header, read above, comes before the
			// ClientHello: the handshake reads from where it ended.
			if sec = p.TLS.handshake(c, c, p.tuned.Load().header); sec == nil {
				return
			}
			if sec.ConnectionState().NegotiatedProtocol == "h2" {
				p.serveH2(ac, sec, client)
				return
			}
		}
	}
	s := p.getSession(c, sec)
	defer p.putSession(s)
	if ac.Resumed() && !p.resumeHandoff(ac, s) { // what an event loop read before handing c over
		return
	}
	s.setClient(client)
	p.live.add(s)
	defer p.live.remove(s)

	// The first request's head must arrive within the header timeout of
	// the accept; later ones within the idle timeout, then the header
	// timeout from their first byte. Until a request's first byte the
	// connection counts as idle, so that Shutdown closes it at once.
	blank := 0 // heads in a row that were only empty lines
	for first := true; ; first = false {
		s.in.release()
		if cfg := p.tuned.Load(); cfg != s.cfg {
			s.tune(cfg)
		}
		if s.sized != s.cfg && s.in.resize(s.small(s.cfg), s.cfg.heads) {
			s.sized = s.cfg
		}
		if s.in.buffered() == 0 {
			ac.SetIdle(true)
			// Shutting down, a connection with no request in sight is
			// closed; one whose client has sent it already (the first
			// request of a connection just accepted always has, see
			// deferAccept) is served, with Connection: close.
			if p.loop.Closing() && !peek.Sent(c) {
				return
			}
			var err error
			if first {
				c.SetReadDeadline(time.Now().Add(s.cfg.header))
				err = s.in.waitByte()
			} else {
				err = s.waitIdle(ac, blank == 0)
			}
			if err != nil {
				parked = err == errParked
				return
			}
			ac.SetIdle(false)
		}
		if !first {
			c.SetReadDeadline(time.Now().Add(s.cfg.header))
		}
		head, partial, err := s.in.readHead()
		if err != nil {
			switch {
			case errors.Is(err, errHeadTooLarge):
				s.reject(431)
			case errors.Is(err, os.ErrDeadlineExceeded) && partial:
				s.reject(408)
			}
			return
		}
		if headBlank(head) {
			// Empty lines before a request are ignored (RFC 9112 2.2), a
			// few of them: a client sending nothing else is not one.
			if blank++; blank > maxBlankHeads {
				s.reject(400)
				return
			}
			continue
		}
		blank = 0
		if err := parseRequestHead(head, &s.req); err != nil {
			var he *headError
			status := 400
			if errors.As(err, &he) {
				status = he.status
			}
			s.reject(status)
			return
		}
		s.beginAccount()
		keep := s.exchange()
		s.endAccount()
		if !keep {
			return
		}
	}
}

// maxBlankHeads is how many heads of empty lines alone a connection may send
// in a row; each holds at least two.
const maxBlankHeads = 4

// deadline returns now+d, or no deadline when d is zero.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// reject answers a request that will not be forwarded with a canned error
// and closes the connection gracefully: the write side first, then a short
// wait for the client to read the answer before the socket goes (closing
// with unread input would reset the connection and could lose the answer).
func (s *session) reject(status int) {
	s.acct.status = status
	s.client.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := s.cw.write(cannedFor(status).close); err != nil {
		return
	}
	if s.sec != nil {
		s.sec.CloseWrite() // close_notify; the FIN follows
	}
	s.client.CloseWrite()
	s.client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, s.client, 256<<10)
}

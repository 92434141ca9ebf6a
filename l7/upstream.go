package l7

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// upstreamPool holds one backend's kept-alive connections to one address,
// most recently used last.
type upstreamPool struct {
	address string // the backend's address when the pool was made

	mu      sync.Mutex // guards the fields below
	idle    []idleConn
	retired bool // the backend left the pool or moved: keep nothing more

	// sweep closes the connections that idled past age once traffic has
	// stopped, when no put comes to close them: without it, a burst's
	// connections would stay open, and the backend's closes of them
	// would hold descriptors, until the next request. It is made at the
	// first put and armed while connections are kept.
	sweep    *time.Timer
	sweeping bool          // sweep is armed
	age      time.Duration // the idle timeout of the last put
}

type idleConn struct {
	c     *net.TCPConn
	since time.Time
	until time.Time // the earliest of c's deadlines (see upIO.until)
}

// upstream returns a connection to b: a kept-alive one when reuse is
// allowed and one is fresh enough and quiet, otherwise a new dial. reused
// tells the caller that the backend may have closed it meanwhile.
//
// A backend connection carries one exchange at a time, and only when
// nothing is pending on it: bytes that arrive on an idle connection answer
// no request that lbctl sent, and would reach whichever client's request
// is sent next. So a connection goes back to the pool only after a
// response that ended exactly where its framing says, with nothing more
// buffered and no close (relayResponse checks that), and the request that
// reuses it is written only while it is quiet: no byte and no EOF has
// arrived since, whenever it came. io makes that check (upIO.check), with
// a peek just before the request's first byte goes, within the same raw
// write, at the last moment it can be made; a connection that fails it is
// closed, and the request goes on a new one (errIdleStale). Checking quiet
// when the connection goes back as well would cost a second system call
// per request and catch nothing that the check on the way out misses.
//
// io learns the deadline the connection carries (see upIO.until), so that
// armUp moves it only when it must.
func (p *Proxy) upstream(st *poolState, cfg *settings, b *backend.Backend, reuse bool, io *upIO) (c *net.TCPConn, reused bool, err error) {
	if u := st.upstreams(b); reuse && u != nil {
		if c, until := u.get(cfg.idle); c != nil {
			io.until, io.check = until, true
			return c, true, nil
		}
	}
	io.until, io.check = time.Time{}, false
	c, err = b.Dial(context.Background(), &cfg.dialer)
	return c, false, err
}

// release returns c to b's pool in st for reuse, or closes it when the pool
// is full or retired (a reload removed or moved b since st was taken), the
// proxy is closing, or b wants PROXY headers (see upstreamFor).
//
// The cap is the one in force now, not the one of the exchange that used
// c: an exchange that began before a reload lowered the cap can come back
// after exchanges under the new cap have trimmed the pool, and keeping its
// connection under the old cap would leave the pool above the new one
// until the next put. until is what the exchange's upIO knows of c's
// deadlines.
func (p *Proxy) release(st *poolState, cfg *settings, b *backend.Backend, c *net.TCPConn, until time.Time) {
	u := st.upstreams(b)
	if p.loop.Closing() || u == nil || b.SendProxy() != 0 || !u.put(c, p.tuned.Load().maxIdle, cfg.idle, until) {
		c.Close()
	}
}

// get pops the most recently used connection, closing any that idled past
// maxIdle (when positive). Whether the backend has written to it or closed
// it since is for its user to check (see upstream). It returns the
// connection's deadline as put was told it.
func (u *upstreamPool) get(maxIdle time.Duration) (*net.TCPConn, time.Time) {
	for {
		ic, ok := u.pop()
		if !ok {
			return nil, time.Time{}
		}
		if maxIdle > 0 && time.Since(ic.since) > maxIdle {
			ic.c.Close()
			continue
		}
		return ic.c, ic.until
	}
}

// pop takes the most recently used connection out of the pool.
func (u *upstreamPool) pop() (idleConn, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := len(u.idle)
	if n == 0 {
		return idleConn{}, false
	}
	ic := u.idle[n-1]
	u.idle[n-1] = idleConn{}
	u.idle = u.idle[:n-1]
	return ic, true
}

// put keeps c unless limit connections are already kept. It also closes
// the least recently used connections once they have idled past maxIdle
// (when positive), so that connections the backend has since closed do not
// linger at the bottom of the stack while traffic goes on, and so that a
// burst's connections are let go once the load that needed them has gone:
// the stack is used from its top, so the ones a lower load no longer
// needs sink to the bottom and age there. It closes those beyond limit as
// well, when a reload lowered it.
func (u *upstreamPool) put(c *net.TCPConn, limit int, maxIdle time.Duration, until time.Time) bool {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.retired {
		return false
	}
	n := max(len(u.idle)-limit, 0)
	if maxIdle > 0 {
		for n < len(u.idle) && now.Sub(u.idle[n].since) > maxIdle {
			n++
		}
	}
	if n > 0 {
		for _, ic := range u.idle[:n] {
			ic.c.Close()
		}
		u.idle = append(u.idle[:0], u.idle[n:]...)
		clear(u.idle[len(u.idle):cap(u.idle)][:n])
	}
	if len(u.idle) >= limit {
		return false
	}
	u.idle = append(u.idle, idleConn{c: c, since: now, until: until})
	if u.age = maxIdle; maxIdle > 0 && !u.sweeping {
		u.sweeping = true
		if u.sweep == nil {
			u.sweep = time.AfterFunc(maxIdle, u.purge)
		} else {
			u.sweep.Reset(maxIdle)
		}
	}
	return true
}

// purge is sweep's work: it closes the connections that idled past age,
// and arms sweep again for the oldest of the others, if any.
func (u *upstreamPool) purge() {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.sweeping || u.age <= 0 {
		// closeIdle stopped the sweep after it fired, or a reload
		// lifted the idle timeout.
		u.sweeping = false
		return
	}
	n := 0
	for n < len(u.idle) && now.Sub(u.idle[n].since) > u.age {
		u.idle[n].c.Close()
		n++
	}
	u.idle = append(u.idle[:0], u.idle[n:]...)
	clear(u.idle[len(u.idle):cap(u.idle)][:n])
	if len(u.idle) == 0 {
		u.sweeping = false
		return
	}
	u.sweep.Reset(u.age - now.Sub(u.idle[0].since) + time.Millisecond)
}

// closeIdleUpstreams closes every kept-alive backend connection.
func (p *Proxy) closeIdleUpstreams() {
	for _, u := range p.state.Load().ups {
		u.closeIdle(false)
	}
}

// retire closes the kept connections and makes put refuse any more: the
// backend left the pool, or a reload gave it another address.
func (u *upstreamPool) retire() { u.closeIdle(true) }

// closeIdle closes the kept connections; retire also makes put refuse
// any more.
func (u *upstreamPool) closeIdle(retire bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, ic := range u.idle {
		ic.c.Close()
	}
	u.idle = nil
	u.retired = u.retired || retire
	if u.sweep != nil {
		u.sweep.Stop()
	}
	u.sweeping = false
}

// armUp points io at up and readies w to write an exchange's request
// through it, with a deadline timeouts.server ahead for that write and
// for the wait for the answer's head. The deadline is set only when the
// one up carries (io.until) is less than seven eighths of timeouts.server
// ahead, as timedWriter moves its own, or further than timeouts.server (a
// reload shortened it): most exchanges on a kept-alive connection then set
// none. One call sets both directions, for which the runtime then keeps
// one timer. It returns the time it read, for the exchange's account of
// when the request went.
func armUp(w *timedWriter, io *upIO, up *net.TCPConn, server time.Duration) time.Time {
	io.use(up)
	now := time.Now()
	if ahead := io.until.Sub(now); ahead < server-server/8 || ahead > server {
		io.until = now.Add(server)
		up.SetDeadline(io.until)
	}
	*w = timedWriter{c: up, up: io, idle: server, until: io.until}
	return now
}

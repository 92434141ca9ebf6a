package l7

import (
	"time"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/accesslog"
)

// account is what one request reports when it ends: to the backend's
// counters, the re-pin counts, the front door's totals and, when it is on,
// the access log. The exchange fills it in as it goes; nothing in it
// allocates.
type account struct {
	cookieSent bool             // the request carried a persistence cookie
	named      *backend.Backend // the backend that cookie names; nil when none of the pool
	b          *backend.Backend // the backend tried last, nil when none was
	status     int              // the status the client got; 0 when none was sent
	sent       time.Time        // when the request went to b
	head       time.Duration    // until b's response head came; 0 when none did
	start      time.Time        // when the head was read; only with the access log
	bytes      int64            // the client writer's count at the start
}

// beginAccount starts the account of the request in s.req. The access log
// needs its start time and its method and path, taken now while the head's
// buffer holds them; without the log, nothing reads the clock.
func (s *session) beginAccount() {
	s.acct = account{bytes: s.cw.n}
	if s.p.AccessLog != nil {
		s.acct.start = time.Now()
		if s.rec == nil {
			s.rec = new(accesslog.Record)
		}
		s.rec.SetRequest(s.req.method, s.req.target)
	}
}

// tried records that the request goes to b from now on.
func (s *session) tried(b *backend.Backend) { s.acct.b = b }

// headRead records the response head just parsed from b, when it is the
// final one (or a switch of protocols): its time goes to b's histogram.
func (s *session) headRead(b *backend.Backend) {
	if st := s.resp.status; st >= 200 || st == 101 {
		s.acct.head = time.Since(s.acct.sent)
		s.acct.status = st
		b.ObserveResponseHead(s.acct.head)
	}
}

// cookie returns what the request's persistence cookie did: no cookie is
// new, one naming no backend of the pool is tampered, one whose backend
// took the request is valid, and one whose backend did not (it could not
// keep the client, or failed it) is repinned, for the reason WhyRepin
// gives for the request's attempt try.
func (a *account) cookie(try *backend.Attempt) (accesslog.Outcome, backend.RepinReason) {
	switch {
	case !a.cookieSent:
		return accesslog.CookieNew, 0
	case a.named == nil:
		return accesslog.CookieTampered, 0
	case a.b == a.named:
		return accesslog.CookieValid, 0
	}
	return accesslog.CookieRepinned, try.WhyRepin(a.named)
}

// endAccount reports the request: to its backend's counts by status
// class, to the re-pin counts when its client moved to another backend, to
// the front door's request count, and to the access log.
func (s *session) endAccount() {
	a := &s.acct
	outcome, why := a.cookie(&s.try)
	if a.b != nil {
		a.b.CountResponse(a.status)
		if outcome == accesslog.CookieRepinned {
			s.p.Pool.Repins.Count(why)
		}
	}
	s.p.loop.Counts.Request()
	lg := s.p.AccessLog
	if lg == nil {
		return
	}
	r := s.rec
	r.Time = time.Now()
	r.Duration = r.Time.Sub(a.start)
	r.Client = s.from // the client a PROXY header named, or the peer
	r.Backend = ""
	if a.b != nil {
		r.Backend = a.b.ID
	}
	r.Status, r.Bytes, r.Head, r.Cookie = a.status, s.cw.n-a.bytes, a.head, outcome
	lg.Write(r)
}

// Counts returns the proxy's connection and request counts.
func (p *Proxy) Counts() *accept.Counts { return &p.loop.Counts }

package bench

import (
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sample is what the generator saw of one request.
type sample struct {
	start   time.Duration // since the run began
	latency time.Duration // until the whole answer was read, or the failure
	lag     time.Duration // how late the request started against its schedule
	backend int16         // index of the backend that answered; failed when < 0
	addr    uint8         // slot of the user's gateway pool the request came from
	door    uint8         // index of the front door (--instances) it went to
	sent    bool          // the request was attempted
}

func (s *sample) served() bool { return s.sent && s.backend >= 0 }

// generator plays the population's users against one front door. Each user
// is a browser with its own cookie jar that sends its requests in sequence,
// over a new connection each (or one kept-alive connection), from its
// gateway's source address. Request k of user u is due at
// duration*(k+phase)/requests into the run; at most concurrency requests
// are in flight at once. With a zero duration every request is due at once
// and the run goes as fast as concurrency allows.
type generator struct {
	pop         *Population
	requests    int
	duration    time.Duration
	concurrency int
	keepAlive   bool
	timeout     time.Duration
	targets     []string       // URL of each front door
	backends    map[string]int // backend id -> index, to read answers
	seed        uint64

	// poolSize is the number of addresses of each gateway's pool; churn
	// is the probability that a user's request moves it to another of
	// them, churnEvery the age at which its address moves regardless.
	poolSize   int
	churn      float64
	churnEvery time.Duration

	done   atomic.Int64 // requests finished, served or failed
	failed atomic.Int64

	// mu guards the fields below.
	mu         sync.Mutex
	queue      dueQueue
	pushes     uint64
	reasons    map[string]int
	transports map[netip.Addr]*http.Transport // per source address, without keep-alive
}

// failureReasons returns how many requests failed for each reason, nil
// when none did.
func (g *generator) failureReasons() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reasons) == 0 {
		return nil
	}
	return g.reasons
}

// pending is a user between two requests.
type pending struct {
	user   *User
	next   int           // index of the user's next request
	due    time.Duration // when it is due, from the run's start
	order  uint64        // ties on due go first in, first out
	client *http.Client

	slot    int           // the address of the gateway's pool the user sends from
	movedAt time.Duration // when slot last changed, from the run's start
	rng     *rand.Rand    // the user's own draws: churn
}

// dueQueue is a min-heap of users by the due time of their next request.
type dueQueue []*pending

func (q dueQueue) Len() int { return len(q) }
func (q dueQueue) Less(i, j int) bool {
	if q[i].due != q[j].due {
		return q[i].due < q[j].due
	}
	return q[i].order < q[j].order
}
func (q dueQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *dueQueue) Push(x any)   { *q = append(*q, x.(*pending)) }
func (q *dueQueue) Pop() any {
	old := *q
	n := len(old)
	p := old[n-1]
	old[n-1] = nil
	*q = old[:n-1]
	return p
}

// dueAt returns when request k of u is due.
func (g *generator) dueAt(u *User, k int) time.Duration {
	return time.Duration((float64(k) + u.Phase) / float64(g.requests) * float64(g.duration))
}

// total is the number of requests the run sends.
func (g *generator) total() int { return len(g.pop.Users) * g.requests }

// run sends every request of every user, scheduled from start, and returns
// one sample per request, indexed by user*requests+k, and the run's wall
// time. It returns early, with ctx's error, when ctx is done.
//
// A worker that finds the queue empty exits: every user still to send is
// then in flight, and the worker carrying it queues it again and goes on.
func (g *generator) run(ctx context.Context, start time.Time) ([]sample, time.Duration, error) {
	samples := make([]sample, g.total())
	g.reasons = make(map[string]int)
	g.transports = make(map[netip.Addr]*http.Transport)
	users := make([]*User, len(g.pop.Users))
	for i := range g.pop.Users {
		users[i] = &g.pop.Users[i]
	}
	// Pushed in phase order, so that with a zero duration users still
	// arrive in the order their phases give.
	slices.SortStableFunc(users, func(a, b *User) int {
		switch {
		case a.Phase < b.Phase:
			return -1
		case a.Phase > b.Phase:
			return 1
		}
		return 0
	})
	g.queue = make(dueQueue, 0, len(users))
	for _, u := range users {
		p := &pending{user: u, due: g.dueAt(u, 0), order: g.pushes, rng: rand.New(rand.NewPCG(g.seed, uint64(u.ID)))}
		if g.poolSize > 1 {
			p.slot = p.rng.IntN(g.poolSize)
		}
		g.queue = append(g.queue, p)
		g.pushes++
	}
	heap.Init(&g.queue)

	var wg sync.WaitGroup
	for range max(g.concurrency, 1) {
		wg.Go(func() { g.work(ctx, start, samples) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, t := range g.transports {
		t.CloseIdleConnections()
	}
	g.mu.Lock()
	for _, p := range g.queue {
		p.close()
	}
	g.queue = nil
	g.mu.Unlock()
	return samples, elapsed, ctx.Err()
}

// work takes the user whose request is due first, waits for it, sends it,
// and queues the user's next request, until no user has one left.
func (g *generator) work(ctx context.Context, start time.Time, samples []sample) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.mu.Unlock()
			return
		}
		p := heap.Pop(&g.queue).(*pending)
		g.mu.Unlock()

		if wait := p.due - time.Since(start); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			p.close()
			return
		}
		g.churnAddress(p, time.Since(start))
		if p.client == nil {
			p.client = g.newClient(p)
		}
		g.send(ctx, p, start, &samples[p.user.ID*g.requests+p.next])
		p.next++
		if p.next == g.requests {
			p.close()
			continue
		}
		p.due = g.dueAt(p.user, p.next)
		g.mu.Lock()
		p.order = g.pushes
		g.pushes++
		heap.Push(&g.queue, p)
		g.mu.Unlock()
	}
}

// close drops the user's browser, with its kept-alive connection if any.
func (p *pending) close() {
	if p.client == nil {
		return
	}
	if t, ok := p.client.Transport.(*http.Transport); ok && t != nil {
		t.CloseIdleConnections()
	}
	p.client = nil
}

// churnAddress moves p's user to another address of its gateway's pool
// before a request after its first: with probability churn, or when its
// address is churnEvery old. The browser keeps its cookie jar; with
// keep-alive its connection goes, since a NAT's new address is a new
// connection.
func (g *generator) churnAddress(p *pending, now time.Duration) {
	if p.next == 0 || g.poolSize < 2 {
		return
	}
	move := g.churn > 0 && p.rng.Float64() < g.churn
	if g.churnEvery > 0 && now-p.movedAt >= g.churnEvery {
		move = true
	}
	if !move {
		return
	}
	// Another slot, uniformly among the pool's other addresses.
	p.slot = (p.slot + 1 + p.rng.IntN(g.poolSize-1)) % g.poolSize
	p.movedAt = now
	if p.client != nil && g.keepAlive {
		p.client.Transport.(*http.Transport).CloseIdleConnections()
		p.client.Transport = g.newTransport(g.addr(p))
	} else if p.client != nil {
		p.client.Transport = g.sharedTransport(g.addr(p))
	}
}

// addr is the source address p's user sends from now.
func (g *generator) addr(p *pending) netip.Addr {
	return poolAddr(p.user.Gateway, p.slot, g.poolSize)
}

// newClient returns a browser for p's user: its own cookie jar, dialing
// from its address. Without keep-alive the users of one address share a
// transport, which then holds no connections.
func (g *generator) newClient(p *pending) *http.Client {
	jar, _ := cookiejar.New(nil) // never fails without options
	var t *http.Transport
	if g.keepAlive {
		t = g.newTransport(g.addr(p))
	} else {
		t = g.sharedTransport(g.addr(p))
	}
	var j http.CookieJar = jar
	if len(g.targets) > 1 {
		vip, _ := url.Parse(g.targets[0]) // the lab's own URL: it parses
		j = oneSite{jar: jar, site: vip}
	}
	return &http.Client{Transport: t, Jar: j, Timeout: g.timeout}
}

// oneSite is a browser's cookie jar when the front doors are several
// instances: their loopback addresses differ, but to the browser they are
// one site, as instances behind one virtual address are, so the cookies
// of each are the cookies of all.
type oneSite struct {
	jar  http.CookieJar
	site *url.URL
}

func (o oneSite) SetCookies(_ *url.URL, cs []*http.Cookie) { o.jar.SetCookies(o.site, cs) }
func (o oneSite) Cookies(_ *url.URL) []*http.Cookie        { return o.jar.Cookies(o.site) }

// sharedTransport returns the transport without keep-alive of source
// address a.
func (g *generator) sharedTransport(a netip.Addr) *http.Transport {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.transports[a]
	if t == nil {
		t = g.newTransport(a)
		g.transports[a] = t
	}
	return t
}

func (g *generator) newTransport(gw netip.Addr) *http.Transport {
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: gw.AsSlice()},
		Timeout:   g.timeout,
		Control:   bindAddressNoPort,
	}
	return &http.Transport{
		Proxy:       nil,
		DialContext: d.DialContext,
		// An https:// front door: a TLS-terminating lbctl or --target.
		// The lab measures sessions, not certificates, so it takes any
		// (a test certificate, typically), and resumes sessions per
		// source address as browsers do per browser.
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true,
			ClientSessionCache: tls.NewLRUClientSessionCache(0),
		},
		DisableKeepAlives:     !g.keepAlive,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: g.timeout,
	}
}

// send makes one request of p's user and fills in its sample.
func (g *generator) send(ctx context.Context, p *pending, start time.Time, s *sample) {
	begin := time.Since(start)
	s.sent = true
	s.start = begin
	s.lag = max(begin-p.due, 0)
	s.backend = -1
	s.addr = uint8(p.slot)
	door := g.door(p.user.ID, p.next)
	s.door = uint8(door)
	id, err := g.fetch(ctx, p.client, g.targets[door], p.user.ID, p.user.ID*g.requests+p.next)
	s.latency = time.Since(start) - begin
	if err == nil {
		if b, ok := g.backends[id]; ok {
			s.backend = int16(b)
		} else {
			err = fmt.Errorf("answer %q names no backend", id)
		}
	}
	if err != nil {
		g.failed.Add(1)
		g.mu.Lock()
		g.reasons[failureReason(err)]++
		g.mu.Unlock()
	}
	g.done.Add(1)
}

// door returns the front door request k of user goes to: with several
// (--instances), a hash of the user, the request and the seed, as ECMP
// spreads connections by their addresses and ports.
func (g *generator) door(user, k int) int {
	if len(g.targets) < 2 {
		return 0
	}
	x := g.seed ^ uint64(user)<<24 ^ uint64(k) ^ 0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x % uint64(len(g.targets)))
}

// fetch sends one GET to the front door at target and returns the id of
// the backend that answered.
func (g *generator) fetch(ctx context.Context, c *http.Client, target string, user, request int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(headerUser, strconv.Itoa(user))
	req.Header.Set(headerRequest, strconv.Itoa(request))
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &statusError{resp.StatusCode}
	}
	return strings.TrimSpace(string(body)), nil
}

// statusError is an answer other than 200 OK, such as L7's 503 when no
// backend is available.
type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + strconv.Itoa(e.code) }

// failureReason sorts a failed request into a few kinds for the report.
func failureReason(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no source port"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

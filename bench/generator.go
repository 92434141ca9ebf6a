package bench

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
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
	target      string         // URL of the front door
	backends    map[string]int // backend id -> index, to read answers

	done   atomic.Int64 // requests finished, served or failed
	failed atomic.Int64

	// mu guards the fields below.
	mu         sync.Mutex
	queue      dueQueue
	pushes     uint64
	reasons    map[string]int
	transports map[int]*http.Transport // per gateway, without keep-alive
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
	g.transports = make(map[int]*http.Transport)
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
		g.queue = append(g.queue, &pending{user: u, due: g.dueAt(u, 0), order: g.pushes})
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
		if p.client == nil {
			p.client = g.newClient(p.user)
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

// newClient returns a browser for u: its own cookie jar, dialing from its
// gateway's address. Without keep-alive the users of one gateway share a
// transport, which then holds no connections.
func (g *generator) newClient(u *User) *http.Client {
	jar, _ := cookiejar.New(nil) // never fails without options
	var t *http.Transport
	if g.keepAlive {
		t = g.newTransport(g.pop.Gateways[u.Gateway].Addr)
	} else {
		g.mu.Lock()
		t = g.transports[u.Gateway]
		if t == nil {
			t = g.newTransport(g.pop.Gateways[u.Gateway].Addr)
			g.transports[u.Gateway] = t
		}
		g.mu.Unlock()
	}
	return &http.Client{Transport: t, Jar: jar, Timeout: g.timeout}
}

func (g *generator) newTransport(gw netip.Addr) *http.Transport {
	d := &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: gw.AsSlice()},
		Timeout:   g.timeout,
		Control:   bindAddressNoPort,
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
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
	id, err := g.fetch(ctx, p.client, p.user.ID, p.user.ID*g.requests+p.next)
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

// fetch sends one GET to the front door and returns the id of the backend
// that answered.
func (g *generator) fetch(ctx context.Context, c *http.Client, user, request int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.target, nil)
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

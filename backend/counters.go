package backend

import (
	"sync/atomic"
	"time"
)

// counters are what the data path counts of one backend beyond its active
// connections and requests served, each an atomic that the data path adds
// to and the metrics read at scrape time: no lock, no allocation.
type counters struct {
	connects        atomic.Uint64 // connections opened to the backend
	connectFailures atomic.Uint64 // connection attempts that failed
	responses       [5]atomic.Uint64
	head            headHistogram
}

// CountConnected records one connection opened to the backend. Dial counts
// its own; a data path that connects by other means (the L4 event loop)
// calls it when its connect completes.
func (b *Backend) CountConnected() { b.stats.connects.Add(1) }

// CountConnectFailure records one failed attempt to connect to the backend
// (refused, reset, timed out, unreachable, or no local port left). Dial
// counts its own.
func (b *Backend) CountConnectFailure() { b.stats.connectFailures.Add(1) }

// Connections returns how many connections were opened to the backend.
func (b *Backend) Connections() uint64 { return b.stats.connects.Load() }

// ConnectFailures returns how many attempts to connect to the backend failed.
func (b *Backend) ConnectFailures() uint64 { return b.stats.connectFailures.Load() }

// CountResponse records one L7 request sent to the backend, by the class of
// the status its client got (1xx to 5xx); other statuses are not counted.
func (b *Backend) CountResponse(status int) {
	if c := status/100 - 1; c >= 0 && c < len(b.stats.responses) {
		b.stats.responses[c].Add(1)
	}
}

// Responses returns the L7 requests sent to the backend by status class:
// [0] counts 1xx, [4] counts 5xx.
func (b *Backend) Responses() [5]uint64 {
	var out [5]uint64
	for i := range out {
		out[i] = b.stats.responses[i].Load()
	}
	return out
}

// ObserveResponseHead records how long the backend took to send a response
// head, from the request sent.
func (b *Backend) ObserveResponseHead(d time.Duration) { b.stats.head.observe(d) }

// ResponseHead returns the histogram of the backend's response-head times.
func (b *Backend) ResponseHead() Histogram { return b.stats.head.snapshot() }

// HeadBuckets are the upper bounds of the response-head histogram: 0.5 ms
// to 10 s, about three to a decade.
var HeadBuckets = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// headHistogram counts observations in fixed buckets (HeadBuckets, then
// one for anything longer), each an atomic.
type headHistogram struct {
	buckets [len(HeadBuckets) + 1]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

func (h *headHistogram) observe(d time.Duration) {
	i := 0
	for i < len(HeadBuckets) && d > HeadBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Histogram is a read of a histogram: the count of each bucket of
// HeadBuckets (not cumulative; the last counts what is above them all),
// and the sum of the observations.
type Histogram struct {
	Buckets [len(HeadBuckets) + 1]uint64
	Sum     time.Duration
}

// Count returns the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

func (h *headHistogram) snapshot() Histogram {
	var out Histogram
	for i := range h.buckets {
		out.Buckets[i] = h.buckets[i].Load()
	}
	out.Sum = time.Duration(h.sum.Load())
	return out
}

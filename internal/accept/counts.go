package accept

import "sync/atomic"

// Counts are a front door's totals for the stats and metrics: connections
// accepted, connections open, (L7) requests read on them, and connections
// refused for their PROXY protocol header. The zero value is ready; the
// data path adds to it without a lock.
type Counts struct {
	accepted     atomic.Uint64
	open         atomic.Int64
	requests     atomic.Uint64
	proxyRefused atomic.Uint64
}

// Opened records one accepted connection, which is open until Closed.
func (c *Counts) Opened() {
	c.accepted.Add(1)
	c.open.Add(1)
}

// Closed records the end of a connection counted by Opened.
func (c *Counts) Closed() { c.open.Add(-1) }

// RefusedProxy records a connection refused for its PROXY protocol
// header: from a peer not in listen_proxy, or with no valid header in
// time. The connection is still counted by Opened and Closed.
func (c *Counts) RefusedProxy() { c.proxyRefused.Add(1) }

// ProxyRefused returns how many connections RefusedProxy recorded.
func (c *Counts) ProxyRefused() uint64 { return c.proxyRefused.Load() }

// Request records one request read from a client.
func (c *Counts) Request() { c.requests.Add(1) }

// Accepted returns how many connections were accepted.
func (c *Counts) Accepted() uint64 { return c.accepted.Load() }

// Open returns how many accepted connections are open.
func (c *Counts) Open() int64 { return c.open.Load() }

// Requests returns how many requests were read.
func (c *Counts) Requests() uint64 { return c.requests.Load() }

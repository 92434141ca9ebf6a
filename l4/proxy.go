// Package l4 is lbctl's TCP front door: it keys each client by its source
// address, keeps that key pinned to one backend in an affinity table, and
// splices bytes both ways between the client and the backend.
package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accept"
	"github.com/lbctl/lbctl/internal/asynclog"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// ErrProxyClosed is returned by Serve after Shutdown or Close.
var ErrProxyClosed = accept.ErrClosed

// DefaultConnectTimeout bounds a backend dial when Proxy.ConnectTimeout is zero.
const DefaultConnectTimeout = 3 * time.Second

// Proxy accepts TCP connections and relays each one to the backend its
// client is pinned to. Pool, Selector and Table must be set before Serve;
// the other fields have working zero values. A Proxy must not be copied
// after first use.
type Proxy struct {
	// Pool is the backend pool. A reload of it takes effect at each
	// client's next connection; open connections are left as they are.
	// The event loop never resolves names: a backend that a reload gives
	// a host name is skipped there (not counted as failing) until a
	// restart, which serves the pool on the portable engine.
	Pool *backend.Pool
	// Selector chooses a backend for clients without a usable pin.
	// Selector, ConnectTimeout and IdleTimeout are read when Serve is first
	// called; Reconfigure changes them after that.
	Selector backend.Selector
	// Table holds the client-to-backend pins.
	Table *affinity.Table
	// Health receives dial failures as failed checks (passive health). Nil
	// means dial failures only steer the connection to another backend.
	Health *backend.Prober
	// ConnectTimeout bounds each backend dial. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection after this long with no bytes in
	// either direction. Zero means no idle timeout.
	IdleTimeout time.Duration
	// ProxyProtocol, when its From is set, makes the listener take its
	// clients' addresses from the PROXY protocol headers of the
	// balancers in front of it (see proxyproto.go).
	ProxyProtocol proxyproto.Policy
	// Logger receives accept errors, and refused clients at debug level.
	// Nil means slog.Default(). The event loop never writes to it (or to
	// Health's logger) itself: it hands its lines to a goroutine of the
	// proxy, so that a stalled log output costs lines (dropped, then
	// counted in a line of their own) and never stalls traffic.
	Logger *slog.Logger

	// goroutines makes Serve use a goroutine per connection over
	// net.TCPConn even where the event loop could serve; tests set it to
	// cover the portable engine on Linux.
	goroutines bool

	init  sync.Once
	loop  accept.Loop              // the portable engine
	tuned atomic.Pointer[settings] // what new connections use: see Reconfigure

	// What the event loops log through: a queue that a goroutine, started
	// with the first loop and stopped by Shutdown or Close once every loop
	// has ended, writes to Logger and to Health's logger.
	logq       *asynclog.Queue
	loopLog    *slog.Logger    // Logger, through logq
	loopHealth *backend.Prober // Health, logging through logq

	// The event loops serving listeners (one per Serve call), and the
	// requests they act on when woken.
	mu       sync.Mutex
	loops    map[*eventLoop]struct{} // to wake
	running  sync.WaitGroup          // one per loop, until its descriptors are closed
	stopping atomic.Bool             // stop accepting; end once connections have
	aborting atomic.Bool             // close every connection now
	// Listeners that StopAccepting retired before an event loop for them
	// registered: addLoop retires such a loop at once.
	retired map[net.Listener]struct{}

	// The portable engine's open connections, by client connection, for
	// CloseConns.
	relaysMu sync.Mutex
	relays   map[*net.TCPConn]relay
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// settings returns the fields that Reconfigure replaces.
func (p *Proxy) settings() Settings {
	return Settings{Selector: p.Selector, ConnectTimeout: p.ConnectTimeout, IdleTimeout: p.IdleTimeout}
}

func (p *Proxy) setup() {
	p.init.Do(func() {
		p.loop.Handle = p.handle
		p.loop.Logger = p.Logger
		// A missing Selector is Serve's error to report; the
		// settings then wait for one.
		if r, err := p.settings().resolve(); err == nil {
			p.tuned.Store(r)
		}
		h := p.logger().Handler()
		p.logq = asynclog.New(logQueue, h)
		p.loopLog = slog.New(p.logq.Wrap(h))
		p.loopHealth = p.Health.WithLogHandler(p.logq.Wrap)
	})
}

// Serve accepts connections on ln and relays each to its backend until ln
// fails or the proxy is shut down, in which case it returns ErrProxyClosed.
// Temporary accept errors (such as running out of file descriptors) are
// retried with a backoff from 5ms doubling to 1s. Serve closes ln when it
// returns.
//
// On Linux, when ln is a TCP listener and every backend address is an IP
// literal when Serve is called, one event loop in the calling goroutine serves every connection
// of ln (see eventLoop); otherwise each connection gets its own goroutine.
// The event loop takes ln's socket over at once: ln itself is closed when
// the loop starts, and the socket when Serve returns.
func (p *Proxy) Serve(ln net.Listener) error {
	if p.Pool == nil || p.Selector == nil || p.Table == nil {
		ln.Close()
		return errors.New("l4: Proxy needs Pool, Selector and Table")
	}
	p.setup()
	if p.tuned.Load() == nil {
		// Set after a setup that found no Selector.
		r, err := p.settings().resolve()
		if err != nil {
			ln.Close()
			return err
		}
		p.tuned.CompareAndSwap(nil, r)
	}
	if !p.goroutines {
		if l, err := p.newEventLoop(ln); err != nil {
			ln.Close()
			return err
		} else if l != nil {
			return l.run()
		}
	}
	defer p.forgetRetired(ln)
	return p.loop.Serve(ln)
}

// StopAccepting stops accepting on ln, a listener that Serve serves, and
// leaves the connections accepted there to run on: the proxy keeps
// serving its other listeners, and Shutdown still waits for (or closes)
// those connections. Serve(ln) then returns an error wrapping
// net.ErrClosed: at once with a goroutine per connection, once the last of
// its connections has ended with an event loop. A reload uses it to move
// the proxy to a new listen address.
func (p *Proxy) StopAccepting(ln net.Listener) {
	p.mu.Lock()
	found := false
	for l := range p.loops {
		if l.listener() == ln {
			l.retire()
			found = true
		}
	}
	if !found {
		// Its loop may not have registered yet; the portable engine
		// stops when ln closes below.
		if p.retired == nil {
			p.retired = make(map[net.Listener]struct{})
		}
		p.retired[ln] = struct{}{}
	}
	p.mu.Unlock()
	ln.Close()
}

// forgetRetired drops ln from the listeners retired before their loop
// registered, once its Serve has returned.
func (p *Proxy) forgetRetired(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.retired, ln)
}

// logQueue is how many log lines of the event loops may wait for the
// writer; more are dropped. The loops log rarely (accept failures, backend
// transitions, refused clients at debug level).
const logQueue = 256

// Shutdown stops accepting, then waits for open connections to finish on
// their own. When ctx ends first, the remaining connections are closed and
// ctx's error is returned once their handlers have exited. The event
// loops' last log lines are then written, for as long as ctx allows.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.setup()
	p.stopping.Store(true)
	p.wakeLoops()
	err := p.loop.Shutdown(ctx)
	done := make(chan struct{})
	go func() {
		p.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.logq.Stop()
		select {
		case <-p.logq.Done():
		case <-ctx.Done(): // a stalled log output
		}
		return err
	case <-ctx.Done():
	}
	p.aborting.Store(true)
	p.wakeLoops()
	<-done
	p.logq.Stop()
	return ctx.Err()
}

// Close stops accepting and closes every open connection at once, returning
// after their handlers have exited. The event loops' log writer is told to
// stop; Close does not wait for it to write what is queued.
func (p *Proxy) Close() error {
	p.setup()
	p.stopping.Store(true)
	p.aborting.Store(true)
	p.wakeLoops()
	err := p.loop.Close()
	p.running.Wait()
	p.logq.Stop()
	return err
}

// addLoop registers a new event loop, unless the proxy is stopping. A loop
// added here is one that Shutdown and Close, which set stopping before
// they wake the loops (under the same lock), will wait for.
func (p *Proxy) addLoop(l *eventLoop) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping.Load() {
		return false
	}
	if p.loops == nil {
		p.loops = make(map[*eventLoop]struct{})
	}
	p.loops[l] = struct{}{}
	p.running.Add(1)
	p.logq.Start()
	if _, ok := p.retired[l.listener()]; ok {
		l.retire()
	}
	return true
}

// removeLoop takes l out of the set that wakeLoops writes to.
func (p *Proxy) removeLoop(l *eventLoop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.loops, l)
	delete(p.retired, l.listener())
}

// wakeLoops makes every event loop look at stopping and aborting.
func (p *Proxy) wakeLoops() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.loops {
		l.wake()
	}
}

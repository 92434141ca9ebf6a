// Package testbackend owns the killable backend that lbctl's tests, the
// bench lab and `serve --demo` put behind the proxy: a real server on a
// loopback port that answers with its id, counts what it serves, and can
// be killed (its listener and every open connection closed, as a crash
// would) and revived on the same address.
//
// It speaks one of two protocols. An HTTP backend (StartHTTP) answers
// GET /healthz with 200, or 500 once SetHealthy(false), and every other
// request with its handler, by default its id on a line and in an
// X-Backend header. A TCP backend (StartTCP) greets each connection with
// its id on a line, then echoes until the client half-closes; one started
// with StartTCPFunc serves each connection as the test says, for a test of
// an exact wire framing. Either way this package is the one mechanism of a
// backend that listens, counts, comes and goes, and leaves no goroutine or
// connection behind once killed.
package testbackend

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// HealthPath is the path an HTTP backend answers health checks on.
const HealthPath = "/healthz"

// Backend is one killable backend on loopback.
type Backend struct {
	id      string
	addr    string         // fixed by the first listen; Revive listens here again
	handler http.Handler   // HTTP: serves what is not a health check
	serve   func(net.Conn) // TCP: what each connection gets; nil for HTTP
	healthy atomic.Bool    // HTTP: what HealthPath answers
	served  atomic.Int64   // requests (HTTP) or connections (TCP) served
	opened  atomic.Int64   // connections accepted
	serving sync.WaitGroup // the accept loop, and TCP connections' goroutines

	mu    sync.Mutex // guards what follows
	ln    net.Listener
	srv   *http.Server // HTTP, while alive
	conns map[net.Conn]struct{}
}

// StartHTTP starts an HTTP backend named id on a free loopback port. A nil
// handler answers every request with the id (see Answer).
func StartHTTP(id string, handler http.Handler) (*Backend, error) {
	if handler == nil {
		handler = Answer(id)
	}
	b := &Backend{id: id, handler: handler}
	b.healthy.Store(true)
	return b, b.listen("127.0.0.1:0")
}

// StartHTTPOn is StartHTTP on a fixed address, such as one an operator
// has configured another load balancer with.
func StartHTTPOn(id, addr string, handler http.Handler) (*Backend, error) {
	if handler == nil {
		handler = Answer(id)
	}
	b := &Backend{id: id, handler: handler}
	b.healthy.Store(true)
	return b, b.listen(addr)
}

// StartTCP starts a TCP backend named id on a free loopback port: it
// writes its id and a newline to each connection, then echoes until the
// client half-closes, then closes.
func StartTCP(id string) (*Backend, error) {
	return StartTCPFunc(id, func(c net.Conn) {
		fmt.Fprintf(c, "%s\n", id)
		io.Copy(c, c)
	})
}

// StartTCPFunc starts a TCP backend named id on a free loopback port that
// serves each connection with serve, in a goroutine of its own, and closes
// the connection when serve returns. Kill closes the connections serve
// still holds and waits for every serve to return, so a serve must end
// once its connection fails. It is for a test that needs a backend of its
// own framing (a PROXY header first, a canned response, a reply only after
// the client's FIN) with the lifetime of every other backend here.
func StartTCPFunc(id string, serve func(c net.Conn)) (*Backend, error) {
	b := &Backend{id: id, serve: serve}
	return b, b.listen("127.0.0.1:0")
}

// Answer is the default HTTP handler: it sets X-Backend to id and writes
// id and a newline.
func Answer(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", id)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, id+"\n")
	})
}

// ID returns the backend's id.
func (b *Backend) ID() string { return b.id }

// Addr returns the backend's address, the same across Kill and Revive.
func (b *Backend) Addr() string { return b.addr }

// Served returns how many requests (HTTP, health checks left out) or
// connections (TCP) the backend has served.
func (b *Backend) Served() int64 { return b.served.Load() }

// Accepted returns how many connections the backend has accepted.
func (b *Backend) Accepted() int64 { return b.opened.Load() }

// OpenConns returns how many connections the backend has open.
func (b *Backend) OpenConns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// SetHealthy sets what an HTTP backend's health checks answer: 200 when
// true (from the start), 500 when false.
func (b *Backend) SetHealthy(up bool) { b.healthy.Store(up) }

// Alive reports whether the backend listens (it has not been killed, or
// has been revived since).
func (b *Backend) Alive() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ln != nil
}

// Kill closes the listener and every open connection, as a crash would,
// and returns once the accept loop (and a TCP backend's connections) have
// ended. It reports whether the backend was alive.
func (b *Backend) Kill() bool {
	b.mu.Lock()
	ln, srv := b.ln, b.srv
	b.ln, b.srv = nil, nil
	if srv == nil {
		for c := range b.conns {
			c.Close()
		}
	}
	b.mu.Unlock()
	if ln == nil {
		return false
	}
	if srv != nil {
		srv.Close() // the listener and every connection
	} else {
		ln.Close()
	}
	b.serving.Wait()
	return true
}

// Revive listens on the backend's address again, if it was killed.
func (b *Backend) Revive() error {
	if b.Alive() {
		return nil
	}
	return b.listen(b.addr)
}

// quietLog swallows net/http's complaints about connections that Kill
// cuts on purpose.
var quietLog = log.New(io.Discard, "", 0)

// listen opens addr and serves it.
func (b *Backend) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("backend %s: listen on %s: %w", b.id, addr, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addr = ln.Addr().String()
	b.ln = ln
	if b.conns == nil {
		b.conns = make(map[net.Conn]struct{})
	}
	if b.serve != nil {
		b.serving.Go(func() { b.acceptTCP(ln) })
		return nil
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(b.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          quietLog,
		ConnState:         b.track,
	}
	b.srv = srv
	b.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			quietLog.Printf("backend %s: %v", b.id, err)
		}
	})
	return nil
}

// track keeps the set of an HTTP backend's open connections.
func (b *Backend) track(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s {
	case http.StateNew:
		b.opened.Add(1)
		b.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(b.conns, c)
	}
}

func (b *Backend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath {
		if !b.healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok\n")
		return
	}
	b.served.Add(1)
	b.handler.ServeHTTP(w, r)
}

// acceptTCP serves a TCP backend's connections until ln closes.
func (b *Backend) acceptTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.ln != ln { // killed meanwhile
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.opened.Add(1)
		b.served.Add(1)
		b.serving.Go(func() {
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			b.serve(c)
		})
	}
}

// Specs returns the pool specs of bs (weight 1), leaving out the backend
// named drop, followed by extra: what a test hands backend.Pool.Reload.
func Specs[B interface {
	ID() string
	Addr() string
}](bs []B, drop string, extra ...backend.Spec) []backend.Spec {
	var out []backend.Spec
	for _, b := range bs {
		if b.ID() != drop {
			out = append(out, backend.Spec{ID: b.ID(), Address: b.Addr(), Weight: 1})
		}
	}
	return append(out, extra...)
}

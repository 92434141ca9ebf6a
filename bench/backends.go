package bench

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Headers a lab request carries, so that backends can record whose request
// they served.
const (
	headerUser    = "X-Lab-User"
	headerRequest = "X-Lab-Request"
)

// labBackend is one in-process HTTP backend of the lab: it answers every
// request with its id and records which user sent it. Kill closes its
// listener and open connections, as a crash would; restart serves again on
// the same address.
type labBackend struct {
	id    string
	index int
	addr  string // fixed by the first listen; restart listens here again

	// mu guards srv and records. srv is nil while the backend is killed.
	mu      sync.Mutex
	srv     *http.Server
	records []record

	serving sync.WaitGroup // one per running Serve
}

// record is one request a backend answered (or began to answer).
type record struct {
	user    int32
	request int32 // index of the request in the run: user*requests + k
}

func startBackend(id string, index int) (*labBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", id, err)
	}
	b := &labBackend{id: id, index: index, addr: ln.Addr().String()}
	b.serve(ln)
	return b, nil
}

// quietLog swallows net/http's own complaints about connections the lab
// cuts on purpose.
var quietLog = log.New(io.Discard, "", 0)

func (b *labBackend) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", b.answer)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          quietLog,
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	b.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			quietLog.Printf("backend %s: %v", b.id, err)
		}
	})
}

// answer records the request's user and writes the backend's id.
func (b *labBackend) answer(w http.ResponseWriter, r *http.Request) {
	user, uerr := strconv.ParseInt(r.Header.Get(headerUser), 10, 32)
	req, rerr := strconv.ParseInt(r.Header.Get(headerRequest), 10, 32)
	if uerr == nil && rerr == nil {
		b.mu.Lock()
		b.records = append(b.records, record{user: int32(user), request: int32(req)})
		b.mu.Unlock()
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, b.id+"\n")
}

// kill closes the listener and every open connection. It reports whether
// the backend was running.
func (b *labBackend) kill() bool {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv == nil {
		return false
	}
	srv.Close()
	b.serving.Wait()
	return true
}

// restart listens on the backend's address again, if it was killed.
func (b *labBackend) restart() error {
	b.mu.Lock()
	running := b.srv != nil
	b.mu.Unlock()
	if running {
		return nil
	}
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		return fmt.Errorf("recover backend %s on %s: %w", b.id, b.addr, err)
	}
	b.serve(ln)
	return nil
}

// takeRecords returns what the backend recorded and starts a new record.
func (b *labBackend) takeRecords() []record {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.records
	b.records = nil
	return r
}

// backendSet is the lab's backends, app-01 to app-NN.
type backendSet struct {
	all  []*labBackend
	byID map[string]*labBackend
}

// backendID names backend i (from 0) of n.
func backendID(i int) string { return fmt.Sprintf("app-%02d", i+1) }

func startBackends(n int) (*backendSet, error) {
	s := &backendSet{byID: make(map[string]*labBackend, n)}
	for i := range n {
		b, err := startBackend(backendID(i), i)
		if err != nil {
			s.close()
			return nil, err
		}
		s.all = append(s.all, b)
		s.byID[b.id] = b
	}
	return s, nil
}

// reset brings every killed backend back and clears the records, so that
// each run starts from the same state.
func (s *backendSet) reset() error {
	for _, b := range s.all {
		if err := b.restart(); err != nil {
			return err
		}
		b.takeRecords()
	}
	return nil
}

func (s *backendSet) close() {
	for _, b := range s.all {
		b.kill()
	}
}

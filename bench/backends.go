package bench

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/lbctl/lbctl/internal/testbackend"
)

// Headers a lab request carries, so that backends can record whose request
// they served.
const (
	headerUser    = "X-Lab-User"
	headerRequest = "X-Lab-Request"
)

// labBackend is one in-process HTTP backend of the lab (see
// testbackend.StartHTTP): it answers every request with its id and records
// which user sent it. kill crashes it; restart serves again on the same
// address.
type labBackend struct {
	*testbackend.Backend
	id    string
	index int
	addr  string // the same across kill and restart

	mu      sync.Mutex // guards records
	records []record
}

// record is one request a backend answered (or began to answer).
type record struct {
	user    int32
	request int32 // index of the request in the run: user*requests + k
}

// startBackend starts backend id on addr, or on a free port when addr is
// empty.
func startBackend(id string, index int, addr string) (*labBackend, error) {
	b := &labBackend{id: id, index: index}
	var tb *testbackend.Backend
	var err error
	if addr == "" {
		tb, err = testbackend.StartHTTP(id, http.HandlerFunc(b.answer))
	} else {
		tb, err = testbackend.StartHTTPOn(id, addr, http.HandlerFunc(b.answer))
	}
	if err != nil {
		return nil, err
	}
	b.Backend, b.addr = tb, tb.Addr()
	return b, nil
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

// kill closes the listener and every open connection, as a crash would.
// It reports whether the backend was running.
func (b *labBackend) kill() bool { return b.Kill() }

// restart listens on the backend's address again, if it was killed.
func (b *labBackend) restart() error {
	if err := b.Revive(); err != nil {
		return fmt.Errorf("recover backend %s on %s: %w", b.id, b.addr, err)
	}
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

// startBackends starts app-01..NN, on addrs when given (one each), and
// then the backends that --add joins later, in order.
func startBackends(n int, addrs []string, adds []Event) (*backendSet, error) {
	s := &backendSet{byID: make(map[string]*labBackend, n+len(adds))}
	ids := make([]string, 0, n+len(adds))
	for i := range n {
		ids = append(ids, backendID(i))
	}
	for _, e := range adds {
		ids = append(ids, e.Backend)
	}
	for i, id := range ids {
		addr := ""
		if i < len(addrs) {
			addr = addrs[i]
		}
		b, err := startBackend(id, i, addr)
		if err != nil {
			s.close()
			return nil, err
		}
		s.all = append(s.all, b)
		s.byID[b.id] = b
	}
	return s, nil
}

// ids returns the backends' ids by index.
func (s *backendSet) ids() []string {
	ids := make([]string, len(s.all))
	for i, b := range s.all {
		ids[i] = b.id
	}
	return ids
}

// takeRecords returns what each backend recorded, by index, and starts
// new records.
func (s *backendSet) takeRecords() [][]record {
	records := make([][]record, len(s.all))
	for i, b := range s.all {
		records[i] = b.takeRecords()
	}
	return records
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

// Package asynclog lets code that must never block, such as the L4 event
// loop, log through any slog.Handler: records go on a bounded queue that one
// goroutine writes out, and a record that finds the queue full is dropped
// and counted instead of waiting. A stalled log output (a full pipe on
// stderr) then costs log lines, never traffic.
package asynclog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DroppedMessage is the message of the record (at level Warn) that
// reports how many records were dropped, in its attribute "dropped",
// once the writer has caught up.
const DroppedMessage = "log records dropped: log output too slow"

// Queue is the hand-off between the code that logs and the goroutine that
// writes: handlers from Wrap put records on it, the writer started by
// Start takes them off. The zero value is not usable; use New.
type Queue struct {
	records chan record
	report  slog.Handler  // receives the dropped counts
	dropped atomic.Uint64 // records dropped since the last report

	mu    sync.Mutex // guards state
	state int
	stop  chan struct{}
	done  chan struct{}
}

const (
	idle = iota
	running
	stopped
)

// record is one queued record with the handler that is to write it.
type record struct {
	h slog.Handler
	r slog.Record
}

// New returns a queue of size records; report receives the record that
// says how many were dropped.
func New(size int, report slog.Handler) *Queue {
	return &Queue{
		records: make(chan record, max(size, 1)),
		report:  report,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Wrap returns a handler that hands each record for h to the queue without
// ever blocking: when the queue is full, the record is dropped and
// counted. Enabled, WithAttrs and WithGroup are h's own, so they must not
// block either (slog's built-in handlers do not).
func (q *Queue) Wrap(h slog.Handler) slog.Handler { return handler{q: q, h: h} }

// Start starts the writer goroutine. Records handed over before Start wait
// on the queue. Start does nothing after the first call or after Stop.
func (q *Queue) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != idle {
		return
	}
	q.state = running
	go q.write()
}

// Stop tells the writer to write what is queued, then the dropped count if
// any, and exit; it does not wait for that (see Done), since a stalled
// output holds the writer for as long as it stalls. Records handed over
// after Stop are not written.
func (q *Queue) Stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch q.state {
	case idle:
		close(q.done) // no writer will run
	case running:
		close(q.stop)
	}
	q.state = stopped
}

// Done is closed once the writer has exited after Stop (at once when it
// never started).
func (q *Queue) Done() <-chan struct{} { return q.done }

// write is the writer goroutine.
func (q *Queue) write() {
	defer close(q.done)
	for {
		select {
		case rec := <-q.records:
			q.emit(rec)
		case <-q.stop:
			// What was queued before Stop; later records are dropped.
			for range len(q.records) {
				q.emit(<-q.records)
			}
			q.reportDropped()
			return
		}
	}
}

// emit writes one record, then reports the records dropped meanwhile.
func (q *Queue) emit(rec record) {
	_ = rec.h.Handle(context.Background(), rec.r) // a log line that cannot be written has nowhere to go
	q.reportDropped()
}

// reportDropped writes how many records were dropped since it last did,
// if any were. The writer calls it after every record and when it stops,
// so a count waits at most for the next record.
func (q *Queue) reportDropped() {
	ctx := context.Background()
	n := q.dropped.Swap(0)
	if n == 0 || !q.report.Enabled(ctx, slog.LevelWarn) {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, DroppedMessage, 0)
	r.AddAttrs(slog.Uint64("dropped", n))
	_ = q.report.Handle(ctx, r)
}

// handler is a Queue's slog.Handler for one wrapped handler.
type handler struct {
	q *Queue
	h slog.Handler
}

func (h handler) Enabled(ctx context.Context, level slog.Level) bool { return h.h.Enabled(ctx, level) }

// Handle queues r, or drops it when the queue is full. The record is
// cloned: its caller may reuse its attributes once Handle returns.
func (h handler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.q.records <- record{h: h.h, r: r.Clone()}:
	default:
		h.q.dropped.Add(1)
	}
	return nil
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{q: h.q, h: h.h.WithAttrs(attrs)}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{q: h.q, h: h.h.WithGroup(name)}
}

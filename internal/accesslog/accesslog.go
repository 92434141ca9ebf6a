// Package accesslog writes one JSON line per L7 request or L4 connection,
// off the data path: the proxy copies a fixed-size Record into a bounded
// ring, one goroutine formats and writes the lines, and a record that finds
// the ring full is dropped and counted rather than waited for. A stalled
// output (a full pipe, a slow disk) then costs log lines, never traffic.
//
// Both front doors share it (L7 from its exchange, L4 from the end of a
// connection on either engine). A nil *Log is a log that is off: its
// methods do nothing, so that the data path tests one pointer.
package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is what an L7 request's persistence cookie did.
type Outcome uint8

const (
	// NoOutcome is an L4 connection, which has no cookie.
	NoOutcome Outcome = iota
	// CookieValid is a cookie that named a backend which kept the client.
	CookieValid
	// CookieNew is a request without a persistence cookie: the backend was
	// chosen, and the response pins the client with a new one.
	CookieNew
	// CookieRepinned is a cookie naming a backend that could not keep the
	// client (down, in maintenance, past its drain deadline, or failing
	// the request): the client moved and got a new cookie.
	CookieRepinned
	// CookieTampered is a cookie whose value names no backend of the pool: a
	// forged or altered token, or a backend a reload removed. The client
	// is placed as a new one.
	CookieTampered
)

// String returns "valid", "new", "repinned", "tampered", or "" for
// NoOutcome.
func (o Outcome) String() string {
	switch o {
	case CookieValid:
		return "valid"
	case CookieNew:
		return "new"
	case CookieRepinned:
		return "repinned"
	case CookieTampered:
		return "tampered"
	}
	return ""
}

// Sizes of a Record's inline fields. Longer methods and paths are cut,
// and the line says so ("path_cut": true).
const (
	MaxMethod = 16
	MaxPath   = 256
)

// Record is one line of the log. It holds everything by value (the method
// and path in arrays, the backend id as a string the pool already holds),
// so that copying it into the ring allocates nothing.
type Record struct {
	// Time is when the request or connection ended.
	Time time.Time
	// L4 marks a connection record; otherwise it is an L7 request.
	L4 bool
	// Client is the client's address and port.
	Client netip.AddrPort
	// Backend is the id of the backend that served, "" when none did.
	Backend string
	// Duration is how long the request (L7: from its head read to the
	// end of its response) or the connection (L4) lasted.
	Duration time.Duration

	// L7 only.
	Method    [MaxMethod]byte
	MethodLen uint8
	Path      [MaxPath]byte
	PathLen   uint16
	PathCut   bool
	Status    int
	Bytes     int64         // sent to the client: response head and body
	Head      time.Duration // from the request sent to the response head read; 0 when none came
	Cookie    Outcome

	// L4 only: bytes from the client to the backend and back.
	BytesIn, BytesOut int64
}

// SetRequest copies method and path into r, cutting them to fit.
func (r *Record) SetRequest(method, path []byte) {
	r.MethodLen = uint8(copy(r.Method[:], method))
	r.PathLen = uint16(copy(r.Path[:], path))
	r.PathCut = len(path) > MaxPath
}

// DefaultSize is the number of records the ring holds (about 1.7 MB, 424
// bytes a record): at 100,000 requests a second, 40 ms of output stall
// before lines drop.
const DefaultSize = 4096

// Log is the ring and its writer. Build it with New or Open; Close stops
// the writer. Write may be called from any number of goroutines.
type Log struct {
	slots []slot
	mask  uint64
	enq   atomic.Uint64 // the next position a producer takes
	deq   uint64        // the next position the writer reads; the writer's alone

	dropped atomic.Uint64
	written atomic.Uint64
	closed  atomic.Bool

	sleeping atomic.Bool   // the writer found the ring empty and waits on wake
	wake     chan struct{} // capacity 1
	wakeMask uint64        // a record whose position ends in these bits zero wakes the writer
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	out   io.Writer
	owned io.Closer // the file Open opened, closed by Close; nil for stdout
	dest  string
}

// slot is one record of the ring with the sequence number that tells whose
// turn it is (Vyukov's bounded queue): seq == pos, free for the producer
// of position pos; seq == pos+1, filled and waiting for the writer.
type slot struct {
	seq atomic.Uint64
	rec Record
}

// Open opens the log dest names: "stdout", or a file path, which is
// created (mode 0640) or appended to. "" is no log: nil, nil.
func Open(dest string, size int) (*Log, error) {
	switch dest {
	case "":
		return nil, nil
	case "stdout":
		l := New(os.Stdout, size)
		l.dest = dest
		return l, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	l := New(f, size)
	l.owned, l.dest = f, dest
	return l, nil
}

// New returns a log of size records (rounded up to a power of two; below 1
// means DefaultSize) writing to w, and starts its writer. Close does not
// close w.
func New(w io.Writer, size int) *Log {
	if size < 1 {
		size = DefaultSize
	}
	n := 1
	for n < size {
		n <<= 1
	}
	l := &Log{
		slots: make([]slot, n),
		mask:  uint64(n - 1),
		wake:  make(chan struct{}, 1),
		// A wake-up each quarter of the ring, so that the writer is
		// woken a few times per lap rather than once per record.
		wakeMask: uint64(max(n/4, 1) - 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		out:      w,
	}
	for i := range l.slots {
		l.slots[i].seq.Store(uint64(i))
	}
	go l.run()
	return l
}

// Dest returns what Open was given ("stdout" or the path); "" for a log
// built with New.
func (l *Log) Dest() string {
	if l == nil {
		return ""
	}
	return l.dest
}

// Write copies r into the ring and returns at once. When the ring is full
// or the log closed, the record is dropped and counted (see Dropped). It
// takes no lock and allocates nothing; on a nil Log it does nothing.
func (l *Log) Write(r *Record) {
	if l == nil {
		return
	}
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	for {
		pos := l.enq.Load()
		s := &l.slots[pos&l.mask]
		seq := s.seq.Load()
		switch {
		case seq == pos:
			if !l.enq.CompareAndSwap(pos, pos+1) {
				continue
			}
			s.rec = *r
			s.seq.Store(pos + 1)
			// Waking a goroutine costs more than writing a line, so a
			// sleeping writer is woken only once a quarter of the ring
			// has filled; below that, its timer (flushEvery) picks the
			// records up.
			if (pos+1)&l.wakeMask == 0 && l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
			return
		case seq < pos:
			// The writer has not freed this slot since the last lap:
			// the ring is full.
			l.dropped.Add(1)
			return
		}
		// Another producer took pos first; try the next one.
	}
}

// Dropped returns how many records were dropped because the ring was full
// (or the log closed).
func (l *Log) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written returns how many lines the writer has taken for the output:
// formatted into its buffer, which it writes out when the buffer fills or
// the ring runs empty. A reader of the output may see a line a moment
// after Written counts it.
func (l *Log) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// Close stops taking records, lets the writer write what the ring holds
// and flush, and waits for it to exit until ctx ends. An output that stalls
// past ctx loses the rest: a file Open opened is closed under the writer
// (which unblocks a write to a pipe or a socket at once, and a write to a
// disk file when the disk answers), and the writer exits when its write
// returns; Close does not wait for that. Close returns the error of
// closing the file, or ctx's.
func (l *Log) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.closed.Store(true)
	l.stopOnce.Do(func() { close(l.stop) })
	var err error
	select {
	case <-l.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if l.owned != nil {
		if cerr := l.owned.Close(); cerr != nil && !errors.Is(cerr, os.ErrClosed) && err == nil {
			err = fmt.Errorf("close access log %s: %w", l.dest, cerr)
		}
	}
	return err
}

// flushAt is how many formatted bytes the writer gathers before a write
// while records keep coming; an empty ring flushes at once.
const flushAt = 32 << 10

// flushEvery is how often a sleeping writer looks at the ring: the longest
// a line waits when traffic is light.
const flushEvery = 50 * time.Millisecond

// run is the writer goroutine: it formats the records in ring order into a
// buffer and writes it when it fills or the ring runs empty; then it
// sleeps until a wake-up, its timer or stop. After stop it writes what is
// left.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	w := bufio.NewWriterSize(l.out, flushAt+1024)
	line := make([]byte, 0, 1024)
	failed := false // the output failed: lines are dropped from then on
	for {
		n := 0
		for ; ; n++ {
			s := &l.slots[l.deq&l.mask]
			if s.seq.Load() != l.deq+1 {
				break
			}
			line = appendRecord(line[:0], &s.rec)
			s.seq.Store(l.deq + l.mask + 1)
			l.deq++
			if failed {
				l.dropped.Add(1)
				continue
			}
			if _, err := w.Write(line); err != nil {
				failed = true
				l.dropped.Add(1)
				continue
			}
			l.written.Add(1)
		}
		if n > 0 {
			continue // look again before flushing: more may have come
		}
		if !failed && w.Flush() != nil {
			failed = true
		}
		l.sleeping.Store(true)
		select {
		case <-l.wake:
		case <-tick.C:
		case <-l.stop:
			l.sleeping.Store(false)
			if l.ready() {
				continue // write what came before the close
			}
			return
		}
		l.sleeping.Store(false)
	}
}

// ready reports whether the next record is in the ring.
func (l *Log) ready() bool {
	return l.slots[l.deq&l.mask].seq.Load() == l.deq+1
}

// appendRecord appends r as one JSON line.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	if r.L4 {
		b = append(b, `","mode":"l4","client":"`...)
	} else {
		b = append(b, `","mode":"l7","client":"`...)
	}
	b = r.Client.AppendTo(b)
	b = append(b, `","backend":`...)
	if r.Backend == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, r.Backend)
	}
	if r.L4 {
		b = append(b, `,"bytes_in":`...)
		b = strconv.AppendInt(b, r.BytesIn, 10)
		b = append(b, `,"bytes_out":`...)
		b = strconv.AppendInt(b, r.BytesOut, 10)
	} else {
		b = append(b, `,"method":`...)
		b = appendString(b, r.Method[:r.MethodLen])
		b = append(b, `,"path":`...)
		b = appendString(b, r.Path[:r.PathLen])
		if r.PathCut {
			b = append(b, `,"path_cut":true`...)
		}
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
		b = append(b, `,"bytes":`...)
		b = strconv.AppendInt(b, r.Bytes, 10)
		b = append(b, `,"head_ms":`...)
		b = appendMillis(b, r.Head)
		b = append(b, `,"cookie":"`...)
		b = append(b, r.Cookie.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, r.Duration)
	return append(b, "}\n"...)
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(b []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

// appendString appends s as a JSON string. Bytes outside printable ASCII
// are written as \u00XX escapes, so that any request target gives valid
// JSON (a non-ASCII byte reads as the Latin-1 character of its value).
func appendString[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

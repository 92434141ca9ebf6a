package l7

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// errHeadTooLarge means a head did not fit in the reader's buffer.
var errHeadTooLarge = errors.New("head larger than the buffer")

// connReader is one connection's input buffer. A head is always parsed in
// place, contiguous and without copying; bytes after a head (a body, or
// pipelined requests) stay in the buffer for the next read.
//
// It starts on a small buffer of the connection's own, which holds nearly
// every head, so that a kept-alive connection waiting for its next request
// holds a few KiB. A head that does not fit moves to a buffer of the largest
// head accepted, taken from a pool and given back (release) once the
// connection is between requests again; bodies stream through it too.
type connReader struct {
	rd   deadlineReader
	buf  []byte
	r, w int // unread bytes are buf[r:w]
	scan int // offset within buf[r:w] from which headEnd resumes

	small []byte     // the buffer of its own
	large *[]byte    // the pooled buffer in use, if any
	pool  *sync.Pool // gives large buffers; nil means buf never grows

	// idle, when positive, is a per-read inactivity limit: every read
	// first moves the read deadline this far ahead. Heads are read with
	// it off, under one deadline for the whole head.
	idle time.Duration

	// stopped is set by interrupt, from another goroutine, to end a read
	// in progress: a read that moved its deadline after interrupt set a
	// past one would otherwise wait out idle.
	stopped atomic.Bool

	// sizeLine holds a chunk-size line as lbctl writes it, in the
	// reader's memory so that writing one allocates nothing.
	sizeLine [15 + len("\r\n")]byte
}

// deadlineReader is the connection a connReader reads from.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// errReadStopped is a read ended by interrupt.
var errReadStopped = errors.New("read stopped")

// reset points the reader at rd with small as its empty buffer, growing
// into buffers from pool when it must (nil: never).
func (b *connReader) reset(rd deadlineReader, small []byte, pool *sync.Pool) {
	b.release()
	*b = connReader{rd: rd, buf: small, small: small, pool: pool}
}

// resize puts an empty reader on small as its own buffer, growing into
// buffers from pool (nil: never): a new head limit. It reports false,
// changing nothing, while the reader holds bytes or a pooled buffer.
func (b *connReader) resize(small []byte, pool *sync.Pool) bool {
	if b.large != nil || b.w != b.r {
		return false
	}
	b.buf, b.small, b.pool = small, small, pool
	b.r, b.w, b.scan = 0, 0, 0
	return true
}

// interrupt ends the read in progress, if any, from another goroutine, and
// makes every later read fail with errReadStopped until resume. The flag
// is set before the past deadline, and fill checks it after moving its own
// deadline, so a read can never start after interrupt with a fresh
// deadline that hides the past one.
func (b *connReader) interrupt() {
	b.stopped.Store(true)
	b.rd.SetReadDeadline(time.Unix(1, 0))
}

// resume lets reads run again after interrupt, once the goroutine that was
// reading has finished with the reader.
func (b *connReader) resume() { b.stopped.Store(false) }

// grow moves the reader onto a large buffer. The bytes keep their offsets
// and the small buffer is left as it was, so slices of a head parsed from it
// stay valid. It reports false when there is no larger buffer to move to.
func (b *connReader) grow() bool {
	if b.pool == nil || b.large != nil {
		return false
	}
	b.large = b.pool.Get().(*[]byte)
	copy(*b.large, b.buf[:b.w])
	b.buf = *b.large
	return true
}

// release moves the unread bytes back to the small buffer and returns the
// large one to its pool, when they fit. Call it only between requests: a
// parsed head's slices may point into either buffer.
func (b *connReader) release() {
	if b.large == nil || b.w-b.r > len(b.small) {
		return
	}
	b.w = copy(b.small, b.buf[b.r:b.w])
	b.r, b.scan = 0, 0
	b.buf = b.small
	b.pool.Put(b.large)
	b.large = nil
}

// buffered returns how many unread bytes the buffer holds.
func (b *connReader) buffered() int { return b.w - b.r }

// fill reads once from the underlying reader into the free end of the
// buffer, first moving unread bytes to its start when the end is full.
func (b *connReader) fill() error {
	if b.w == len(b.buf) {
		switch {
		case b.r > 0:
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		case !b.grow():
			return errHeadTooLarge
		}
	}
	if b.idle > 0 {
		b.rd.SetReadDeadline(time.Now().Add(b.idle))
	}
	if b.stopped.Load() {
		return errReadStopped
	}
	n, err := b.rd.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readHead returns the next complete head, through the empty line that ends
// it. The slice is valid until the next call that reads. It returns
// errHeadTooLarge when the buffer fills without a complete head, and the
// underlying reader's error otherwise; partial reports whether any byte of
// the head had arrived.
func (b *connReader) readHead() (head []byte, partial bool, err error) {
	for {
		if n := headEnd(b.buf[b.r:b.w], b.scan); n >= 0 {
			head = b.buf[b.r : b.r+n]
			b.r += n
			b.scan = 0
			return head, true, nil
		}
		// Resume the search a few bytes back, where a split CRLF CRLF
		// may start.
		b.scan = max(b.w-b.r-3, 0)
		if err := b.fill(); err != nil {
			return nil, b.buffered() > 0, err
		}
	}
}

// waitByte blocks until at least one unread byte is buffered.
func (b *connReader) waitByte() error {
	for b.buffered() == 0 {
		b.r, b.w, b.scan = 0, 0, 0
		if err := b.fill(); err != nil {
			return err
		}
	}
	return nil
}

// readLine returns the next line, through its LF, when it is at most max
// bytes long. The slice is valid until the next call that reads.
func (b *connReader) readLine(max int) ([]byte, error) {
	from := 0
	for {
		if i := bytes.IndexByte(b.buf[b.r+from:b.w], '\n'); i >= 0 {
			n := from + i + 1
			if n > max {
				return nil, errLineTooLong
			}
			line := b.buf[b.r : b.r+n]
			b.r += n
			return line, nil
		}
		from = b.buffered()
		if from > max {
			return nil, errLineTooLong
		}
		if err := b.fill(); err != nil {
			if errors.Is(err, errHeadTooLarge) {
				return nil, errLineTooLong
			}
			return nil, err
		}
	}
}

// errLineTooLong means a chunk-size or trailer line exceeded its limit.
var errLineTooLong = errors.New("line too long")

// next returns up to n unread bytes, reading when none is buffered; the
// bytes are consumed. The slice is valid until the next call that reads.
func (b *connReader) next(n int64) ([]byte, error) {
	if b.buffered() == 0 {
		b.r, b.w, b.scan = 0, 0, 0
		if err := b.fill(); err != nil {
			return nil, err
		}
	}
	k := b.buffered()
	if int64(k) > n {
		k = int(n)
	}
	p := b.buf[b.r : b.r+k]
	b.r += k
	return p, nil
}

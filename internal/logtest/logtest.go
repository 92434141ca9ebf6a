// Package logtest owns the log outputs that tests give a logger: Buffer,
// which a logger (or a child process's output) writes to from other
// goroutines while the test reads what has arrived so far, and Stalled, an
// output that stalls as stderr does when nobody reads it.
package logtest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer whose writes and reads are serialised. The
// zero value is an empty buffer ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the lines written so far, without their newlines: one
// empty line when nothing has been written.
func (b *Buffer) Lines() []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// Stalled is a slog.Handler whose output stalls: every Handle blocks
// until Unblock, then records the record's message and attributes as one
// line. Use NewStalled.
type Stalled struct {
	// Entered receives a value each time Handle starts (dropped when
	// 1024 wait unread).
	Entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	lines   []string // guarded by mu
}

// NewStalled returns a stalled output.
func NewStalled() *Stalled {
	return &Stalled{Entered: make(chan struct{}, 1024), release: make(chan struct{})}
}

// Unblock lets every Handle, waiting or to come, go through. It may be
// called more than once.
func (s *Stalled) Unblock() { s.once.Do(func() { close(s.release) }) }

// Lines returns the lines written so far, in order.
func (s *Stalled) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Enabled reports true for every level.
func (s *Stalled) Enabled(context.Context, slog.Level) bool { return true }

// Handle waits for Unblock, then records r.
func (s *Stalled) Handle(_ context.Context, r slog.Record) error {
	select {
	case s.Entered <- struct{}{}:
	default:
	}
	<-s.release
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	s.mu.Lock()
	s.lines = append(s.lines, line)
	s.mu.Unlock()
	return nil
}

// WithAttrs returns s: the attributes are not recorded.
func (s *Stalled) WithAttrs([]slog.Attr) slog.Handler { return s }

// WithGroup returns s: groups are not recorded.
func (s *Stalled) WithGroup(string) slog.Handler { return s }

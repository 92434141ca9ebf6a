package bench

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// schedule applies the --fail and --recover events of one run at their
// times, and keeps the downtimes they cause.
type schedule struct {
	events []scheduledEvent
	start  time.Time
	cancel chan struct{}
	done   chan struct{}

	// mu guards the fields below.
	mu      sync.Mutex
	downs   []downtime
	open    map[int]int // backend index -> its downtime still open
	applied int
	err     error
}

type scheduledEvent struct {
	Event
	kill    bool
	backend *labBackend
}

func startSchedule(set *backendSet, fails, recovers []Event, start time.Time) *schedule {
	s := &schedule{start: start, cancel: make(chan struct{}), done: make(chan struct{}), open: make(map[int]int)}
	for _, e := range fails {
		s.events = append(s.events, scheduledEvent{Event: e, kill: true, backend: set.byID[e.Backend]})
	}
	for _, e := range recovers {
		s.events = append(s.events, scheduledEvent{Event: e, backend: set.byID[e.Backend]})
	}
	slices.SortStableFunc(s.events, func(a, b scheduledEvent) int { return cmp.Compare(a.At, b.At) })
	go s.loop()
	return s
}

func (s *schedule) loop() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, e := range s.events {
		timer.Reset(time.Until(s.start.Add(e.At)))
		select {
		case <-s.cancel:
			return
		case <-timer.C:
		}
		b := e.backend
		if e.kill {
			from := time.Since(s.start)
			b.kill()
			s.mu.Lock()
			s.open[b.index] = len(s.downs)
			s.downs = append(s.downs, downtime{backend: b.index, from: from, to: forever})
			s.applied++
			s.mu.Unlock()
			continue
		}
		err := b.restart()
		to := time.Since(s.start)
		s.mu.Lock()
		if i, ok := s.open[b.index]; ok && err == nil {
			s.downs[i].to = to
			delete(s.open, b.index)
		}
		s.applied++
		s.err = errors.Join(s.err, err)
		s.mu.Unlock()
	}
}

// stop cancels the events still to come and returns the downtimes, a
// warning for each event the run ended before, and any failure to restart
// a backend.
func (s *schedule) stop(elapsed time.Duration) ([]downtime, []string, error) {
	close(s.cancel)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var warnings []string
	for _, e := range s.events[s.applied:] {
		flag := "--recover"
		if e.kill {
			flag = "--fail"
		}
		warnings = append(warnings, fmt.Sprintf("%s %s did not happen: the run ended after %s",
			flag, e.Event, fmtDuration(ms(elapsed))))
	}
	return s.downs, warnings, s.err
}

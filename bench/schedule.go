package bench

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// action is one scheduled event of a run: a --fail, --recover, --add,
// --drain, --maint, --ready, --reload@ or --restart@.
type action struct {
	flag    string
	event   Event // Backend is "" for --reload@ and --restart@
	backend int   // index of the backend it acts on, -1 for none
	apply   func() error
}

// applied is an action as it happened: when it began and ended, from the
// run's start.
type applied struct {
	action
	from, to time.Duration
	err      error
}

// schedule applies a run's actions at their times, and keeps what
// happened.
type schedule struct {
	actions []action
	start   time.Time
	cancel  chan struct{}
	done    chan struct{}

	mu   sync.Mutex // guards past
	past []applied
}

func startSchedule(actions []action, start time.Time) *schedule {
	s := &schedule{actions: slices.Clone(actions), start: start, cancel: make(chan struct{}), done: make(chan struct{})}
	slices.SortStableFunc(s.actions, func(a, b action) int { return cmp.Compare(a.event.At, b.event.At) })
	go s.loop()
	return s
}

func (s *schedule) loop() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, a := range s.actions {
		timer.Reset(time.Until(s.start.Add(a.event.At)))
		select {
		case <-s.cancel:
			return
		case <-timer.C:
		}
		from := time.Since(s.start)
		err := a.apply()
		to := time.Since(s.start)
		s.mu.Lock()
		s.past = append(s.past, applied{action: a, from: from, to: to, err: err})
		s.mu.Unlock()
	}
}

// stop cancels the actions still to come and returns those that happened,
// a warning for each the run ended before, and the errors of those that
// failed.
func (s *schedule) stop(elapsed time.Duration) ([]applied, []string, error) {
	close(s.cancel)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var warnings []string
	for _, a := range s.actions[len(s.past):] {
		warnings = append(warnings, fmt.Sprintf("%s %s did not happen: the run ended after %s",
			a.flag, a.event, fmtDuration(ms(elapsed))))
	}
	var errs []error
	for _, p := range s.past {
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", p.flag, p.event, p.err))
		}
	}
	return s.past, warnings, errors.Join(errs...)
}

// downtimes returns the stretches during which the lab had a backend
// killed: from each --fail to the --recover after it, or forever.
func downtimes(past []applied) []downtime {
	var downs []downtime
	open := make(map[int]int)
	for _, p := range past {
		switch p.flag {
		case "--fail":
			open[p.backend] = len(downs)
			downs = append(downs, downtime{backend: p.backend, from: p.from, to: forever})
		case "--recover":
			if i, ok := open[p.backend]; ok && p.err == nil {
				downs[i].to = p.to
				delete(open, p.backend)
			}
		}
	}
	return downs
}

// Package eventually lets tests wait for a condition instead of for time:
// True polls until the condition holds and fails the test, naming what it
// waited for, if it does not within a bound that a busy machine meets.
package eventually

import (
	"testing"
	"time"
)

// Within is how long True waits before it fails the test.
const Within = 10 * time.Second

// True polls cond every millisecond until it holds, and fails the test
// after Within, naming what it waited for. Call it only from the test's
// own goroutine.
func True(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(Within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", Within, what)
		}
		<-tick.C
	}
}

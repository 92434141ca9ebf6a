// Package underload owns the harness of the tests that change a running
// proxy, or a part it shares such as the affinity table, under traffic
// (reloads, new settings, a resize): clients send requests without pause
// while the change is applied again and again, and no request may fail.
package underload

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lbctl/lbctl/internal/eventually"
)

// Run starts clients goroutines, client g making its i-th request with
// request(g, i), until Run stops them. It applies change(i) rounds times,
// each time once five more requests have succeeded since the last, and
// waits for five more after the last change; then it stops the clients and
// fails t if a request or a change failed. A client stops at its first
// failed request. what names the changes in messages ("reloads").
func Run(t testing.TB, what string, clients, rounds int, request func(g, i int) error, change func(i int) error) {
	t.Helper()
	var served, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopClients()
	for g := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := request(g, i); err != nil {
					failed.Add(1)
					t.Errorf("client %d: %v", g, err)
					return
				}
				served.Add(1)
			}
		})
	}
	fiveMore := func(when string) {
		from := served.Load()
		eventually.True(t, "requests to be served "+when, func() bool { return served.Load() >= from+5 || failed.Load() > 0 })
	}
	for i := range rounds {
		fiveMore(fmt.Sprintf("before change %d of the %s", i+1, what))
		if err := change(i); err != nil {
			t.Fatalf("%s %d: %v", what, i+1, err)
		}
	}
	fiveMore("after the last of the " + what)
	stopClients()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across %d %s", n, served.Load()+n, rounds, what)
	}
}

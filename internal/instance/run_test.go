package instance

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lbctl/lbctl/affinity"
)

func TestLogAffinityOnlyWhenSomethingMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		table := affinity.New(affinity.Options{})
		defer table.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { logAffinity(ctx, log, table, time.Minute); close(done) }()

		k := table.Key(netip.MustParseAddr("127.0.0.2"))
		table.Pin(k, "app-01")
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if buf.Len() != 0 {
			t.Errorf("logged with no re-pin, eviction or expiry: %s", buf.String())
		}
		table.Pin(k, "app-02")
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := buf.String(); strings.Count(got, "msg=affinity") != 1 || !strings.Contains(got, "repins=1") {
			t.Errorf("after a re-pin logged %q, want one affinity line with repins=1", got)
		}
		cancel()
		<-done
	})
}

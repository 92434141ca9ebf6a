package bench

import (
	"context"
	"log/slog"
	"math"
	"net"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/instance"
)

// TestNATViewAgainstKnownPopulation plays one population of browsers
// behind gateways against the L4 front door and against an L7 instance:
// the L7 NAT view must name the biggest gateway first, count its users
// within the sketch's error bound, and estimate the imbalance that source
// affinity would cause within 10% of what the L4 run measured on the same
// population. Requests go one at a time, so that both runs meet the
// gateways in the same order and the round robin selector places them
// alike.
func TestNATViewAgainstKnownPopulation(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 2000 requests per front door")
	}
	log := slog.New(slog.DiscardHandler)
	o := Options{Backends: 4, Users: 1000, Gateways: 40, Skew: Zipf, ZipfS: 1.1, Requests: 2,
		Modes: []Mode{L4}, Seed: 7, Concurrency: 1, PoolSize: 1, Instances: 1}
	pop, err := NewPopulation(o.Users, o.Gateways, o.Skew, o.ZipfS, o.Seed)
	if err != nil {
		t.Fatal(err)
	}
	set, err := startBackends(o.Backends, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.close()
	cfg, err := runConfig(LabConfig(), set.all)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l4run, err := runMode(ctx, L4, &o, pop, set, cfg, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	if l4run.FailedRequests > 0 {
		t.Fatalf("L4 run: %d requests failed: %v", l4run.FailedRequests, l4run.FailureReasons)
	}

	// The same population against an L7 instance, which counts what the
	// NAT view shows.
	if err := set.reset(); err != nil {
		t.Fatal(err)
	}
	l7cfg := *cfg
	l7cfg.Mode = "l7"
	in, err := instance.New(&l7cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- in.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		in.Shutdown(sctx)
		<-served
		in.Close()
	}()
	gen := newGenerator(&o, pop, set, []string{"http://" + ln.Addr().String() + "/"})
	if _, _, err := gen.run(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := gen.failed.Load(); n > 0 {
		t.Fatalf("L7 run: %d requests failed: %v", n, gen.failureReasons())
	}

	view := in.NAT(20)
	if len(view.Sources) == 0 {
		t.Fatal("the NAT view shows no source")
	}
	biggest := pop.Top(1)[0]
	top := view.Sources[0]
	t.Logf("top source %s: %d ± %d sessions (%d users); total %d sessions of %d users; skew %.2f estimated, %.2f measured in L4",
		top.Key, top.Sessions, top.SessionsError, biggest.Users, view.TotalSessions, o.Users, view.IPAffinitySkew, l4run.MaxOverMean)
	if top.Key != biggest.Addr.String() {
		t.Errorf("top source %s, want the biggest gateway %s", top.Key, biggest.Addr)
	}
	if d := math.Abs(float64(top.Sessions - biggest.Users)); d > float64(top.SessionsError) {
		t.Errorf("top source: %d sessions ± %d, but its gateway has %d users", top.Sessions, top.SessionsError, biggest.Users)
	}
	if !top.NAT {
		t.Errorf("top source with %d sessions not flagged as a NAT", top.Sessions)
	}
	if rel := math.Abs(view.IPAffinitySkew-l4run.MaxOverMean) / l4run.MaxOverMean; rel > 0.10 {
		t.Errorf("skew estimate %.3f is %.1f%% off the %.3f the L4 run measured; estimated shares %+v, L4 backends %+v",
			view.IPAffinitySkew, 100*rel, l4run.MaxOverMean, view.IPAffinityShares, l4run.Backends)
	}
}

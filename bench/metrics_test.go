package bench

import (
	"math"
	"testing"
	"time"
)

func TestBalanceByHand(t *testing.T) {
	for _, tc := range []struct {
		loads                []float64
		maxOverMean, cov, jn float64
	}{
		{[]float64{10, 10, 10}, 1, 0, 1},
		{[]float64{30, 0, 0}, 3, math.Sqrt2, 1.0 / 3},
		// mean 2.5; deviations ±1.5, ±0.5: variance 1.25; Σx=10, Σx²=30.
		{[]float64{1, 2, 3, 4}, 4 / 2.5, math.Sqrt(1.25) / 2.5, 100.0 / (4 * 30)},
		// mean 50; variance 2500: one of two carries all.
		{[]float64{100, 0}, 2, 1, 0.5},
		{[]float64{0, 0, 0}, 1, 0, 1},
		{[]float64{7}, 1, 0, 1},
	} {
		if got := MaxOverMean(tc.loads); !near(got, tc.maxOverMean) {
			t.Errorf("MaxOverMean(%v) = %v, want %v", tc.loads, got, tc.maxOverMean)
		}
		if got := CoV(tc.loads); !near(got, tc.cov) {
			t.Errorf("CoV(%v) = %v, want %v", tc.loads, got, tc.cov)
		}
		if got := Jain(tc.loads); !near(got, tc.jn) {
			t.Errorf("Jain(%v) = %v, want %v", tc.loads, got, tc.jn)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestPercentileNearestRank(t *testing.T) {
	var ten []time.Duration
	for i := 1; i <= 10; i++ {
		ten = append(ten, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{ten, 50, 5 * time.Millisecond},  // rank ceil(5) = 5
		{ten, 99, 10 * time.Millisecond}, // rank ceil(9.9) = 10
		{ten, 90, 9 * time.Millisecond},
		{ten, 1, 1 * time.Millisecond},
		{ten[:1], 99, time.Millisecond},
		{nil, 50, 0},
	} {
		if got := percentile(tc.values, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.values), tc.p, got, tc.want)
		}
	}
}

// served builds a sample served by backend b at start ms that took 1ms;
// b < 0 is a failed request.
func at(startMS int, b int) sample {
	return sample{sent: true, backend: int16(b), start: time.Duration(startMS) * time.Millisecond, latency: time.Millisecond}
}

func TestCountMovesByHand(t *testing.T) {
	const R = 4
	samples := []sample{
		// user 0 stays on 0.
		at(0, 0), at(10, 0), at(20, 0), at(30, 0),
		// user 1 moves 0 -> 1 at 20ms with 0 up throughout: broken.
		at(1, 0), at(11, 0), at(21, 1), at(31, 1),
		// user 2 moves 1 -> 2 after 1 went down at 25ms, and stays: one repin.
		at(2, 1), at(12, 1), at(32, 2), at(42, 2),
		// user 3: on 1, a failed request, moved to 2 (repin), then back to 1
		// at 70ms, after 1 came back at 60ms while 2 was up: broken too.
		at(3, 1), at(26, -1), at(33, 2), at(70, 1),
	}
	downs := []downtime{{backend: 1, from: 25 * time.Millisecond, to: 60 * time.Millisecond}}
	m := countMoves(samples, R, downs, nil)
	// Users 1 and 3 rebalanced, users 2 and 3 moved off the killed backend.
	if m.brokenUsers != 3 || m.brokenMoves != 2 || m.byCause[rebalanced] != 2 || m.byCause[backendFailed] != 2 {
		t.Errorf("broken users %d, moves %d, by cause %v; want 3, 2, rebalanced 2 and backend_failed 2", m.brokenUsers, m.brokenMoves, m.byCause)
	}
	if m.repinnedUsers != 2 || m.repins != 2 || m.maxRepins != 1 {
		t.Errorf("repinned users %d, repins %d, max per user %d; want 2, 2, 1", m.repinnedUsers, m.repins, m.maxRepins)
	}
	if m.downUsers[0] != 2 {
		t.Errorf("users moved off the downtime: %d, want 2", m.downUsers[0])
	}
	// The first repinned request to end: user 2's at 32ms+1ms.
	if want := 33 * time.Millisecond; m.firstMove[0] != want {
		t.Errorf("first move ended at %v, want %v", m.firstMove[0], want)
	}
}

func TestCountMovesWithoutDowntime(t *testing.T) {
	m := countMoves([]sample{at(0, 0), at(5, 0), at(1, 1), at(6, 1)}, 2, nil, nil)
	if m.brokenUsers != 0 || m.repinnedUsers != 0 {
		t.Errorf("got %+v, want no moves", m)
	}
}

// TestAnalyzeByHand feeds analyze a run of 3 users x 2 requests on 2
// backends and checks every number against what it must be.
func TestAnalyzeByHand(t *testing.T) {
	pop := &Population{
		Users: []User{{ID: 0, Gateway: 0}, {ID: 1, Gateway: 0}, {ID: 2, Gateway: 1}},
		Gateways: []Gateway{
			{Index: 0, Addr: gatewayAddr(0), Users: 2},
			{Index: 1, Addr: gatewayAddr(1), Users: 1},
		},
	}
	d := &runData{
		mode:     L4,
		pop:      pop,
		requests: 2,
		ids:      []string{"app-01", "app-02"},
		samples: []sample{
			at(0, 0), at(10, 0), // user 0 on app-01
			at(1, 0), at(11, -1), // user 1 on app-01, then a failure
			at(2, 1), at(12, 1), // user 2 on app-02
		},
		records: [][]record{
			{{0, 0}, {0, 1}, {1, 2}, {1, 3}}, // app-01 saw user 1's failed request too
			{{2, 4}},                         // app-02 lost the record of request 5
		},
		elapsed: time.Second,
	}
	res := analyze(d)
	if res.TotalRequests != 6 || res.ServedRequests != 5 || res.FailedRequests != 1 {
		t.Errorf("total %d served %d failed %d, want 6 5 1", res.TotalRequests, res.ServedRequests, res.FailedRequests)
	}
	if res.ServedRequests+res.FailedRequests != res.TotalRequests {
		t.Error("served + failed != total")
	}
	if res.BackendRecords != 5 || res.Unrecorded != 1 {
		t.Errorf("backend records %d, unrecorded %d; want 5, 1", res.BackendRecords, res.Unrecorded)
	}
	want := []BackendResult{
		{ID: "app-01", Users: 2, Requests: 3, Share: 0.6, Recorded: 4, TopGatewayRequests: []int{3, 0}},
		{ID: "app-02", Users: 1, Requests: 2, Share: 0.4, Recorded: 1, TopGatewayRequests: []int{0, 2}},
	}
	for i, w := range want {
		g := res.Backends[i]
		if g.ID != w.ID || g.Users != w.Users || g.Requests != w.Requests || !near(g.Share, w.Share) ||
			g.Recorded != w.Recorded || len(g.TopGatewayRequests) != 2 ||
			g.TopGatewayRequests[0] != w.TopGatewayRequests[0] || g.TopGatewayRequests[1] != w.TopGatewayRequests[1] {
			t.Errorf("backend %d = %+v, want %+v", i, g, w)
		}
	}
	// loads [3, 2]: mean 2.5, sd 0.5.
	if !near(res.MaxOverMean, 1.2) || !near(res.CoV, 0.2) || !near(res.Jain, 25.0/26) {
		t.Errorf("max_over_mean %v cov %v jain %v; want 1.2 0.2 %v", res.MaxOverMean, res.CoV, res.Jain, 25.0/26)
	}
	if res.GeneratorRPS != 6 {
		t.Errorf("generator_rps %v, want 6", res.GeneratorRPS)
	}
	if res.LatencyP50MS != 1 || res.FailoverMS != nil {
		t.Errorf("p50 %v ms, failover %v; want 1, nil", res.LatencyP50MS, res.FailoverMS)
	}
	if want := "l4: app-01 carries 1.20x the mean: gateway 127.1.0.1 holds 67% of users"; res.Finding != want {
		t.Errorf("finding\n got %q\nwant %q", res.Finding, want)
	}
	if n := len(res.Timeline.Backends[0].Requests); n == 0 || res.Timeline.BucketMS != 20 {
		t.Errorf("timeline: %d buckets of %vms, want 20ms buckets", n, res.Timeline.BucketMS)
	}
}

func TestBucketWidth(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		500 * time.Millisecond: 10 * time.Millisecond,
		time.Second:            20 * time.Millisecond,
		10 * time.Second:       200 * time.Millisecond,
		time.Minute:            time.Second,
		time.Hour:              time.Minute,
	} {
		if got := bucketWidth(d); got != want {
			t.Errorf("bucketWidth(%v) = %v, want %v", d, got, want)
		}
	}
}

package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// MaxOverMean returns the largest load over the mean load: 1 when every
// backend carries the same, n when one of n carries everything. With no
// load at all it is 1.
func MaxOverMean(loads []float64) float64 {
	mean := mean(loads)
	if mean == 0 {
		return 1
	}
	return slices.Max(loads) / mean
}

// CoV returns the coefficient of variation of the loads: their population
// standard deviation over their mean. 0 is perfectly even; one of n
// carrying everything gives sqrt(n-1). With no load at all it is 0.
func CoV(loads []float64) float64 {
	m := mean(loads)
	if m == 0 {
		return 0
	}
	ss := 0.0
	for _, x := range loads {
		ss += (x - m) * (x - m)
	}
	return math.Sqrt(ss/float64(len(loads))) / m
}

// Jain returns Jain's fairness index of the loads, (Σx)²/(n·Σx²): 1 when
// every backend carries the same, 1/n when one of n carries everything.
// With no load at all it is 1.
func Jain(loads []float64) float64 {
	sum, sq := 0.0, 0.0
	for _, x := range loads {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(loads)) * sq)
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method, or 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// downtime is a stretch of a run during which the lab had a backend
// killed. to is forever when the backend was not restarted in the run.
type downtime struct {
	backend  int
	from, to time.Duration
}

const forever = time.Duration(math.MaxInt64)

// cause is why a session broke: why a user's request landed on another
// backend than its request before.
type cause int

// The causes, in the order a move is explained: the first that applies is
// its cause.
const (
	// backendFailed: the lab had the earlier backend killed in between.
	backendFailed cause = iota
	// maintenance: the earlier backend was put in maintenance.
	maintenance
	// drainDeadline: the earlier backend's bounded drain ran out.
	drainDeadline
	// restarted: lbctl restarted in between.
	restarted
	// reloaded: lbctl reloaded its config (--reload@, --add) in between.
	reloaded
	// instanceChanged: the two requests went to different lbctl instances.
	instanceChanged
	// addressChanged: the user's source address changed (--ip-churn).
	addressChanged
	// rebalanced: none of the above; the session moved while nothing
	// asked it to, which lbctl must never do.
	rebalanced
	numCauses
)

// span is a stretch of a run that explains moves off backend (any backend
// when it is -1) by cause.
type span struct {
	cause    cause
	backend  int
	from, to time.Duration
}

// moves is what happened to sessions: which users changed backend between
// two served requests, and why.
type moves struct {
	brokenUsers int            // users moved at least once, for any cause
	byCause     [numCauses]int // users moved at least once for each cause
	brokenMoves int            // moves for any cause but a failed backend
	// Moves off a killed backend: the users, the moves, the most of one
	// user.
	repinnedUsers int
	repins        int
	maxRepins     int
	// per downtime, in the order given: users moved off it and the end of
	// the first request served elsewhere by one of them (forever if none)
	downUsers []int
	firstMove []time.Duration
}

// countMoves walks every user's served requests in order. A user whose
// request lands on another backend than the one before had its session
// broken, for the first cause that explains the move: the lab had that
// earlier backend killed at some point between the two requests (downs;
// such a move is a repin), or another of spans applies, or the two
// requests went to different instances or came from different addresses;
// when nothing explains it, the session was rebalanced while its backend
// was up. Failed requests are skipped.
func countMoves(samples []sample, requests int, downs []downtime, spans []span) moves {
	m := moves{downUsers: make([]int, len(downs)), firstMove: make([]time.Duration, len(downs))}
	for i := range m.firstMove {
		m.firstMove[i] = forever
	}
	seen := make([]bool, len(downs))
	for u := 0; u*requests < len(samples); u++ {
		clear(seen)
		var why [numCauses]bool
		repins := 0
		var prev *sample
		for k := range requests {
			s := &samples[u*requests+k]
			if !s.served() {
				continue
			}
			if prev != nil && s.backend != prev.backend {
				end := s.start + s.latency
				if d := explainingDowntime(downs, int(prev.backend), prev.start, end); d >= 0 {
					why[backendFailed] = true
					repins++
					if !seen[d] {
						seen[d] = true
						m.downUsers[d]++
					}
					m.firstMove[d] = min(m.firstMove[d], end)
				} else {
					why[explain(spans, prev, s, end)] = true
					m.brokenMoves++
				}
			}
			prev = s
		}
		broken := false
		for c, ok := range why {
			if ok {
				m.byCause[c]++
				broken = true
			}
		}
		if broken {
			m.brokenUsers++
		}
		if repins > 0 {
			m.repinnedUsers++
			m.repins += repins
			m.maxRepins = max(m.maxRepins, repins)
		}
	}
	return m
}

// explain returns the cause of a move from prev to s, which ended at end,
// that no downtime explains.
func explain(spans []span, prev, s *sample, end time.Duration) cause {
	best := numCauses
	for _, sp := range spans {
		if (sp.backend < 0 || sp.backend == int(prev.backend)) && sp.from <= end && sp.to >= prev.start {
			best = min(best, sp.cause)
		}
	}
	switch {
	case best < numCauses:
		return best
	case s.door != prev.door:
		return instanceChanged
	case s.addr != prev.addr:
		return addressChanged
	}
	return rebalanced
}

// explainingDowntime returns the index of the latest downtime of backend b
// that overlaps [from, to], or -1.
func explainingDowntime(downs []downtime, b int, from, to time.Duration) int {
	found := -1
	for i, d := range downs {
		if d.backend == b && d.from <= to && d.to >= from {
			if found < 0 || d.from > downs[found].from {
				found = i
			}
		}
	}
	return found
}

// bucketWidth picks a round time bucket that cuts a run of length d into at
// most 80 buckets.
func bucketWidth(d time.Duration) time.Duration {
	for _, w := range []time.Duration{
		10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	} {
		if d/w < 80 {
			return w
		}
	}
	return time.Minute
}

// runData is everything one mode's run left behind, for analyze.
type runData struct {
	mode     Mode
	pop      *Population
	requests int
	ids      []string   // backend ids by index: app-01..NN, then the added ones
	initial  int        // backends in the pool from the start
	samples  []sample   // by user*requests + k
	records  [][]record // per backend, what it recorded
	past     []applied  // the events that happened, in order
	drainFor time.Duration
	elapsed  time.Duration
	reasons  map[string]int
	affinity *AffinityStats
	warnings []string
	churn    bool // users' addresses changed (--ip-churn)
	prefix   int  // affinity.ipv4_prefix
}

// analyze turns a run's raw data into its result.
func analyze(d *runData) RunResult {
	res := RunResult{
		Mode:           string(d.mode),
		TotalRequests:  len(d.samples),
		FailureReasons: d.reasons,
		Affinity:       d.affinity,
		Warnings:       d.warnings,
		DurationMS:     ms(d.elapsed),
	}
	t := tallySamples(d)
	res.ServedRequests, res.FailedRequests = t.served, t.failed
	loads := make([]float64, len(d.ids))
	for b, id := range d.ids {
		loads[b] = float64(t.reqs[b])
		be := BackendResult{ID: id, Users: t.users[b], Requests: t.reqs[b], TopGatewayRequests: t.byGateway[b]}
		if res.ServedRequests > 0 {
			be.Share = float64(t.reqs[b]) / float64(res.ServedRequests)
		}
		if b < len(d.records) {
			be.Recorded = len(d.records[b])
		}
		res.BackendRecords += be.Recorded
		res.Backends = append(res.Backends, be)
	}
	res.Unrecorded = unrecorded(d.samples, d.records)
	res.MaxOverMean, res.CoV, res.Jain = MaxOverMean(loads), CoV(loads), Jain(loads)
	addMoves(d, &res)

	slices.Sort(t.latencies)
	slices.Sort(t.lags)
	res.LatencyP50MS = ms(percentile(t.latencies, 50))
	res.LatencyP99MS = ms(percentile(t.latencies, 99))
	res.ScheduleLagP99MS = ms(percentile(t.lags, 99))
	if d.elapsed > 0 {
		res.GeneratorRPS = float64(len(t.lags)) / d.elapsed.Seconds()
	}
	res.Timeline = timeline(d)
	res.ScaleUps = scaleUps(d, &res.Timeline)
	res.Drains = drains(d)
	res.Finding = finding(d, &res, t.reqs)
	return res
}

// tally is what one pass over a run's samples counts.
type tally struct {
	served, failed int
	reqs, users    []int           // by backend
	byGateway      [][]int         // by backend, then by place among the top gateways
	latencies      []time.Duration // of the served requests
	lags           []time.Duration // of the requests sent
}

// tallySamples counts each backend's requests and users, the requests
// from the top gateways, and the latencies and schedule lags.
func tallySamples(d *runData) tally {
	nb := len(d.ids)
	t := tally{
		reqs:      make([]int, nb),
		users:     make([]int, nb),
		byGateway: make([][]int, nb),
		latencies: make([]time.Duration, 0, len(d.samples)),
		lags:      make([]time.Duration, 0, len(d.samples)),
	}
	lastUser := make([]int, nb)
	for i := range lastUser {
		lastUser[i] = -1
	}
	top := d.pop.Top(topGateways)
	rank := make(map[int]int, len(top)) // gateway index -> place in top
	for i, g := range top {
		rank[g.Index] = i
	}
	for b := range t.byGateway {
		t.byGateway[b] = make([]int, len(top))
	}
	for i := range d.samples {
		s := &d.samples[i]
		if s.sent {
			t.lags = append(t.lags, s.lag)
		}
		if !s.served() {
			t.failed++
			continue
		}
		t.served++
		b := int(s.backend)
		t.reqs[b]++
		u := i / d.requests
		if lastUser[b] != u {
			lastUser[b] = u
			t.users[b]++
		}
		if r, ok := rank[d.pop.Users[u].Gateway]; ok {
			t.byGateway[b][r]++
		}
		t.latencies = append(t.latencies, s.latency)
	}
	return t
}

// addMoves sets the result's session moves and re-pins, and each killed
// backend's failover: how many users it moved and how soon the first did.
func addMoves(d *runData, res *RunResult) {
	downs := downtimes(d.past)
	m := countMoves(d.samples, d.requests, downs, spans(d.past, d.drainFor))
	res.BrokenSessions = m.brokenUsers
	res.Broken = Broken{
		BackendFailed: m.byCause[backendFailed], Maintenance: m.byCause[maintenance],
		DrainDeadline: m.byCause[drainDeadline], Restarted: m.byCause[restarted],
		Reloaded: m.byCause[reloaded], InstanceChanged: m.byCause[instanceChanged],
		AddressChanged: m.byCause[addressChanged], Rebalanced: m.byCause[rebalanced],
	}
	res.RepinnedUsers = m.repinnedUsers
	res.Repins = m.repins
	res.MaxRepinsPerUser = m.maxRepins
	for i, dt := range downs {
		f := Failover{Backend: d.ids[dt.backend], AtMS: ms(dt.from), RepinnedUsers: m.downUsers[i]}
		if m.firstMove[i] != forever {
			v := ms(m.firstMove[i] - dt.from)
			f.FailoverMS = &v
			if res.FailoverMS == nil || v > *res.FailoverMS {
				res.FailoverMS = &v
			}
		}
		res.Failovers = append(res.Failovers, f)
	}
}

// unrecorded counts served samples that the backend which answered did not
// record.
func unrecorded(samples []sample, records [][]record) int {
	seen := make([][]int32, len(records))
	for b, rs := range records {
		ids := make([]int32, len(rs))
		for i, r := range rs {
			ids[i] = r.request
		}
		slices.Sort(ids)
		seen[b] = ids
	}
	n := 0
	for i := range samples {
		s := &samples[i]
		if !s.served() {
			continue
		}
		b := int(s.backend)
		if b >= len(seen) {
			n++
			continue
		}
		if _, ok := slices.BinarySearch(seen[b], int32(i)); !ok {
			n++
		}
	}
	return n
}

// timeline buckets the served requests of each backend, and the failed
// ones, by start time.
func timeline(d *runData) Timeline {
	w := bucketWidth(d.elapsed)
	n := int(d.elapsed/w) + 1
	t := Timeline{BucketMS: ms(w), Failed: make([]int, n)}
	for _, p := range d.past {
		e := TimelineEvent{Event: p.flag, AtMS: ms(p.from)}
		if p.backend >= 0 {
			e.Backend = d.ids[p.backend]
		}
		t.Events = append(t.Events, e)
	}
	for _, id := range d.ids {
		t.Backends = append(t.Backends, Series{ID: id, Requests: make([]int, n)})
	}
	for i := range d.samples {
		s := &d.samples[i]
		if !s.sent {
			continue
		}
		k := min(int(s.start/w), n-1)
		if s.served() {
			t.Backends[s.backend].Requests[k]++
		} else {
			t.Failed[k]++
		}
	}
	return t
}

// finding sums a run up in one line: the most loaded backend, its multiple
// of the mean, and the gateway that sends it the most, with whether that
// gateway's users all went there (IP affinity) or were spread (cookies).
func finding(d *runData, res *RunResult, reqs []int) string {
	if res.ServedRequests == 0 {
		return fmt.Sprintf("%s: no request was served", d.mode)
	}
	top := 0
	for b := range reqs {
		if reqs[b] > reqs[top] {
			top = b
		}
	}
	// The gateway that sends the most requests to the top backend.
	perGateway := make([]int, len(d.pop.Gateways))
	for i := range d.samples {
		if s := &d.samples[i]; s.served() && int(s.backend) == top {
			perGateway[d.pop.Users[i/d.requests].Gateway]++
		}
	}
	g := 0
	for i := range perGateway {
		if perGateway[i] > perGateway[g] {
			g = i
		}
	}
	gw := d.pop.Gateways[g]
	// The backends its users ended the run on: one under IP affinity,
	// failover or not; all of them with cookies.
	spread := make(map[int16]bool)
	for u := range d.pop.Users {
		if d.pop.Users[u].Gateway != g {
			continue
		}
		for k := d.requests - 1; k >= 0; k-- {
			if s := &d.samples[u*d.requests+k]; s.served() {
				spread[s.backend] = true
				break
			}
		}
	}
	line := fmt.Sprintf("%s: %s carries %.2fx the mean: ", d.mode, d.ids[top], res.MaxOverMean)
	if n := len(spread); n > 1 {
		line += fmt.Sprintf("the %d users of gateway %s (%.0f%% of users) end on %d backends",
			gw.Users, gw.Addr, 100*d.pop.Share(g), n)
	} else {
		line += fmt.Sprintf("gateway %s holds %.0f%% of users", gw.Addr, 100*d.pop.Share(g))
	}
	if res.Broken.Rebalanced > 0 {
		line += fmt.Sprintf("; %d users were moved while their backend was up", res.Broken.Rebalanced)
	}
	if d.churn && d.mode == L4 && d.prefix <= 24 && res.Broken.AddressChanged == 0 {
		line += fmt.Sprintf("; ipv4_prefix = %d keeps each gateway's pool on one key: no session broke when an address changed, at the price of skew", d.prefix)
	}
	if d.churn && res.Broken.AddressChanged > 0 {
		line += fmt.Sprintf("; %d users' sessions broke when their address changed", res.Broken.AddressChanged)
		if d.mode == L4 && d.prefix == 32 {
			line += " (ipv4_prefix = 24 keys a whole pool as one client: fewer breaks, more skew)"
		}
	}
	return line
}

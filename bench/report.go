package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is the outcome of a lab run: the scenario, and one result per
// mode in the order run. Its JSON form is what --json writes.
type Report struct {
	Scenario Scenario    `json:"scenario"`
	Runs     []RunResult `json:"runs"`
}

// Scenario is what every mode of a run faced.
type Scenario struct {
	Users          int            `json:"users"`
	Gateways       int            `json:"gateways"`
	ActiveGateways int            `json:"active_gateways"` // gateways with at least one user
	Skew           string         `json:"skew"`
	ZipfS          float64        `json:"zipf_s"`
	Seed           uint64         `json:"seed"`
	Backends       int            `json:"backends"`
	Requests       int            `json:"requests"`       // per user
	TotalRequests  int            `json:"total_requests"` // per mode
	Concurrency    int            `json:"concurrency"`
	KeepAlive      bool           `json:"keepalive"`
	Rate           float64        `json:"rate"`        // requests per second offered; 0 = as fast as possible
	DurationMS     float64        `json:"duration_ms"` // each mode's requests spread over this; 0 = as fast as possible
	Policy         string         `json:"policy"`
	Health         string         `json:"health"`
	Failures       []EventReport  `json:"failures"`
	Recoveries     []EventReport  `json:"recoveries"`
	TopGateways    []GatewayShare `json:"top_gateways"` // the most populous, at most five
	PoolSize       int            `json:"pool_size"`
	IPChurn        float64        `json:"ip_churn"`
	IPChurnEveryMS float64        `json:"ip_churn_every_ms"`
	Instances      int            `json:"instances"`
	StateFile      bool           `json:"state_file"`
	Target         string         `json:"target,omitempty"` // ", target l4=ADDR l7=ADDR" when measuring another load balancer
	// Events are the lifecycle events as flags: --add app-05@4s, --reload@2s...
	Events []string `json:"events,omitempty"`
}

// topGateways is how many gateways the report follows by name.
const topGateways = 5

// EventReport is a scheduled --fail or --recover.
type EventReport struct {
	Backend string  `json:"backend"`
	AtMS    float64 `json:"at_ms"`
}

// GatewayShare is one gateway's part of the population.
type GatewayShare struct {
	Addr  string  `json:"addr"`
	Users int     `json:"users"`
	Share float64 `json:"share"`
}

// RunResult is what one mode did with the scenario.
type RunResult struct {
	Mode     string          `json:"mode"`
	Backends []BackendResult `json:"backends"`

	// Every request is served by some backend or failed.
	TotalRequests  int            `json:"total_requests"`
	ServedRequests int            `json:"served_requests"`
	FailedRequests int            `json:"failed_requests"`
	FailureReasons map[string]int `json:"failure_reasons,omitempty"`
	// BackendRecords counts the requests the backends saw: the served
	// ones, and any whose answer a crash cut off or that L7 retried
	// elsewhere. Unrecorded counts served requests that no backend
	// recorded; it is 0 unless the lab itself is wrong.
	BackendRecords int `json:"backend_records"`
	Unrecorded     int `json:"unrecorded"`

	// Balance of served requests over backends.
	MaxOverMean float64 `json:"max_over_mean"`
	CoV         float64 `json:"cov"`
	Jain        float64 `json:"jain"`

	// BrokenSessions counts users moved to another backend at least
	// once, for any cause; Broken counts them by cause (a user moved for
	// two causes counts under both). Broken.Rebalanced, a move while
	// nothing asked for one, must be 0. RepinnedUsers are the users moved
	// because their backend was killed (Broken.BackendFailed), Repins
	// such moves (one per repinned user when nobody flaps).
	BrokenSessions   int    `json:"broken_sessions"`
	Broken           Broken `json:"broken_by_cause"`
	RepinnedUsers    int    `json:"repinned_users"`
	Repins           int    `json:"repins"`
	MaxRepinsPerUser int    `json:"max_repins_per_user"`
	// FailoverMS is the slowest of Failovers, null without --fail.
	FailoverMS *float64   `json:"failover_ms"`
	Failovers  []Failover `json:"failovers,omitempty"`

	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	// GeneratorRPS is the rate the load generator finished requests at;
	// ScheduleLagP99MS how late requests left against their schedule, which
	// stays near 0 while the generator and lbctl keep up.
	GeneratorRPS     float64 `json:"generator_rps"`
	ScheduleLagP99MS float64 `json:"schedule_lag_p99_ms"`
	DurationMS       float64 `json:"duration_ms"`

	// ScaleUps follow each --add, Drains each --drain and --maint.
	ScaleUps []ScaleUp     `json:"scale_ups,omitempty"`
	Drains   []DrainResult `json:"drains,omitempty"`

	// Affinity is the L4 affinity table's counters (of the first
	// instance, since its last restart); nil for L7, a --target and
	// lbctl run as child processes.
	Affinity *AffinityStats `json:"affinity,omitempty"`

	Finding  string   `json:"finding"`
	Warnings []string `json:"warnings,omitempty"`
	Timeline Timeline `json:"timeline"`
}

// BackendResult is one backend's part of a run.
type BackendResult struct {
	ID       string  `json:"id"`
	Users    int     `json:"users"`    // users served there at least once
	Requests int     `json:"requests"` // requests served there
	Share    float64 `json:"share"`    // of all served requests
	Recorded int     `json:"recorded"` // requests the backend itself recorded
	// TopGatewayRequests are the requests served here from each of the
	// scenario's top_gateways, in their order.
	TopGatewayRequests []int `json:"top_gateway_requests"`
}

// Broken is the users whose session broke, by cause: their request landed
// on another backend than their request before, because that backend was
// killed (backend_failed), put in maintenance, reached its drain deadline,
// because lbctl restarted or reloaded in between, because the two requests
// went to different lbctl instances or came from different addresses of
// the user's gateway, or for none of these (rebalanced).
type Broken struct {
	BackendFailed   int `json:"backend_failed"`
	Maintenance     int `json:"maintenance"`
	DrainDeadline   int `json:"drain_deadline"`
	Restarted       int `json:"restarted"`
	Reloaded        int `json:"reloaded"`
	InstanceChanged int `json:"instance_changed"`
	AddressChanged  int `json:"address_changed"`
	Rebalanced      int `json:"rebalanced"`
}

// ScaleUp is what followed one --add.
type ScaleUp struct {
	Backend string  `json:"backend"`
	AtMS    float64 `json:"at_ms"`
	// ReloadedMS is when the reload that added it ended: a user whose
	// first request began then or later is a new user.
	ReloadedMS float64 `json:"reloaded_ms"`
	// NewUsers arrived after the reload that added the backend;
	// NewUsersThere of them reached it, a share of NewUsersShare.
	NewUsers      int     `json:"new_users"`
	NewUsersThere int     `json:"new_users_there"`
	NewUsersShare float64 `json:"new_users_share"`
	// JoiningUsersThere are the users whose first request was in flight
	// during the reload and went to the new backend: routed once the new
	// pool was in place, they did not move.
	JoiningUsersThere int `json:"joining_users_there"`
	// EarlierUsersThere arrived before it and reached it after another
	// backend had served them: moved sessions, which lbctl should not
	// cause.
	EarlierUsersThere int `json:"earlier_users_there"`
	// ToMeanMS is how long after the add the backend's requests in a
	// bucket of the timeline first reached the mean; null if never.
	ToMeanMS *float64 `json:"to_mean_ms"`
}

// DrainResult is what followed one --drain or --maint.
type DrainResult struct {
	Backend    string   `json:"backend"`
	State      string   `json:"state"` // drain or maint
	AtMS       float64  `json:"at_ms"`
	DeadlineMS *float64 `json:"deadline_ms"` // --drain-for after AtMS; null without
	// LastRequestMS is how long after the state change the backend
	// finished its last request (0 when none came): the drain's
	// completion time. Completed says that it ended before the
	// backend's next state (or the run's end).
	LastRequestMS *float64 `json:"last_request_ms"`
	UsersAfter    int      `json:"users_after"` // users it served after the change
	Completed     bool     `json:"completed"`
}

// TimelineEvent is one event of a run as the plot marks it.
type TimelineEvent struct {
	Event   string  `json:"event"` // the flag: --fail, --add, --restart@...
	Backend string  `json:"backend,omitempty"`
	AtMS    float64 `json:"at_ms"`
}

// Failover is what followed one --fail.
type Failover struct {
	Backend       string  `json:"backend"`
	AtMS          float64 `json:"at_ms"`
	RepinnedUsers int     `json:"repinned_users"`
	// FailoverMS runs from the kill to the end of the first request a
	// user of the killed backend had served elsewhere; null if none was.
	FailoverMS *float64 `json:"failover_ms"`
}

// AffinityStats are the L4 affinity table's counters at the end of a run.
type AffinityStats struct {
	Hits        uint64 `json:"hits"`
	Misses      uint64 `json:"misses"`
	Repins      uint64 `json:"repins"`
	Evictions   uint64 `json:"evictions"`
	Expirations uint64 `json:"expirations"`
	Size        int    `json:"size"`
}

// Timeline is the served requests per backend over the run, by start time.
type Timeline struct {
	BucketMS float64         `json:"bucket_ms"`
	Backends []Series        `json:"backends"`
	Failed   []int           `json:"failed"`
	Events   []TimelineEvent `json:"events,omitempty"`
}

// Series is one backend's requests per bucket.
type Series struct {
	ID       string `json:"id"`
	Requests []int  `json:"requests"`
}

// Result returns the result of mode, or nil if it was not run.
func (r *Report) Result(mode Mode) *RunResult {
	for i := range r.Runs {
		if r.Runs[i].Mode == string(mode) {
			return &r.Runs[i]
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// modeTitle is how the text report heads a mode's columns.
func modeTitle(mode string) string {
	switch Mode(mode) {
	case L4:
		return "l4 (source IP)"
	case L7:
		return "l7 (cookie)"
	}
	return mode
}

// WriteText writes the report as a person reads it on a terminal: the
// scenario, the per-backend load of each mode side by side, the metrics
// side by side, and one finding per mode.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	writeScenario(&b, &r.Scenario)
	if len(r.Runs) == 0 {
		return writeTrimmed(w, b.String())
	}
	b.WriteString("\n")
	writeLoads(&b, r.Runs)
	b.WriteString("\n")
	writeComparison(&b, r.Runs, len(r.Scenario.Failures) > 0)
	b.WriteString("\n")
	for _, run := range r.Runs {
		b.WriteString(run.Finding + "\n")
	}
	for _, run := range r.Runs {
		writeEventResults(&b, &run)
	}
	for _, run := range r.Runs {
		for _, warn := range run.Warnings {
			fmt.Fprintf(&b, "warning: %s: %s\n", run.Mode, warn)
		}
	}
	return writeTrimmed(w, b.String())
}

// writeScenario writes what every mode faced: the population, the pace,
// the policy and health checks, and the failures with their recoveries.
func writeScenario(b *strings.Builder, s *Scenario) {
	skew := s.Skew
	if s.Skew == string(Zipf) {
		skew = fmt.Sprintf("zipf s=%g", s.ZipfS)
	}
	pace := "as fast as possible"
	if s.DurationMS > 0 {
		rate := float64(s.TotalRequests) / (s.DurationMS / 1000)
		pace = fmt.Sprintf("%.0f req/s over %s", rate, fmtDuration(s.DurationMS))
	}
	fmt.Fprintf(b, "lbctl bench: %d users behind %d gateways (%s, seed %d), %d backends, %d requests per user, %s\n",
		s.Users, s.Gateways, skew, s.Seed, s.Backends, s.Requests, pace)
	fmt.Fprintf(b, "policy %s; health %s", s.Policy, s.Health)
	if len(s.TopGateways) > 0 {
		top := s.TopGateways[0]
		fmt.Fprintf(b, "; gateway %s holds %.1f%% of users", top.Addr, 100*top.Share)
		if len(s.TopGateways) > 1 {
			sum := 0.0
			for _, g := range s.TopGateways {
				sum += g.Share
			}
			fmt.Fprintf(b, ", the top %d hold %.1f%%", len(s.TopGateways), 100*sum)
		}
	}
	b.WriteString("\n")
	if s.PoolSize > 1 || s.IPChurn > 0 || s.IPChurnEveryMS > 0 {
		fmt.Fprintf(b, "each gateway a pool of %d addresses; a request moves its user to another with probability %g", s.PoolSize, s.IPChurn)
		if s.IPChurnEveryMS > 0 {
			fmt.Fprintf(b, ", and every %s", fmtDuration(s.IPChurnEveryMS))
		}
		b.WriteString("\n")
	}
	if len(s.Events) > 0 {
		fmt.Fprintf(b, "events: %s\n", strings.Join(s.Events, " "))
	}
	switch {
	case s.Target != "":
		fmt.Fprintf(b, "front doors: %s\n", strings.TrimPrefix(s.Target, ", "))
	case s.Instances > 1:
		fmt.Fprintf(b, "front doors: %d lbctl instances, connections spread by a hash\n", s.Instances)
	}
	for _, e := range s.Failures {
		fmt.Fprintf(b, "fail %s at %s", e.Backend, fmtDuration(e.AtMS))
		for _, rec := range s.Recoveries {
			if rec.Backend == e.Backend && rec.AtMS > e.AtMS {
				fmt.Fprintf(b, ", recover at %s", fmtDuration(rec.AtMS))
				break
			}
		}
		b.WriteString("\n")
	}
}

// writeLoads writes each backend's users, requests and share, one column
// group per mode.
func writeLoads(b *strings.Builder, runs []RunResult) {
	const group = "%7s %9s %7s"
	fmt.Fprintf(b, "%-10s", "")
	for _, run := range runs {
		fmt.Fprintf(b, "   %-25s", modeTitle(run.Mode))
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "%-10s", "backend")
	for range runs {
		b.WriteString("   ")
		fmt.Fprintf(b, group, "users", "requests", "share")
	}
	b.WriteString("\n")
	for i, be := range runs[0].Backends {
		fmt.Fprintf(b, "%-10s", be.ID)
		for _, run := range runs {
			x := run.Backends[i]
			b.WriteString("   ")
			fmt.Fprintf(b, group, fmt.Sprint(x.Users), fmt.Sprint(x.Requests), fmt.Sprintf("%.1f%%", 100*x.Share))
		}
		b.WriteString("\n")
	}
}

// writeComparison writes the modes' figures side by side, one row a
// metric; failover_ms only when the scenario failed a backend.
func writeComparison(b *strings.Builder, runs []RunResult, failures bool) {
	fmt.Fprintf(b, "%-20s", "")
	for _, run := range runs {
		fmt.Fprintf(b, " %12s", run.Mode)
	}
	b.WriteString("\n")
	row := func(name string, f func(*RunResult) string) {
		fmt.Fprintf(b, "%-20s", name)
		for i := range runs {
			fmt.Fprintf(b, " %12s", f(&runs[i]))
		}
		b.WriteString("\n")
	}
	row("max_over_mean", func(x *RunResult) string { return fmt.Sprintf("%.2f", x.MaxOverMean) })
	row("cov", func(x *RunResult) string { return fmt.Sprintf("%.3f", x.CoV) })
	row("jain", func(x *RunResult) string { return fmt.Sprintf("%.3f", x.Jain) })
	row("broken_sessions", func(x *RunResult) string { return fmt.Sprint(x.BrokenSessions) })
	for _, c := range brokenCauses {
		any := false
		for i := range runs {
			any = any || *c.count(&runs[i].Broken) > 0
		}
		if any {
			row("  "+c.name, func(x *RunResult) string { return fmt.Sprint(*c.count(&x.Broken)) })
		}
	}
	row("repinned_users", func(x *RunResult) string { return fmt.Sprint(x.RepinnedUsers) })
	row("failed_requests", func(x *RunResult) string {
		return fmt.Sprintf("%d/%d", x.FailedRequests, x.TotalRequests)
	})
	if failures {
		row("failover_ms", func(x *RunResult) string {
			if x.FailoverMS == nil {
				return "-"
			}
			return fmt.Sprintf("%.1f", *x.FailoverMS)
		})
	}
	row("latency_p50_ms", func(x *RunResult) string { return fmt.Sprintf("%.2f", x.LatencyP50MS) })
	row("latency_p99_ms", func(x *RunResult) string { return fmt.Sprintf("%.2f", x.LatencyP99MS) })
	row("generator_rps", func(x *RunResult) string { return fmt.Sprintf("%.0f", x.GeneratorRPS) })
	row("schedule_lag_p99_ms", func(x *RunResult) string { return fmt.Sprintf("%.1f", x.ScheduleLagP99MS) })
	row("duration", func(x *RunResult) string { return fmtDuration(x.DurationMS) })
}

// brokenCauses names Broken's counts in the order the report shows them.
var brokenCauses = []struct {
	name  string
	count func(*Broken) *int
}{
	{"backend_failed", func(b *Broken) *int { return &b.BackendFailed }},
	{"maintenance", func(b *Broken) *int { return &b.Maintenance }},
	{"drain_deadline", func(b *Broken) *int { return &b.DrainDeadline }},
	{"restarted", func(b *Broken) *int { return &b.Restarted }},
	{"reloaded", func(b *Broken) *int { return &b.Reloaded }},
	{"instance_changed", func(b *Broken) *int { return &b.InstanceChanged }},
	{"address_changed", func(b *Broken) *int { return &b.AddressChanged }},
	{"rebalanced", func(b *Broken) *int { return &b.Rebalanced }},
}

// writeEventResults writes a line for each --add and each --drain or
// --maint of a run.
func writeEventResults(b *strings.Builder, run *RunResult) {
	for _, su := range run.ScaleUps {
		toMean := "never"
		if su.ToMeanMS != nil {
			toMean = "after " + fmtDuration(*su.ToMeanMS)
		}
		joining := ""
		if su.JoiningUsersThere > 0 {
			joining = fmt.Sprintf(" (and %d whose first request was in flight during the reload)", su.JoiningUsersThere)
		}
		fmt.Fprintf(b, "%s: --add %s at %s: %d of %d new users (%.0f%%) reached it%s, %d earlier users moved there; its load reached the mean %s\n",
			run.Mode, su.Backend, fmtDuration(su.AtMS), su.NewUsersThere, su.NewUsers, 100*su.NewUsersShare, joining, su.EarlierUsersThere, toMean)
	}
	for _, d := range run.Drains {
		end := "still serving when the next state came"
		if d.Completed {
			end = "its last request ended " + fmtDuration(*d.LastRequestMS) + " after"
		}
		deadline := ""
		if d.DeadlineMS != nil {
			deadline = fmt.Sprintf(" (deadline at %s)", fmtDuration(*d.DeadlineMS))
		}
		fmt.Fprintf(b, "%s: --%s %s at %s%s: %d users served after; %s\n",
			run.Mode, d.State, d.Backend, fmtDuration(d.AtMS), deadline, d.UsersAfter, end)
	}
}

// ends of lines.
func writeTrimmed(w io.Writer, text string) error {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

// fmtDuration shows milliseconds as a short duration: 850ms, 2s, 8.14s.
func fmtDuration(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

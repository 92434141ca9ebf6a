package bench

import (
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/leakcheck"
)

// paced is a small scenario whose requests are spread over d, one user a
// gateway, so that under L4 every user is a client key of its own.
func paced(d time.Duration, requests int) Options {
	o := small()
	o.Users, o.Gateways, o.Skew = 120, 120, Uniform
	o.Requests = requests
	o.Duration = d
	o.Concurrency = 8
	return o
}

func withPolicy(o *Options, policy string) {
	cfg := LabConfig()
	cfg.Balance.Policy = policy
	o.Config = cfg
}

// checkClean asserts what every event test needs: every request accounted
// for, none failed, no warning.
func checkClean(t *testing.T, o Options, rep *Report) {
	t.Helper()
	for i := range rep.Runs {
		res := &rep.Runs[i]
		checkAccounting(t, o, res)
		if res.FailedRequests != 0 || len(res.Warnings) > 0 {
			t.Errorf("%s: %d failed (%v), warnings %q", res.Mode, res.FailedRequests, res.FailureReasons, res.Warnings)
		}
	}
}

// TestScaleUpReachesNewUsersOnly adds app-04 to three backends a quarter
// into the run. Each user sends 2 requests, the first at phase/2 of the
// run, so the users with a phase over one half arrive after the add: about
// half of 120 (more when a loaded machine sends first requests late, which
// the bounds allow). With round robin their first requests go to the 4 backends
// in turn (existing users' requests hit their cookie or pin and pick
// nothing), so the new backend gets a quarter of them, give or take the
// turns that arrive together; and no user who came before moves. Health
// checks are off, so that app-04 takes users from the reload on: with
// checks it would wait rise*interval first (see the README).
func TestScaleUpReachesNewUsersOnly(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	o := paced(time.Second, 2)
	cfg := LabConfig()
	cfg.Health.Check = "none"
	o.Config = cfg
	o.Adds = []Event{{Backend: "app-04", At: 250 * time.Millisecond}}
	pop, err := NewPopulation(o.Users, o.Gateways, o.Skew, o.ZipfS, o.Seed)
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, o)
	checkClean(t, o, rep)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		if res.BrokenSessions != 0 {
			t.Errorf("%s: %d broken sessions %+v, want 0: an added backend moves nobody", res.Mode, res.BrokenSessions, res.Broken)
		}
		if len(res.ScaleUps) != 1 {
			t.Fatalf("%s: scale-ups %+v, want one", res.Mode, res.ScaleUps)
		}
		su := res.ScaleUps[0]
		t.Logf("%s: %+v", res.Mode, su)
		if su.EarlierUsersThere != 0 {
			t.Errorf("%s: %d users who came before the add reached it", res.Mode, su.EarlierUsersThere)
		}
		// About 60: every user whose first request is due after the
		// reload ended, fewer when a busy machine applies the add late;
		// and more when it also sends first requests late.
		due := 0
		for _, u := range pop.Users {
			if ms(o.Duration)*u.Phase/float64(o.Requests) >= su.ReloadedMS {
				due++
			}
		}
		if su.NewUsers < due || su.NewUsers > o.Users {
			t.Errorf("%s: %d new users, want the %d due after the reload ended at %.0fms, or more", res.Mode, su.NewUsers, due, su.ReloadedMS)
		}
		if lo, hi := su.NewUsers/4-2, (su.NewUsers+3)/4+2; su.NewUsersThere < lo || su.NewUsersThere > hi {
			t.Errorf("%s: %d of %d new users reached app-04, want a quarter: %d..%d", res.Mode, su.NewUsersThere, su.NewUsers, lo, hi)
		}
		if su.ToMeanMS == nil {
			t.Errorf("%s: app-04's load never reached the mean", res.Mode)
		}
		if got := res.Backends[3].Users; got != su.NewUsersThere+su.JoiningUsersThere {
			t.Errorf("%s: app-04 served %d users, want the %d new ones and the %d whose first request was in flight during the reload",
				res.Mode, got, su.NewUsersThere, su.JoiningUsersThere)
		}
	}
}

// TestDrainKeepsSessionsUntilItsDeadline drains app-01 at 300ms for 1s, in
// a run of 2s where every user sends 5 requests 400ms apart, its last at
// 1.6s or later. The drain is 600ms longer than the time between a user's
// requests, so that app-01's users come back during it even when a busy
// machine holds the load generator back for a while (a request is only
// ever late, never early). Until the deadline app-01 keeps its users; after
// it they all move, each for cause drain_deadline, and no request that
// starts 100ms after the deadline reaches app-01. Nothing else breaks a
// session.
func TestDrainKeepsSessionsUntilItsDeadline(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	o := paced(2*time.Second, 5)
	o.Drains = []Event{{Backend: "app-01", At: 300 * time.Millisecond}}
	o.DrainFor = time.Second
	rep := run(t, o)
	checkClean(t, o, rep)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		t.Logf("%s: broken %d %+v, drains %+v", res.Mode, res.BrokenSessions, res.Broken, res.Drains)
		if want := (Broken{DrainDeadline: res.BrokenSessions}); res.Broken != want || res.BrokenSessions == 0 {
			t.Errorf("%s: broken %d %+v, want some, all drain_deadline", res.Mode, res.BrokenSessions, res.Broken)
		}
		if res.BrokenSessions != res.Backends[0].Users {
			t.Errorf("%s: %d broken, want every one of app-01's %d users moved at the deadline", res.Mode, res.BrokenSessions, res.Backends[0].Users)
		}
		if len(res.Drains) != 1 {
			t.Fatalf("%s: drains %+v, want one", res.Mode, res.Drains)
		}
		dr := res.Drains[0]
		if dr.UsersAfter == 0 || !dr.Completed || dr.DeadlineMS == nil || dr.LastRequestMS == nil {
			t.Fatalf("%s: drain %+v: want users served after it, and a deadline", res.Mode, dr)
		}
		tl := res.Timeline
		for k, n := range tl.Backends[0].Requests {
			if from := float64(k) * tl.BucketMS; from >= *dr.DeadlineMS+100 && n > 0 {
				t.Errorf("%s: app-01 served %d requests starting %vms into the run, after its drain deadline at %.0fms", res.Mode, n, from, *dr.DeadlineMS)
			}
		}
	}
}

// TestMaintenanceMovesAtOnce puts app-02 in maintenance: its users move at
// their next request, for cause maintenance, and nothing else breaks.
func TestMaintenanceMovesAtOnce(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	o := paced(time.Second, 4)
	o.Maints = []Event{{Backend: "app-02", At: 300 * time.Millisecond}}
	rep := run(t, o)
	checkClean(t, o, rep)
	for i := range rep.Runs {
		res := &rep.Runs[i]
		if want := (Broken{Maintenance: res.Backends[1].Users}); res.Broken != want || res.BrokenSessions != res.Backends[1].Users {
			t.Errorf("%s: broken %d %+v, want all of app-02's %d users, for maintenance", res.Mode, res.BrokenSessions, res.Broken, res.Backends[1].Users)
		}
	}
}

// TestRestartForgetsPinsWithoutStateFile restarts lbctl mid-run under
// round robin. L4 loses its table unless a state file keeps it: without
// one, the gateways are pinned again in the order they come back, and
// some land elsewhere (restarted); with one, nobody moves. Cookies carry
// the pin through either. A request in flight at the restart may fail.
func TestRestartForgetsPinsWithoutStateFile(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	for _, stateFile := range []bool{false, true} {
		o := paced(time.Second, 4)
		o.Restarts = []time.Duration{450 * time.Millisecond}
		o.StateFile = stateFile
		rep := run(t, o)
		for i := range rep.Runs {
			checkAccounting(t, o, &rep.Runs[i])
		}
		l4, l7 := rep.Result(L4), rep.Result(L7)
		t.Logf("state file %v: l4 broken %d %+v, failed %d; l7 broken %d", stateFile, l4.BrokenSessions, l4.Broken, l4.FailedRequests, l7.BrokenSessions)
		if l7.BrokenSessions != 0 {
			t.Errorf("state file %v: l7 broken %d %+v, want 0", stateFile, l7.BrokenSessions, l7.Broken)
		}
		switch {
		case stateFile && l4.BrokenSessions != 0:
			t.Errorf("state file: l4 broken %d %+v, want 0: the pins were saved", l4.BrokenSessions, l4.Broken)
		case !stateFile && (l4.BrokenSessions == 0 || l4.Broken != Broken{Restarted: l4.BrokenSessions}):
			t.Errorf("no state file: l4 broken %d %+v, want some, all restarted", l4.BrokenSessions, l4.Broken)
		}
	}
}

// TestInstancesAgreeOnlyWithMaglev spreads each user's connections over 3
// instances. Under round robin each instance pins a client key on its own,
// so L4 sessions break for cause instance_changed; with maglev every
// instance computes the same backend, and nobody moves. Cookies hold
// either way.
func TestInstancesAgreeOnlyWithMaglev(t *testing.T) {
	t.Parallel() // paced runs that mostly wait: they share the machine well
	for _, policy := range []string{"roundrobin", "maglev"} {
		o := paced(600*time.Millisecond, 4)
		o.Instances = 3
		withPolicy(&o, policy)
		rep := run(t, o)
		checkClean(t, o, rep)
		l4, l7 := rep.Result(L4), rep.Result(L7)
		if l7.BrokenSessions != 0 {
			t.Errorf("%s: l7 broken %d %+v, want 0", policy, l7.BrokenSessions, l7.Broken)
		}
		switch {
		case policy == "maglev" && l4.BrokenSessions != 0:
			t.Errorf("maglev: l4 broken %d %+v, want 0", l4.BrokenSessions, l4.Broken)
		case policy == "roundrobin" && (l4.BrokenSessions == 0 || l4.Broken != Broken{InstanceChanged: l4.BrokenSessions}):
			t.Errorf("roundrobin: l4 broken %d %+v, want some, all instance_changed", l4.BrokenSessions, l4.Broken)
		}
	}
}

// TestEventsLeaveNothingRunning runs every lifecycle event at once, over
// two instances with state files and kept-alive, churning users: when Run
// returns, no goroutine or descriptor it started is left, the restarted
// instances' included.
func TestEventsLeaveNothingRunning(t *testing.T) {
	base := leakcheck.Take(t)
	o := paced(800*time.Millisecond, 4)
	o.KeepAlive = true
	o.PoolSize, o.IPChurn = 4, 0.3
	o.Instances, o.StateFile = 2, true
	o.Adds = []Event{{Backend: "app-04", At: 100 * time.Millisecond}}
	o.Drains = []Event{{Backend: "app-01", At: 200 * time.Millisecond}}
	o.DrainFor = 100 * time.Millisecond
	o.Maints = []Event{{Backend: "app-02", At: 250 * time.Millisecond}}
	o.Readies = []Event{{Backend: "app-02", At: 350 * time.Millisecond}}
	o.Reloads = []time.Duration{300 * time.Millisecond}
	o.Restarts = []time.Duration{450 * time.Millisecond}
	rep := run(t, o)
	for i := range rep.Runs {
		checkAccounting(t, o, &rep.Runs[i])
		if w := rep.Runs[i].Warnings; len(w) > 0 {
			t.Errorf("%s: warnings %q", rep.Runs[i].Mode, w)
		}
		if got := len(rep.Runs[i].Timeline.Events); got != 6 {
			t.Errorf("%s: %d events on the timeline, want 6", rep.Runs[i].Mode, got)
		}
	}
	base.WaitExceptPipes(t, 30*time.Second)
}

// TestScaleUpCountsByHand feeds the scale-up bookkeeping a run where
// app-02 joins by a reload from 100ms to 110ms, and checks who counts as
// a new user, who joined during the reload, and who moved. A first
// request that began before the reload ended but went to app-02 was
// routed on the new pool: its user did not move (a loaded machine made the
// old bookkeeping count such a user as an earlier one that moved there).
func TestScaleUpCountsByHand(t *testing.T) {
	span := func(startMS, latencyMS, b int) sample {
		s := at(startMS, b)
		s.latency = time.Duration(latencyMS) * time.Millisecond
		return s
	}
	pop := &Population{Gateways: []Gateway{{Index: 0, Addr: gatewayAddr(0), Users: 6}}}
	for u := range 6 {
		pop.Users = append(pop.Users, User{ID: u, Gateway: 0})
	}
	d := &runData{
		mode:     L7,
		pop:      pop,
		requests: 2,
		ids:      []string{"app-01", "app-02"},
		initial:  1,
		samples: []sample{
			at(0, 0), at(150, 0), // before the reload: earlier, stays
			span(95, 30, 1), at(150, 1), // in flight during it, on app-02: joining
			at(120, 1), at(160, 1), // after it, on app-02: new, there
			at(120, 0), at(160, 0), // after it, on app-01: new, not there
			at(50, 0), at(150, 1), // earlier, then app-02: a moved session
			span(90, 30, 0), at(170, 0), // in flight during it, on app-01: earlier, stays
		},
		past: []applied{{
			action: action{flag: "--add", event: Event{Backend: "app-02", At: 100 * time.Millisecond}, backend: 1},
			from:   100 * time.Millisecond, to: 110 * time.Millisecond,
		}},
		elapsed: 200 * time.Millisecond,
	}
	res := analyze(d)
	if len(res.ScaleUps) != 1 {
		t.Fatalf("scale-ups %+v, want one", res.ScaleUps)
	}
	su := res.ScaleUps[0]
	if su.NewUsers != 2 || su.NewUsersThere != 1 || su.NewUsersShare != 0.5 || su.JoiningUsersThere != 1 || su.EarlierUsersThere != 1 {
		t.Errorf("got %+v, want 2 new users, 1 of them on app-02 (0.5), 1 joining, 1 earlier user moved there", su)
	}
	if got := res.Backends[1].Users; got != su.NewUsersThere+su.JoiningUsersThere+su.EarlierUsersThere {
		t.Errorf("app-02 served %d users, want its new, joining and earlier ones: %+v", got, su)
	}
}

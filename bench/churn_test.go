package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

// TestChurnBreaksIPAffinityNotCookies moves every user to another address
// of its gateway's pool before its second request. Each of 300 users has a
// pool of its own (one user per gateway, 8 addresses each) and sends 2
// requests, so each user changes address exactly once. Cookies keep every
// session: 0 broken. L4 with /32 keys under maglev hashes the new address
// afresh: it lands on the same one of 3 backends with probability 1/3, so
// the broken sessions are Binomial(300, 2/3): mean 200, standard deviation
// 8.2; the test allows 4.5 of them either side. Every break is
// address_changed. --ip-churn-every with a period shorter than any gap
// between requests does the same.
func TestChurnBreaksIPAffinityNotCookies(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Options)
	}{
		{"probability 1", func(o *Options) { o.IPChurn = 1 }},
		{"every 1ns", func(o *Options) { o.IPChurnEvery = time.Nanosecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := small()
			o.Users, o.Gateways, o.Skew = 300, 300, Uniform
			o.Backends, o.Requests, o.PoolSize = 3, 2, 8
			o.Concurrency = 8
			cfg := LabConfig()
			cfg.Balance.Policy = "maglev"
			o.Config = cfg
			tc.set(&o)
			rep := run(t, o)
			for i := range rep.Runs {
				checkAccounting(t, o, &rep.Runs[i])
				if f := rep.Runs[i].FailedRequests; f != 0 {
					t.Errorf("%s: %d failed requests (%v)", rep.Runs[i].Mode, f, rep.Runs[i].FailureReasons)
				}
			}
			if l7 := rep.Result(L7); l7.BrokenSessions != 0 {
				t.Errorf("l7: %d broken sessions %+v, want 0: the cookie does not care about the address", l7.BrokenSessions, l7.Broken)
			}
			l4 := rep.Result(L4)
			t.Logf("l4: %d of 300 sessions broken %+v", l4.BrokenSessions, l4.Broken)
			n, p := 300.0, 2.0/3
			mean, sd := n*p, math.Sqrt(n*p*(1-p))
			lo, hi := int(mean-4.5*sd), int(mean+4.5*sd)
			if l4.BrokenSessions < lo || l4.BrokenSessions > hi {
				t.Errorf("l4: %d broken sessions, want within [%d, %d] (Binomial(300, 2/3))", l4.BrokenSessions, lo, hi)
			}
			if want := (Broken{AddressChanged: l4.BrokenSessions}); l4.Broken != want {
				t.Errorf("l4: broken by cause %+v, want all %d address_changed", l4.Broken, l4.BrokenSessions)
			}
		})
	}
}

// TestPoolAddresses checks the layout of gateway pools: each gateway a /24
// of its own from 127.2.0.0, slot j its host j+1; a pool of one keeps the
// gateway's own address.
func TestPoolAddresses(t *testing.T) {
	for _, tc := range []struct {
		g, j, size int
		want       string
	}{
		{0, 0, 1, "127.1.0.1"},
		{0, 0, 4, "127.2.0.1"},
		{0, 3, 4, "127.2.0.4"},
		{257, 249, 250, "127.3.1.250"},
		{MaxGateways - 1, 0, 2, "127.251.255.1"},
	} {
		if got := poolAddr(tc.g, tc.j, tc.size).String(); got != tc.want {
			t.Errorf("poolAddr(%d, %d, %d) = %s, want %s", tc.g, tc.j, tc.size, got, tc.want)
		}
	}
}

// TestPrefix24KeepsAPoolTogether is the trade-off of ipv4_prefix = 24:
// each gateway's pool is one /24, so under L4 a user whose address moves
// within it keeps its key and its backend. With every request after the
// first from another address, no session breaks; and since a whole pool
// is one key, all of a gateway's users share one backend.
func TestPrefix24KeepsAPoolTogether(t *testing.T) {
	o := small()
	o.Modes = []Mode{L4}
	o.Users, o.Gateways, o.Skew = 120, 6, Uniform
	o.Backends, o.Requests, o.PoolSize, o.IPChurn = 3, 3, 8, 1
	cfg := LabConfig()
	cfg.Affinity.IPv4Prefix = 24
	o.Config = cfg
	l4 := run(t, o).Result(L4)
	checkAccounting(t, o, l4)
	if l4.BrokenSessions != 0 || l4.FailedRequests != 0 {
		t.Errorf("broken %d %+v, failed %d; want 0, 0", l4.BrokenSessions, l4.Broken, l4.FailedRequests)
	}
	if l4.Affinity == nil || l4.Affinity.Size != o.Gateways {
		t.Errorf("affinity %+v, want one pin per gateway's pool (%d)", l4.Affinity, o.Gateways)
	}
	if !strings.Contains(l4.Finding, "ipv4_prefix = 24 keeps each gateway's pool on one key") {
		t.Errorf("finding %q does not explain the trade-off", l4.Finding)
	}
}

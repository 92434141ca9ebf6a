package instance

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/natview"
)

// What makes a key look like a NAT: more than one browser's worth of
// sessions or connections. A browser opens at most six connections to a
// host at once, and a browser that keeps its cookie starts one session.
const (
	natSessions    = 4  // L7: new persistence sessions in the window
	natConnections = 6  // L4: connections open at once
	natPortsPerMin = 60 // L4: distinct source ports per minute
)

// NAT returns the NAT view of the front door: at most limit of its
// busiest client keys, and what keying clients by source address does (L4)
// or would do (L7) to the spread of the counted traffic over the
// available backends.
func (in *Instance) NAT(limit int) admin.NATView {
	mode, tracker := "l4", (*natview.Tracker)(nil)
	if in.l7 != nil {
		mode, tracker = "l7", in.l7.NAT
	} else {
		tracker = in.l4.NAT
	}
	in.reloading.Lock()
	policy, sel := in.cfg.Balance.Policy, in.parts.Selector
	in.reloading.Unlock()
	// Maglev places a key by its hash: ask the live table where.
	reg := in.parts.Backends.Registry()
	byKey := func(k affinity.Key) string {
		if b := sel.Select(reg, backend.AddrHash(k.Addr()), nil); b != nil {
			return b.ID
		}
		return ""
	}
	return natView(mode, tracker.Snapshot(), in.natTargets(), policy, byKey, limit)
}

// natTargets returns the backends that take new clients, with their
// weights; all of them when none does, so that an estimate still shows.
func (in *Instance) natTargets() []natview.Target {
	var all, avail []natview.Target
	for _, b := range in.parts.Backends.Registry().All() {
		t := natview.Target{ID: b.ID, Weight: b.Weight()}
		all = append(all, t)
		if b.Available() {
			avail = append(avail, t)
		}
	}
	if len(avail) == 0 {
		return all
	}
	return avail
}

// natView turns a tracker's snapshot into the API's view.
func natView(mode string, snap natview.Snapshot, targets []natview.Target, policy string, byKey func(affinity.Key) string, limit int) admin.NATView {
	secs := snap.Window.Seconds()
	v := admin.NATView{
		Mode:          mode,
		WindowSeconds: math.Round(secs*10) / 10,
		TotalSessions: snap.TotalSessions,
		Followed:      len(snap.Sources),
		Capacity:      natview.Capacity,
	}
	// The load a key brings: its sessions in L7, where each is a
	// browser; its connections in L4, where they are what is balanced.
	weight := func(s natview.Source) float64 { return float64(s.Sessions) }
	tail := float64(snap.TotalSessions)
	if mode == "l4" {
		weight = func(s natview.Source) float64 { return float64(s.Events) }
		tail = float64(snap.TotalEvents)
	}
	for _, s := range snap.Sources {
		tail -= weight(s)
	}
	skew, shares := natview.IPAffinitySkew(snap.Sources, weight, max(tail, 0), targets, policy, byKey)
	v.IPAffinitySkew = math.Round(skew*100) / 100
	for _, p := range shares {
		v.IPAffinityShares = append(v.IPAffinityShares, admin.NATShare{Backend: p.ID, Share: p.Share})
	}

	show := func(s natview.Source) admin.NATSource {
		o := admin.NATSource{
			Key:           s.Key.String(),
			Sessions:      s.Sessions,
			SessionsError: s.SessionsError,
			Connections:   s.Active,
		}
		if snap.TotalSessions > 0 {
			o.Share = float64(s.Sessions) / float64(snap.TotalSessions)
		}
		// Over less than a second, a rate would say more about the
		// second than about the key.
		o.ConnRate = math.Round(float64(s.Events)/max(secs, 1)*100) / 100
		if mode == "l7" {
			o.NAT = s.Sessions >= natSessions
		} else {
			o.NAT = s.Active > natConnections || float64(s.Sessions) > natPortsPerMin*max(secs, 60)/60
		}
		return o
	}
	sources := slices.Clone(snap.Sources)
	if mode == "l4" {
		slices.SortFunc(sources, func(a, b natview.Source) int { return cmp.Compare(b.Events, a.Events) })
	}
	for _, s := range sources[:min(limit, len(sources))] {
		v.Sources = append(v.Sources, show(s))
	}
	if mode == "l4" {
		slices.SortFunc(sources, func(a, b natview.Source) int { return cmp.Compare(b.Active, a.Active) })
		for _, s := range sources[:min(limit, len(sources))] {
			if s.Active > 0 {
				v.ByConnections = append(v.ByConnections, show(s))
			}
		}
	}
	v.ErrorBound = fmt.Sprintf("the %d busiest of all keys are followed (Space-Saving): a key with more than %d %s in the window is always among them, "+
		"and a count is over the truth by at most that; sessions are HyperLogLog estimates, within %.1f%% (3 standard errors) plus the events a key sent before it was followed",
		natview.Capacity, snap.MaxError, map[string]string{"l4": "connections", "l7": "new sessions"}[mode], 300*natview.HLLStdError)
	return v
}

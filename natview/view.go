package natview

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/lbctl/lbctl/affinity"
)

// Source is one followed key as a Snapshot shows it.
type Source struct {
	Key affinity.Key
	// Events counts the key's events in the window: new sessions (L7) or
	// accepted connections (L4). It never undercounts, and overcounts
	// by at most EventsError (Space-Saving's guarantee).
	Events, EventsError uint64
	// Sessions estimates the distinct sessions among the events (L7:
	// client connections that got a new cookie; L4: source ports), of
	// those counted since the key took its slot.
	Sessions int
	// SessionsError bounds |Sessions - truth|: three standard errors of
	// the HLL, plus the events the key may have sent before it took its
	// slot, which the HLL never saw.
	SessionsError int
	// Active is the connections open now (L4), counted since the key took
	// its slot.
	Active int64
	// First orders keys by when they took their slots: the order a
	// selector would have placed them in.
	First uint64
}

// Snapshot is what a Tracker counted in its window.
type Snapshot struct {
	// Window is the stretch of time the counts cover: the current epoch
	// so far and the whole previous one (less when the tracker is
	// younger).
	Window time.Duration
	// Sources are every followed key, most sessions first.
	Sources []Source
	// TotalSessions estimates the distinct sessions of all keys in the
	// window, followed or not; TotalEvents counts their events exactly.
	TotalSessions int
	TotalEvents   uint64
	// MaxError is Space-Saving's bound on any key's overcount: the
	// events of its shard over the shard's places (those not held by a
	// key with open connections, which keeps its place). A key with more
	// events than this in the window is always followed.
	MaxError uint64
}

// Snapshot returns the tracker's counts as of now. It takes each shard's
// lock in turn, for the time it takes to copy the shard's counts (about
// 130 KiB).
func (t *Tracker) Snapshot() Snapshot {
	var snap Snapshot
	if t == nil || t.shards.Load() == nil {
		return snap
	}
	now := t.now()
	ep := epochOf(now)
	snap.Window = now.Sub(time.Unix(0, (ep-1)*int64(Epoch)))
	if since := now.Sub(time.Unix(0, t.started.Load())); since < snap.Window {
		snap.Window = since
	}
	// Each shard is copied under its lock and counted after: a
	// connection's event waits for a copy, never for the estimates.
	var merged HLL
	var all [2]HLL
	var events [2]uint64
	slots := new([shardSlots]slot)
	st := t.shards.Load()
	for i := range st {
		sh := &st[i]
		sh.mu.Lock()
		sh.rotate(ep)
		*slots, all, events = sh.slots, sh.all, sh.events
		sh.mu.Unlock()

		merged = all[0]
		merged.Merge(&all[1])
		snap.TotalSessions += merged.Estimate()
		shardEvents := events[0] + events[1]
		snap.TotalEvents += shardEvents
		// A newcomer takes the place of the key with the fewest events
		// among those without open connections (see take): the bound is
		// over those places.
		places := 0
		for j := range slots {
			if s := &slots[j]; !s.used || s.active == 0 {
				places++
			}
		}
		if places == 0 {
			places = shardSlots
		}
		snap.MaxError = max(snap.MaxError, shardEvents/uint64(places))
		for j := range slots {
			s := &slots[j]
			if !s.used {
				continue
			}
			merged = s.seen[0]
			merged.Merge(&s.seen[1])
			src := Source{
				Key:         s.key,
				Events:      s.windowCount(),
				EventsError: s.err[0] + s.err[1],
				Sessions:    merged.Estimate(),
				Active:      s.active,
				First:       s.first,
			}
			src.SessionsError = int(math.Ceil(3*HLLStdError*float64(src.Sessions))) + int(src.EventsError)
			snap.Sources = append(snap.Sources, src)
		}
	}
	slices.SortFunc(snap.Sources, func(a, b Source) int {
		if c := cmp.Compare(b.Sessions, a.Sessions); c != 0 {
			return c
		}
		return cmp.Compare(a.First, b.First)
	})
	return snap
}

// Target is a backend as the skew estimate places sources on it.
type Target struct {
	ID     string
	Weight int
}

// Placement is the load each target would carry.
type Placement struct {
	ID string
	// Load is the weight placed on the target; Share its fraction of all.
	Load, Share float64
}

// IPAffinitySkew estimates what keying clients by source address would do
// to this traffic: sources (each with its weight, such as its sessions)
// are placed whole on targets as policy would place new keys, and tail
// (weight of sources not followed) is spread over the targets in
// proportion to their weights. It returns the busiest target's load per
// unit of weight over the mean (1 is even; n when one of n equal targets
// carries everything) and every target's load.
//
// Sources are placed in the order they were first seen (First): under
// "roundrobin" the i-th goes to the i-th position of the weighted cycle,
// as the round robin selector would have placed the i-th new key; under
// "maglev" each goes where byKey (the live consistent hash) names; under
// any other policy ("leastconn", "random2"), or when byKey names no
// target, each goes to the target with the least load per unit of weight,
// which is what those policies steer towards.
func IPAffinitySkew(sources []Source, weight func(Source) float64, tail float64, targets []Target, policy string, byKey func(affinity.Key) string) (float64, []Placement) {
	if len(targets) == 0 {
		return 1, nil
	}
	order := slices.Clone(sources)
	slices.SortFunc(order, func(a, b Source) int { return cmp.Compare(a.First, b.First) })
	loads := make([]float64, len(targets))
	totalWeight := 0
	for _, t := range targets {
		totalWeight += max(t.Weight, 1)
	}
	cycle := weightedCycle(targets)
	for i, s := range order {
		w := weight(s)
		at := -1
		switch {
		case policy == "roundrobin":
			at = cycle[i%len(cycle)]
		case policy == "maglev" && byKey != nil:
			id := byKey(s.Key)
			at = slices.IndexFunc(targets, func(t Target) bool { return t.ID == id })
		}
		if at < 0 {
			at = 0
			for j := range targets {
				if loads[j]/float64(max(targets[j].Weight, 1)) < loads[at]/float64(max(targets[at].Weight, 1)) {
					at = j
				}
			}
		}
		loads[at] += w
	}
	total := tail
	for j, t := range targets {
		loads[j] += tail * float64(max(t.Weight, 1)) / float64(totalWeight)
	}
	for _, s := range order {
		total += weight(s)
	}
	out := make([]Placement, len(targets))
	busiest := 0.0
	for j, t := range targets {
		out[j] = Placement{ID: t.ID, Load: loads[j]}
		if total > 0 {
			out[j].Share = loads[j] / total
		}
		busiest = max(busiest, loads[j]/float64(max(t.Weight, 1)))
	}
	if total == 0 {
		return 1, out
	}
	return busiest / (total / float64(totalWeight)), out
}

// weightedCycle returns target indexes in the order of the round robin
// selector's interleaved cycle: round k holds, in order, the targets
// whose weight exceeds k.
func weightedCycle(targets []Target) []int {
	top := 0
	for _, t := range targets {
		top = max(top, max(t.Weight, 1))
	}
	var cycle []int
	for k := range top {
		for j, t := range targets {
			if max(t.Weight, 1) > k {
				cycle = append(cycle, j)
			}
		}
	}
	return cycle
}

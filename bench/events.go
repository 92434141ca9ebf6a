package bench

import (
	"time"
)

// spans returns what explains moves other than a killed backend, from the
// events that happened: a maintenance from its --maint to the next state
// of that backend, a bounded drain from its deadline to the next state, and
// each restart and reload while it lasted.
func spans(past []applied, drainFor time.Duration) []span {
	var out []span
	// The span still open per backend, for an admin state that ends it.
	open := make(map[int]int)
	closeOpen := func(b int, at time.Duration) {
		if i, ok := open[b]; ok {
			out[i].to = max(at, out[i].from)
			delete(open, b)
		}
	}
	for _, p := range past {
		if p.err != nil {
			continue
		}
		switch p.flag {
		case "--maint":
			closeOpen(p.backend, p.from)
			open[p.backend] = len(out)
			out = append(out, span{cause: maintenance, backend: p.backend, from: p.from, to: forever})
		case "--drain":
			closeOpen(p.backend, p.from)
			if drainFor > 0 {
				open[p.backend] = len(out)
				out = append(out, span{cause: drainDeadline, backend: p.backend, from: p.from + drainFor, to: forever})
			}
		case "--ready":
			closeOpen(p.backend, p.from)
		case "--restart@", "--upgrade@":
			out = append(out, span{cause: restarted, backend: -1, from: p.from, to: p.to})
		case "--reload@", "--add":
			out = append(out, span{cause: reloaded, backend: -1, from: p.from, to: p.to})
		}
	}
	return out
}

// scaleUps reports each --add that happened: how many users arrived after
// it (their first served request began after the reload ended), how many
// of those reached the new backend, how many whose first request was in
// flight during the reload were sent there, whether any user moved there
// from another backend, and how soon its requests per bucket reached the
// mean of all backends.
//
// A first request that began before the reload ended may still have been
// routed on the new pool: on a loaded machine it waits to be accepted and
// routed until after the new pool is in place, and then rightly goes to
// the new backend. Such a user did not move; only one that another
// backend served first and that reached the new one afterwards did.
func scaleUps(d *runData, t *Timeline) []ScaleUp {
	var out []ScaleUp
	for _, p := range d.past {
		if p.flag != "--add" || p.err != nil {
			continue
		}
		su := ScaleUp{Backend: d.ids[p.backend], AtMS: ms(p.from), ReloadedMS: ms(p.to)}
		for u := 0; u*d.requests < len(d.samples); u++ {
			first := -1
			reached := false
			for k := range d.requests {
				s := &d.samples[u*d.requests+k]
				if !s.served() {
					continue
				}
				if first < 0 {
					first = k
				}
				reached = reached || int(s.backend) == p.backend
			}
			if first < 0 {
				continue
			}
			f := &d.samples[u*d.requests+first]
			switch {
			case f.start >= p.to:
				su.NewUsers++
				if reached {
					su.NewUsersThere++
				}
			case int(f.backend) == p.backend:
				su.JoiningUsersThere++
			case reached:
				su.EarlierUsersThere++
			}
		}
		if su.NewUsers > 0 {
			su.NewUsersShare = float64(su.NewUsersThere) / float64(su.NewUsers)
		}
		// The first bucket after the add where the new backend carries at
		// least the mean of the backends in the pool by then.
		w := time.Duration(t.BucketMS * float64(time.Millisecond))
		for k := int(p.to / w); w > 0 && k < len(t.Failed); k++ {
			sum, n := 0, 0
			for b := range t.Backends {
				if b < d.initial || b == p.backend || d.addedBy(b, time.Duration(k)*w) {
					sum += t.Backends[b].Requests[k]
					n++
				}
			}
			if got := t.Backends[p.backend].Requests[k]; sum > 0 && float64(got)*float64(n) >= float64(sum) {
				v := ms(time.Duration(k)*w - p.from)
				su.ToMeanMS = &v
				break
			}
		}
		out = append(out, su)
	}
	return out
}

// addedBy reports whether backend b (an added one) had joined by at.
func (d *runData) addedBy(b int, at time.Duration) bool {
	for _, p := range d.past {
		if p.flag == "--add" && p.backend == b && p.err == nil && p.from <= at {
			return true
		}
	}
	return false
}

// drains reports each --drain and --maint that happened: when the backend
// served its last request after it, and how many users it still served.
func drains(d *runData) []DrainResult {
	var out []DrainResult
	for i, p := range d.past {
		if (p.flag != "--drain" && p.flag != "--maint") || p.err != nil {
			continue
		}
		// The state lasts until the next state of the same backend.
		until := forever
		for _, q := range d.past[i+1:] {
			if q.backend == p.backend && (q.flag == "--drain" || q.flag == "--maint" || q.flag == "--ready") {
				until = q.from
				break
			}
		}
		dr := DrainResult{Backend: d.ids[p.backend], State: p.flag[2:], AtMS: ms(p.from)}
		if p.flag == "--drain" && d.drainFor > 0 {
			v := ms(p.from + d.drainFor)
			dr.DeadlineMS = &v
		}
		last := time.Duration(-1)
		users := make(map[int]bool)
		for j := range d.samples {
			s := &d.samples[j]
			if s.served() && int(s.backend) == p.backend && s.start >= p.to && s.start < until {
				last = max(last, s.start+s.latency)
				users[j/d.requests] = true
			}
		}
		dr.UsersAfter = len(users)
		if last >= 0 {
			v := ms(last - p.from)
			dr.LastRequestMS = &v
		} else {
			zero := 0.0
			dr.LastRequestMS = &zero
		}
		dr.Completed = until == forever || last < until
		out = append(out, dr)
	}
	return out
}

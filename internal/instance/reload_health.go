package instance

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
)

// probeSettings returns the health check settings of h: the ones NewPool
// starts the prober with and a reload gives it. The Checker is nil when h
// turns checks off.
func probeSettings(h config.Health) (backend.ProbeSettings, error) {
	checker, err := backend.NewChecker(h.Check, h.Path)
	if err != nil {
		return backend.ProbeSettings{}, fmt.Errorf("health.check: %w", err)
	}
	return backend.ProbeSettings{
		Checker:  checker,
		Interval: h.Interval.D(),
		Timeout:  h.Timeout.D(),
		Rise:     h.Rise,
		Fall:     h.Fall,
	}, nil
}

// applyChecks gives the pool and its prober the settings s. With checks on,
// backends that a reload adds wait for their rise checks; with checks off
// they join up, since nothing else would bring them up.
func applyChecks(p *Pool, s backend.ProbeSettings) {
	p.Backends.SetJoinDown(s.Checker != nil)
	p.Prober.SetSettings(s)
}

// settingsChange is what a reload changes in [health] and [affinity], the
// sections applied in place besides the backends.
type settingsChange struct {
	// probe is set when [health] changed: the prober's new settings.
	probe *backend.ProbeSettings
	// ttl and capacity are set when affinity.ttl or affinity.capacity
	// changed in L4, where the affinity table lives.
	ttl, capacity bool
	// items are the reload summary's entries, such as
	// "~health(interval 2s->1s)" and "~affinity(ttl 1h->30m)".
	items []string
}

// planSettings compares the [health] and [affinity] sections of cur and
// next and prepares their change, so that everything that may fail is done
// before the reload touches anything.
func planSettings(cur, next *config.Config) (settingsChange, error) {
	var c settingsChange
	if diff := healthDiff(cur.Health, next.Health); len(diff) > 0 {
		s, err := probeSettings(next.Health)
		if err != nil {
			return settingsChange{}, err
		}
		c.probe = &s
		c.items = append(c.items, "~health("+strings.Join(diff, ", ")+")")
	}
	if next.Mode == "l7" {
		// L7 has no affinity table: its persistence is the cookie.
		return c, nil
	}
	var diff []string
	if a, b := cur.Affinity.TTL, next.Affinity.TTL; a != b {
		c.ttl = true
		diff = append(diff, "ttl "+a.String()+"->"+b.String())
	}
	if a, b := cur.Affinity.Capacity, next.Affinity.Capacity; a != b {
		c.capacity = true
		diff = append(diff, "capacity "+strconv.Itoa(a)+"->"+strconv.Itoa(b))
	}
	if len(diff) > 0 {
		c.items = append(c.items, "~affinity("+strings.Join(diff, ", ")+")")
	}
	return c, nil
}

// applySettings applies c, planned from the instance's config to next, to
// the running prober and affinity table, and returns its summary items.
// Nothing is closed or rebuilt: the prober's loops take up the new
// settings, and pins are kept (see affinity.Table.SetTTL and SetCapacity).
func (in *Instance) applySettings(c settingsChange, next *config.Config) []string {
	if c.probe != nil {
		applyChecks(in.parts, *c.probe)
	}
	if in.table != nil {
		if c.ttl {
			in.table.SetTTL(next.Affinity.TTL.D())
		}
		if c.capacity {
			in.table.SetCapacity(next.Affinity.Capacity)
		}
	}
	return c.items
}

// healthDiff names each [health] key that differs, with its old and new
// values: "interval 2s->1s".
func healthDiff(a, b config.Health) []string {
	var diff []string
	add := func(key, from, to string) {
		if from != to {
			diff = append(diff, key+" "+from+"->"+to)
		}
	}
	add("check", a.Check, b.Check)
	add("path", strconv.Quote(a.Path), strconv.Quote(b.Path))
	add("interval", a.Interval.String(), b.Interval.String())
	add("timeout", a.Timeout.String(), b.Timeout.String())
	add("rise", strconv.Itoa(a.Rise), strconv.Itoa(b.Rise))
	add("fall", strconv.Itoa(a.Fall), strconv.Itoa(b.Fall))
	return diff
}

// affinityRestartOnly returns a message for each affinity prefix that
// differs between cur and next in L4: a pin's key is the client address
// masked to these prefixes, so a new prefix would give every existing pin
// a key no client has. The TTL and capacity change in place.
func affinityRestartOnly(cur, next *config.Config) []string {
	if cur.Mode == "l7" {
		return nil // no affinity table in L7
	}
	var msgs []string
	check := func(key string, a, b int) {
		if a != b {
			msgs = append(msgs, fmt.Sprintf("%s: changed %d->%d; it takes effect only at a restart, since pins are keyed by it, so the reload is refused (restore it, or restart lbctl)", key, a, b))
		}
	}
	check("affinity.ipv4_prefix", cur.Affinity.IPv4Prefix, next.Affinity.IPv4Prefix)
	check("affinity.ipv6_prefix", cur.Affinity.IPv6Prefix, next.Affinity.IPv6Prefix)
	return msgs
}

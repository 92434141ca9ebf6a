package instance

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/lbctl/lbctl/config"
)

// tuningChanges returns one item per section of the proxy's own settings
// that differs between cur and next, in the form of the backends' items:
// "~timeouts(idle 1m->30s, connect 3s->5s)". Cookie secrets are never
// shown: a change of them reads "secret changed".
func tuningChanges(cur, next *config.Config) []string {
	var items []string
	// A key missing from the lists below still shows, as "changed".
	section := func(name string, parts []string, a, b any) {
		if len(parts) == 0 && !reflect.DeepEqual(a, b) {
			parts = []string{"changed"}
		}
		if len(parts) > 0 {
			items = append(items, "~"+name+"("+strings.Join(parts, ", ")+")")
		}
	}
	bal := diff(nil, "policy", cur.Balance.Policy, next.Balance.Policy)
	bal = diff(bal, "table_size", cur.Balance.TableSize, next.Balance.TableSize)
	section("balance", bal, cur.Balance, next.Balance)

	var t []string
	t = diff(t, "connect", cur.Timeouts.Connect, next.Timeouts.Connect)
	t = diff(t, "idle", cur.Timeouts.Idle, next.Timeouts.Idle)
	t = diff(t, "header", cur.Timeouts.Header, next.Timeouts.Header)
	t = diff(t, "server", cur.Timeouts.Server, next.Timeouts.Server)
	section("timeouts", t, cur.Timeouts, next.Timeouts)

	lim := diff(nil, "header_bytes", cur.Limits.HeaderBytes, next.Limits.HeaderBytes)
	lim = diff(lim, "backend_idle_conns", cur.Limits.BackendIdleConns, next.Limits.BackendIdleConns)
	section("limits", lim, cur.Limits, next.Limits)

	a, b := cur.Cookie, next.Cookie
	var c []string
	c = diff(c, "name", a.Name, b.Name)
	c = diff(c, "expires", a.Expires, b.Expires)
	c = diff(c, "path", a.Path, b.Path)
	c = diff(c, "domain", a.Domain, b.Domain)
	c = diff(c, "http_only", a.HTTPOnly, b.HTTPOnly)
	c = diff(c, "secure", a.Secure, b.Secure)
	c = diff(c, "same_site", a.SameSite, b.SameSite)
	if !slices.Equal(a.Secret, b.Secret) {
		c = append(c, "secret changed")
	}
	section("cookie", c, a, b)
	return items
}

// diff appends "key a->b" to parts when a and b differ.
func diff[T comparable](parts []string, key string, a, b T) []string {
	if a == b {
		return parts
	}
	return append(parts, fmt.Sprintf("%s %v->%v", key, a, b))
}

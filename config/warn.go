package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// warnings returns what is valid in c, the configuration just decoded from
// the file called file, but nearly always a mistake, each placed in the
// file as errors are: "file:line: key.path: what". Today that is two
// backends at one address: one server then gets twice its share under
// every policy, and its health counts twice.
func (d *decoder) warnings(c *Config, file string) []string {
	var out []string
	first := make(map[string]int, len(c.Backends)) // address -> index of its first backend
	for i, b := range c.Backends {
		addr := sameAddress(b.Address)
		j, dup := first[addr]
		if !dup {
			first[addr] = i
			continue
		}
		path := fmt.Sprintf("%s[%d].address", backendKey, i)
		other := fmt.Sprintf("%s[%d]", backendKey, j)
		where := ""
		if l := d.line(other + ".address"); l > 0 {
			where = fmt.Sprintf(" (line %d)", l)
		}
		msg := fmt.Sprintf("%s: %q of %q is also the address of %s %q%s; two backends at one address skew every balancing policy",
			path, b.Address, b.ID, other, c.Backends[j].ID, where)
		out = append(out, (&fileError{file: file, line: d.line(path), msg: msg}).Error())
	}
	out = append(out, d.clusterWarnings(c, file)...)
	return out
}

// sameAddress returns a form of addr, a valid backend host:port, that is
// equal for two ways of writing one address: "[::1]:80" and
// "[0:0:0:0:0:0:0:1]:080", or "App:80" and "app:80". Different host names
// that resolve to one address are not found: that would take a lookup.
func sameAddress(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	}
	return net.JoinHostPort(strings.ToLower(host), port)
}

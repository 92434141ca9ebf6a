package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Validate checks every key of c and returns all the problems found, joined
// with errors.Join, one per line in the form `key.path: "value" reason`.
// Backends are numbered from 0 in file order: `backend[1].address:
// "10.0.0.2" has no port`. Secrets are never quoted in messages.
func (c *Config) Validate() error { return c.validate(true) }

// validate is Validate, with an empty backend list allowed unless
// needBackends.
func (c *Config) validate(needBackends bool) error {
	v := validator{}

	v.oneOf("mode", c.Mode, "l4", "l7")
	if msg := checkHostPort(c.Listen, true); msg != "" {
		v.fail("listen", "%q %s", c.Listen, msg)
	}

	v.oneOf("balance.policy", c.Balance.Policy, "roundrobin", "leastconn", "random2", "maglev")
	if n := c.Balance.TableSize; n < 3 || n > maxTableSize || !isPrime(n) {
		v.fail("balance.table_size", "%d is not a prime from 3 to %d (the default is %d)", n, maxTableSize, defaultTableSize)
	}

	v.positive("affinity.ttl", c.Affinity.TTL)
	v.atLeast("affinity.capacity", c.Affinity.Capacity, 1)
	v.between("affinity.ipv4_prefix", c.Affinity.IPv4Prefix, 1, 32)
	v.between("affinity.ipv6_prefix", c.Affinity.IPv6Prefix, 1, 128)
	v.positive("affinity.save_interval", c.Affinity.SaveInterval)

	v.cookie(&c.Cookie)

	v.oneOf("health.check", c.Health.Check, "tcp", "http", "none")
	if c.Health.Check == "http" {
		switch p := c.Health.Path; {
		case !strings.HasPrefix(p, "/"):
			v.fail("health.path", `%q must start with "/" when health.check is http`, p)
		case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			v.fail("health.path", "%q must not contain spaces or control characters", p)
		}
	}
	v.positive("health.interval", c.Health.Interval)
	v.positive("health.timeout", c.Health.Timeout)
	v.atLeast("health.rise", c.Health.Rise, 1)
	v.atLeast("health.fall", c.Health.Fall, 1)

	v.positive("timeouts.connect", c.Timeouts.Connect)
	if c.Timeouts.Idle < 0 {
		v.fail("timeouts.idle", "%q must not be negative (0 means no idle timeout)", c.Timeouts.Idle)
	}
	v.positive("timeouts.header", c.Timeouts.Header)
	v.positive("timeouts.server", c.Timeouts.Server)

	v.between("limits.header_bytes", c.Limits.HeaderBytes, 1024, 1<<20)
	v.between("limits.backend_idle_conns", c.Limits.BackendIdleConns, 0, maxBackendIdleConns)
	if n := c.L4.Loops; n < 0 || n > maxLoops {
		v.fail("l4.loops", "%d is out of range 0..%d (0 is one loop per core)", n, maxLoops)
	}

	v.oneOf("l7.engine", c.L7.Engine, "goroutine", "loop")

	v.admin(&c.Admin)
	v.log(&c.Log)
	v.cluster(&c.Cluster)
	v.listenProxy(c.ListenProxy)
	v.tls(&c.TLS, c.Mode, c.Listen)

	if needBackends || len(c.Backends) > 0 {
		v.backends(c.Backends)
	}

	return errors.Join(v.errs...)
}

// maxLoops bounds l4.loops: more loops than cores only share the cores,
// and each holds descriptors and buffers of its own.
const maxLoops = 1024

// The default and largest limits.backend_idle_conns. The default is
// package l7's DefaultMaxIdlePerBackend (a test there checks they agree);
// the bound keeps a typo from letting one backend hold most of lbctl's
// descriptors.
const (
	DefaultBackendIdleConns = 1024
	maxBackendIdleConns     = 65536
)

// The Maglev table's default and largest size, as package backend has
// them (DefaultTableSize, MaxTableSize; a test there checks they agree).
const (
	defaultTableSize = 65537
	maxTableSize     = 1 << 24
)

// isPrime reports whether n is a prime, by trial division (n is at most
// maxTableSize: about 2,000 divisions).
//
// It is a copy of package backend's prime, on purpose: config imports no
// other lbctl package (see the package doc). backend's
// TestConfigAgreesOnTableSize keeps the two alike.
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// validator collects the problems Validate finds.
type validator struct {
	errs []error
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, &fieldError{path: path, err: fmt.Errorf(format, args...)})
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.fail(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.fail(path, "%q must be positive", d)
	}
}

func (v *validator) atLeast(path string, n, lo int) {
	if n < lo {
		v.fail(path, "%d must be at least %d", n, lo)
	}
}

func (v *validator) between(path string, n, lo, hi int) {
	if n < lo || n > hi {
		v.fail(path, "%d is out of range %d..%d", n, lo, hi)
	}
}

func (v *validator) cookie(c *Cookie) {
	switch {
	case c.Name == "":
		v.fail("cookie.name", `"" must not be empty`)
	case !isToken(c.Name):
		v.fail("cookie.name", "%q is not a valid cookie name (an RFC 6265 token: no spaces, control characters or any of ()<>@,;:\\\"/[]?={})", c.Name)
	}
	if c.Expires < 0 {
		v.fail("cookie.expires", "%q must not be negative (0 means a session cookie)", c.Expires)
	}
	// Path and Domain go into the Set-Cookie header as they are, so they
	// must not be able to end the attribute or the header.
	switch {
	case !strings.HasPrefix(c.Path, "/"):
		v.fail("cookie.path", `%q must start with "/"`, c.Path)
	case strings.IndexFunc(c.Path, func(r rune) bool { return r < ' ' || r == 0x7f || r == ';' }) >= 0:
		v.fail("cookie.path", "%q must not contain ';' or control characters", c.Path)
	}
	if c.Domain != "" && !isHostname(strings.TrimPrefix(c.Domain, ".")) {
		v.fail("cookie.domain", "%q is not a domain name (letters, digits, '-' and '.')", c.Domain)
	}
	v.oneOf("cookie.same_site", c.SameSite, "lax", "strict", "none", "")
	if c.SameSite == "none" && !c.Secure {
		v.fail("cookie.same_site", `"none" requires cookie.secure = true: browsers drop SameSite=None cookies that are not Secure`)
	}
	for i, s := range c.Secret {
		if s == "" {
			v.fail("cookie.secret", "element %d is empty", i)
		}
	}
}

// admin checks the [admin] table. The token is a secret: messages say what
// is wrong with it without quoting it.
func (v *validator) admin(a *Admin) {
	network, addr, err := ParseAdminListen(a.Listen)
	if err != nil {
		v.fail("admin.listen", "%q %w", a.Listen, err)
		return
	}
	if network == "tcp" && a.Token == "" && !isLoopback(addr) {
		v.fail("admin.listen", "%q: admin.token is required when admin.listen is not loopback or a unix socket", a.Listen)
	}
	if strings.IndexFunc(a.Token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		v.fail("admin.token", "must hold only visible ASCII characters, no spaces: it is sent in an Authorization header")
	}
}

// log checks the [log] table: the access log is off, stdout, or a file
// path that can name a file (the file itself is opened at start).
func (v *validator) log(l *Log) {
	switch a := l.Access; {
	case a == "" || a == "stdout":
	case strings.IndexFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		v.fail("log.access", "%q must not contain control characters", a)
	case strings.HasSuffix(a, "/") || filepath.Base(a) == "." || filepath.Base(a) == "..":
		v.fail("log.access", `%q names a directory: want "", "stdout" or a file path`, a)
	}
}

// ParseAdminListen splits an admin listen address as admin.listen and the
// operator commands' --admin flag write it into the network and address
// that net.Listen and net.Dial take: "unix:/run/lbctl.sock" is ("unix",
// "/run/lbctl.sock"), "127.0.0.1:9090" is ("tcp", "127.0.0.1:9090"), and ""
// is ("", ""), the admin API turned off. The error says what is wrong with
// s, without quoting it.
func ParseAdminListen(s string) (network, address string, err error) {
	switch {
	case s == "":
		return "", "", nil
	case strings.HasPrefix(s, unixPrefix):
		path := strings.TrimPrefix(s, unixPrefix)
		switch {
		case path == "":
			return "", "", errors.New(`has no socket path after "unix:"`)
		case strings.IndexByte(path, 0) >= 0:
			return "", "", errors.New("has a NUL byte in its socket path")
		case len(path) > maxUnixPath:
			return "", "", fmt.Errorf("has a socket path longer than %d bytes, the limit of a unix socket", maxUnixPath)
		}
		return "unix", path, nil
	}
	if msg := checkHostPort(s, true); msg != "" {
		return "", "", fmt.Errorf(`%s (write host:port or "unix:/path")`, msg)
	}
	return "tcp", s, nil
}

// unixPrefix marks an admin listen address as a unix socket path.
const unixPrefix = "unix:"

// maxUnixPath is the longest unix socket path Linux takes: sun_path holds
// 108 bytes with the terminating NUL.
const maxUnixPath = 107

// isLoopback reports whether the host of addr, a valid host:port, is
// "localhost" or a loopback IP address (127.0.0.0/8, ::1, or an IPv4-mapped
// 127.x.y.z). An empty host, every local address, is not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func (v *validator) backends(bs []Backend) {
	if len(bs) == 0 {
		v.errs = append(v.errs, &fieldError{path: backendKey, err: errors.New("no backends configured")})
		return
	}
	seen := make(map[string]int, len(bs)) // id -> index of its first backend
	for i, b := range bs {
		prefix := fmt.Sprintf("%s[%d].", backendKey, i)
		switch first, dup := seen[b.ID]; {
		case b.ID == "":
			v.fail(prefix+"id", `"" must not be empty`)
		case !isID(b.ID):
			v.fail(prefix+"id", "%q may only hold letters, digits, '-', '_' and '.'", b.ID)
		case len(b.ID) > maxIDLen:
			v.fail(prefix+"id", "%q is longer than %d characters", b.ID, maxIDLen)
		case dup:
			v.fail(prefix+"id", "%q duplicates %s[%d].id", b.ID, backendKey, first)
		default:
			seen[b.ID] = i
		}
		if msg := checkHostPort(b.Address, false); msg != "" {
			v.fail(prefix+"address", "%q %s", b.Address, msg)
		}
		v.between(prefix+"weight", b.Weight, 1, 256)
		v.sendProxy(prefix+"send_proxy", b.SendProxy)
	}
}

// checkHostPort checks that addr is host:port with a numeric port in
// 1..65535 and returns what is wrong with it, or "". An empty host, which
// means every local address, is allowed only when emptyHost is set.
func checkHostPort(addr string, emptyHost bool) string {
	if addr == "" {
		return "must not be empty"
	}
	if !strings.Contains(addr, ":") || (strings.HasPrefix(addr, "[") && !strings.Contains(addr, "]:")) {
		return "has no port"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "is not host:port (write IPv6 addresses in brackets: [::1]:80)"
	}
	switch {
	case port == "":
		return "has no port"
	case strings.Trim(port, "0123456789") != "" || len(port) > 5:
		return fmt.Sprintf("has port %q, which is not a number 1..65535", port)
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		return fmt.Sprintf("has port %s, out of range 1..65535", port)
	}
	switch {
	case host == "":
		if !emptyHost {
			return "has no host"
		}
	case strings.HasPrefix(addr, "["):
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return fmt.Sprintf("has %q in brackets, which is not an IPv6 address", host)
		}
	case !isHostname(host):
		return fmt.Sprintf("has host %q, which is neither an IP address nor a host name", host)
	}
	return ""
}

// isHostname reports whether s is made only of ASCII letters, digits, '-',
// '_' and '.', which covers IPv4 addresses and the host names in use.
func isHostname(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == "" &&
		!strings.Contains(s, "..")
}

// maxIDLen bounds backend ids: an id is a cookie value, and the L7 proxy
// ignores cookie values longer than 256 bytes; 64 is ample for a name.
const maxIDLen = 64

// isID reports whether s is a valid backend id: ASCII letters, digits, '-',
// '_' and '.'. Ids appear as cookie values, so they stay within the
// characters RFC 6265 allows there.
func isID(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
}

// isToken reports whether s is an RFC 6265 cookie name: an RFC 2616 token,
// visible ASCII without separators.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

package config

import (
	"strings"
	"testing"
	"time"
)

// valid returns a Config that passes Validate.
func valid() Config {
	c := Default()
	c.Backends = []Backend{
		{ID: "app-01", Address: "127.0.0.1:9001", Weight: 1},
		{ID: "app-02", Address: "127.0.0.1:9002", Weight: 1},
	}
	return c
}

func TestValidateAcceptsValid(t *testing.T) {
	c := valid()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(valid) = %v, want nil", err)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // the whole, only error
	}{
		{"mode", func(c *Config) { c.Mode = "l3" }, `mode: "l3" is not one of l4, l7`},
		{"listen empty", func(c *Config) { c.Listen = "" }, `listen: "" must not be empty`},
		{"listen no port", func(c *Config) { c.Listen = "localhost" }, `listen: "localhost" has no port`},
		{"listen port 0", func(c *Config) { c.Listen = ":0" }, `listen: ":0" has port 0, out of range 1..65535`},
		{"listen port too big", func(c *Config) { c.Listen = ":65536" }, `listen: ":65536" has port 65536, out of range 1..65535`},
		{"listen named port", func(c *Config) { c.Listen = ":http" }, `listen: ":http" has port "http", which is not a number 1..65535`},
		{"listen bare IPv6", func(c *Config) { c.Listen = "::1:8080" }, `listen: "::1:8080" is not host:port (write IPv6 addresses in brackets: [::1]:80)`},
		{"listen IPv6 without port", func(c *Config) { c.Listen = "[::1]" }, `listen: "[::1]" has no port`},
		{"policy", func(c *Config) { c.Balance.Policy = "fastest" }, `balance.policy: "fastest" is not one of roundrobin, leastconn, random2`},
		{"ttl zero", func(c *Config) { c.Affinity.TTL = 0 }, `affinity.ttl: "0s" must be positive`},
		{"ttl negative", func(c *Config) { c.Affinity.TTL = Duration(-time.Minute) }, `affinity.ttl: "-1m" must be positive`},
		{"capacity", func(c *Config) { c.Affinity.Capacity = 0 }, `affinity.capacity: 0 must be at least 1`},
		{"ipv4 prefix high", func(c *Config) { c.Affinity.IPv4Prefix = 40 }, `affinity.ipv4_prefix: 40 is out of range 1..32`},
		{"ipv4 prefix zero", func(c *Config) { c.Affinity.IPv4Prefix = 0 }, `affinity.ipv4_prefix: 0 is out of range 1..32`},
		{"ipv6 prefix", func(c *Config) { c.Affinity.IPv6Prefix = 129 }, `affinity.ipv6_prefix: 129 is out of range 1..128`},
		{"cookie name empty", func(c *Config) { c.Cookie.Name = "" }, `cookie.name: "" must not be empty`},
		{"cookie name not a token", func(c *Config) { c.Cookie.Name = "SERVER ID" }, `cookie.name: "SERVER ID" is not a valid cookie name`},
		{"cookie name separator", func(c *Config) { c.Cookie.Name = "a=b" }, `cookie.name: "a=b" is not a valid cookie name`},
		{"cookie expires", func(c *Config) { c.Cookie.Expires = Duration(-time.Second) }, `cookie.expires: "-1s" must not be negative (0 means a session cookie)`},
		{"cookie path", func(c *Config) { c.Cookie.Path = "app" }, `cookie.path: "app" must start with "/"`},
		{"cookie path injection", func(c *Config) { c.Cookie.Path = "/; Secure" }, `cookie.path: "/; Secure" must not contain ';' or control characters`},
		{"cookie domain injection", func(c *Config) { c.Cookie.Domain = "example.com; Secure" }, `cookie.domain: "example.com; Secure" is not a domain name`},
		{"same_site", func(c *Config) { c.Cookie.SameSite = "loose" }, `cookie.same_site: "loose" is not one of lax, strict, none, `},
		{"same_site none", func(c *Config) { c.Cookie.SameSite = "none" }, `cookie.same_site: "none" requires cookie.secure = true: browsers drop SameSite=None cookies that are not Secure`},
		{"empty secret", func(c *Config) { c.Cookie.Secret = Secrets{"k", ""} }, `cookie.secret: element 1 is empty`},
		{"health check", func(c *Config) { c.Health.Check = "icmp" }, `health.check: "icmp" is not one of tcp, http, none`},
		{"health path", func(c *Config) { c.Health.Check, c.Health.Path = "http", "healthz" }, `health.path: "healthz" must start with "/" when health.check is http`},
		{"health path space", func(c *Config) { c.Health.Check, c.Health.Path = "http", "/a b" }, `health.path: "/a b" must not contain spaces or control characters`},
		{"health interval", func(c *Config) { c.Health.Interval = 0 }, `health.interval: "0s" must be positive`},
		{"health timeout", func(c *Config) { c.Health.Timeout = 0 }, `health.timeout: "0s" must be positive`},
		{"rise", func(c *Config) { c.Health.Rise = 0 }, `health.rise: 0 must be at least 1`},
		{"fall", func(c *Config) { c.Health.Fall = -1 }, `health.fall: -1 must be at least 1`},
		{"connect", func(c *Config) { c.Timeouts.Connect = 0 }, `timeouts.connect: "0s" must be positive`},
		{"idle", func(c *Config) { c.Timeouts.Idle = Duration(-time.Second) }, `timeouts.idle: "-1s" must not be negative (0 means no idle timeout)`},
		{"header", func(c *Config) { c.Timeouts.Header = 0 }, `timeouts.header: "0s" must be positive`},
		{"server", func(c *Config) { c.Timeouts.Server = 0 }, `timeouts.server: "0s" must be positive`},
		{"header bytes low", func(c *Config) { c.Limits.HeaderBytes = 1023 }, `limits.header_bytes: 1023 is out of range 1024..1048576`},
		{"header bytes high", func(c *Config) { c.Limits.HeaderBytes = 1<<20 + 1 }, `limits.header_bytes: 1048577 is out of range 1024..1048576`},
		{"backend idle conns negative", func(c *Config) { c.Limits.BackendIdleConns = -1 }, `limits.backend_idle_conns: -1 is out of range 0..65536`},
		{"backend idle conns high", func(c *Config) { c.Limits.BackendIdleConns = 65537 }, `limits.backend_idle_conns: 65537 is out of range 0..65536`},
		{"loops negative", func(c *Config) { c.L4.Loops = -1 }, `l4.loops: -1 is out of range 0..1024 (0 is one loop per core)`},
		{"loops high", func(c *Config) { c.L4.Loops = 1025 }, `l4.loops: 1025 is out of range 0..1024 (0 is one loop per core)`},
		{"l7 engine", func(c *Config) { c.L7.Engine = "threads" }, `l7.engine: "threads" is not one of goroutine, loop`},
		{"no backends", func(c *Config) { c.Backends = nil }, `backend: no backends configured`},
		{"empty id", func(c *Config) { c.Backends[1].ID = "" }, `backend[1].id: "" must not be empty`},
		{"bad id", func(c *Config) { c.Backends[0].ID = "app 01" }, `backend[0].id: "app 01" may only hold letters, digits, '-', '_' and '.'`},
		{"non-ASCII id", func(c *Config) { c.Backends[0].ID = "äpp" }, `backend[0].id: "äpp" may only hold letters, digits, '-', '_' and '.'`},
		{"long id", func(c *Config) { c.Backends[0].ID = strings.Repeat("a", 65) }, `backend[0].id: "` + strings.Repeat("a", 65) + `" is longer than 64 characters`},
		{"duplicate id", func(c *Config) { c.Backends[1].ID = "app-01" }, `backend[1].id: "app-01" duplicates backend[0].id`},
		{"address no port", func(c *Config) { c.Backends[1].Address = "10.0.0.2" }, `backend[1].address: "10.0.0.2" has no port`},
		{"address no host", func(c *Config) { c.Backends[0].Address = ":80" }, `backend[0].address: ":80" has no host`},
		{"address bad host", func(c *Config) { c.Backends[0].Address = "a b:80" }, `backend[0].address: "a b:80" has host "a b", which is neither an IP address nor a host name`},
		{"address IPv4 in brackets", func(c *Config) { c.Backends[0].Address = "[10.0.0.1]:80" }, `backend[0].address: "[10.0.0.1]:80" has "10.0.0.1" in brackets, which is not an IPv6 address`},
		{"weight 0", func(c *Config) { c.Backends[0].Weight = 0 }, `backend[0].weight: 0 is out of range 1..256`},
		{"weight too big", func(c *Config) { c.Backends[0].Weight = 257 }, `backend[0].weight: 257 is out of range 1..256`},
		{"admin no port", func(c *Config) { c.Admin.Listen = "127.0.0.1" }, `admin.listen: "127.0.0.1" has no port (write host:port or "unix:/path")`},
		{"admin bad host", func(c *Config) { c.Admin.Listen = "unix/run/lbctl.sock:9090" }, `admin.listen: "unix/run/lbctl.sock:9090" has host "unix/run/lbctl.sock", which is neither an IP address nor a host name (write host:port or "unix:/path")`},
		{"admin unix without path", func(c *Config) { c.Admin.Listen = "unix:" }, `admin.listen: "unix:" has no socket path after "unix:"`},
		{"admin unix path too long", func(c *Config) { c.Admin.Listen = "unix:/" + strings.Repeat("s", 107) }, `admin.listen: "unix:/` + strings.Repeat("s", 107) + `" has a socket path longer than 107 bytes, the limit of a unix socket`},
		{"admin every address without token", func(c *Config) { c.Admin.Listen = ":9090" }, `admin.listen: ":9090": admin.token is required when admin.listen is not loopback or a unix socket`},
		{"admin public address without token", func(c *Config) { c.Admin.Listen = "10.0.0.1:9090" }, `admin.listen: "10.0.0.1:9090": admin.token is required when admin.listen is not loopback or a unix socket`},
		{"admin host name without token", func(c *Config) { c.Admin.Listen = "lb.internal:9090" }, `admin.listen: "lb.internal:9090": admin.token is required when admin.listen is not loopback or a unix socket`},
		{"admin IPv6 without token", func(c *Config) { c.Admin.Listen = "[::]:9090" }, `admin.listen: "[::]:9090": admin.token is required when admin.listen is not loopback or a unix socket`},
		{"admin token with a space", func(c *Config) { c.Admin.Token = "two words" }, `admin.token: must hold only visible ASCII characters, no spaces: it is sent in an Authorization header`},
		{"admin token with a newline", func(c *Config) { c.Admin.Listen, c.Admin.Token = ":9090", "abc\r\nX-Evil: 1" }, `admin.token: must hold only visible ASCII characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tt.want)
			}
			if got := err.Error(); strings.Contains(got, "\n") || !strings.HasPrefix(got, tt.want) {
				t.Errorf("Validate =\n%s\nwant the one line\n%s", got, tt.want)
			}
		})
	}
}

// validateChange applies mutate to a valid config and checks what Validate
// then says: nothing when want is "", else an error that starts with want.
// It returns the config and the error for a caller's further checks.
func validateChange(t *testing.T, mutate func(c *Config), want string) (Config, error) {
	t.Helper()
	c := valid()
	mutate(&c)
	err := c.Validate()
	switch {
	case want == "" && err != nil:
		t.Errorf("Validate = %v, want nil", err)
	case want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
		t.Errorf("Validate = %v, want %s...", err, want)
	}
	return c, err
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
	}{
		{"l7", func(c *Config) { c.Mode = "l7" }},
		{"listen all addresses", func(c *Config) { c.Listen = ":8080" }},
		{"listen IPv6", func(c *Config) { c.Listen = "[::]:8080" }},
		{"listen IPv6 zone", func(c *Config) { c.Listen = "[fe80::1%eth0]:8080" }},
		{"backend host name", func(c *Config) { c.Backends[0].Address = "app-01.internal:8080" }},
		{"backend IPv6", func(c *Config) { c.Backends[0].Address = "[2001:db8::1]:80" }},
		{"weights", func(c *Config) { c.Backends[0].Weight, c.Backends[1].Weight = 1, 256 }},
		{"id characters", func(c *Config) { c.Backends[0].ID = "App_01.eu-west" }},
		{"policies", func(c *Config) { c.Balance.Policy = "random2" }},
		{"session cookie", func(c *Config) { c.Cookie.Expires = 0 }},
		{"no idle timeout", func(c *Config) { c.Timeouts.Idle = 0 }},
		{"same_site omitted", func(c *Config) { c.Cookie.SameSite = "" }},
		{"same_site none secure", func(c *Config) { c.Cookie.SameSite, c.Cookie.Secure = "none", true }},
		{"domain", func(c *Config) { c.Cookie.Domain = ".example.com" }},
		{"secrets", func(c *Config) { c.Cookie.Secret = Secrets{"new", "old"} }},
		{"health none ignores path", func(c *Config) { c.Health.Check, c.Health.Path = "none", "" }},
		{"prefixes", func(c *Config) { c.Affinity.IPv4Prefix, c.Affinity.IPv6Prefix = 24, 64 }},
		{"header bytes bounds", func(c *Config) { c.Limits.HeaderBytes = 1024 }},
		{"loops bounds", func(c *Config) { c.L4.Loops = 1024 }},
		{"admin off", func(c *Config) { c.Admin.Listen = "" }},
		{"admin loopback", func(c *Config) { c.Admin.Listen = "127.0.0.1:9090" }},
		{"admin loopback /8", func(c *Config) { c.Admin.Listen = "127.1.2.3:9090" }},
		{"admin IPv6 loopback", func(c *Config) { c.Admin.Listen = "[::1]:9090" }},
		{"admin IPv4-mapped loopback", func(c *Config) { c.Admin.Listen = "[::ffff:127.0.0.1]:9090" }},
		{"admin localhost", func(c *Config) { c.Admin.Listen = "localhost:9090" }},
		{"admin unix socket", func(c *Config) { c.Admin.Listen = "unix:/run/lbctl.sock" }},
		{"admin relative unix socket", func(c *Config) { c.Admin.Listen = "unix:lbctl.sock" }},
		{"admin public with token", func(c *Config) { c.Admin.Listen, c.Admin.Token = "0.0.0.0:9090", "s3cr3t-Token_42" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate = %v, want nil", err)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := valid()
	c.Mode = "l3"
	c.Affinity.IPv4Prefix = 40
	c.Backends[1].ID = "app-01"
	c.Backends[1].Address = "10.0.0.2"
	err := c.Validate()
	want := []string{
		`mode: "l3" is not one of l4, l7`,
		`affinity.ipv4_prefix: 40 is out of range 1..32`,
		`backend[1].id: "app-01" duplicates backend[0].id`,
		`backend[1].address: "10.0.0.2" has no port`,
	}
	if got := errorLines(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate =\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

func TestValidateDoesNotPrintSecrets(t *testing.T) {
	c := valid()
	c.Cookie.Secret = Secrets{"hunter2", ""}
	c.Admin.Token = "hunter3 with a space"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hunter3") {
		t.Errorf("Validate = %v, want an error that does not quote the secrets", err)
	}
}

func TestParseAdminListen(t *testing.T) {
	tests := []struct {
		in, network, address string
	}{
		{"", "", ""},
		{"127.0.0.1:9090", "tcp", "127.0.0.1:9090"},
		{"[::1]:9090", "tcp", "[::1]:9090"},
		{":9090", "tcp", ":9090"},
		{"unix:/run/lbctl.sock", "unix", "/run/lbctl.sock"},
		{"unix:@abstract", "unix", "@abstract"},
	}
	for _, tt := range tests {
		network, address, err := ParseAdminListen(tt.in)
		if err != nil || network != tt.network || address != tt.address {
			t.Errorf("ParseAdminListen(%q) = %q, %q, %v; want %q, %q, nil", tt.in, network, address, err, tt.network, tt.address)
		}
	}
	for _, bad := range []string{"unix:", "9090", "127.0.0.1:0", "unix:/a\x00b", "http://127.0.0.1:9090"} {
		if network, address, err := ParseAdminListen(bad); err == nil {
			t.Errorf("ParseAdminListen(%q) = %q, %q, nil; want an error", bad, network, address)
		}
	}
}

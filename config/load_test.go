package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// oneBackend is a valid [[backend]] for files that test something else.
const oneBackend = `
[[backend]]
id = "app-01"
address = "127.0.0.1:9001"
`

// errorLines returns the lines of err's message, or nil.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// hasLine reports whether some line of lines contains want.
func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string // a substring of one line of the error
	}{
		{
			name: "unknown key with its line",
			file: "mode = \"l4\"\n\n[affinty]\nttl = \"1h\"\n" + oneBackend,
			want: `lbctl.toml:4: unknown key "affinty.ttl"`,
		},
		{
			name: "unknown dotted key",
			file: "affinity.tll = \"1h\"\n" + oneBackend,
			want: `lbctl.toml:1: unknown key "affinity.tll"`,
		},
		{
			name: "unknown top-level key",
			file: oneBackend + "\n[limits]\nheader_bytes = 2048\nbody_bytes = 10\n",
			want: `lbctl.toml:8: unknown key "limits.body_bytes"`,
		},
		{
			name: "unknown empty table",
			file: "[balanse]\n" + oneBackend,
			want: `lbctl.toml:1: unknown key "balanse"`,
		},
		{
			name: "unknown key in the second backend",
			file: oneBackend + oneBackend + "wieght = 2\n",
			want: `lbctl.toml:9: unknown key "backend[1].wieght"`,
		},
		{
			name: "key in the wrong case",
			file: "Mode = \"l7\"\n" + oneBackend,
			want: `lbctl.toml:1: unknown key "Mode"`,
		},
		{
			name: "bad duration names the key",
			file: "[affinity]\nttl = \"soon\"\n" + oneBackend,
			want: `lbctl.toml:2: affinity.ttl: "soon" is not a duration (use 300ms, 10s, 1h)`,
		},
		{
			name: "duration without unit",
			file: "[health]\ninterval = 5\n" + oneBackend,
			want: `lbctl.toml:2: health.interval: 5 is not a duration (use 300ms, 10s, 1h)`,
		},
		{
			name: "string where an integer belongs",
			file: "[affinity]\ncapacity = \"big\"\n" + oneBackend,
			want: `lbctl.toml:2: affinity.capacity: "big" must be an integer`,
		},
		{
			name: "string where a boolean belongs",
			file: "[cookie]\nhttp_only = \"yes\"\n" + oneBackend,
			want: `lbctl.toml:2: cookie.http_only: "yes" must be true or false`,
		},
		{
			name: "value where a table belongs",
			file: "balance = \"leastconn\"\n" + oneBackend,
			want: `lbctl.toml:1: balance: "leastconn" must be a table ([balance])`,
		},
		{
			name: "backend as a single table",
			file: "[backend]\nid = \"a\"\naddress = \"127.0.0.1:9001\"\n",
			want: `lbctl.toml:1: backend: a table must be an array of tables ([[backend]])`,
		},
		{
			name: "wrong type in the second backend",
			file: oneBackend + oneBackend + "weight = \"2\"\n",
			want: `lbctl.toml:9: backend[1].weight: "2" must be an integer`,
		},
		{
			name: "duplicate ids",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9002\"\n" + oneBackend,
			want: `lbctl.toml:11: backend[2].id: "app-01" duplicates backend[0].id`,
		},
		{
			name: "no backends",
			file: "mode = \"l7\"\n",
			want: `lbctl.toml: backend: no backends configured`,
		},
		{
			name: "empty file",
			file: "",
			want: `lbctl.toml: backend: no backends configured`,
		},
		{
			name: "ipv4 prefix out of range",
			file: "[affinity]\nipv4_prefix = 40\n" + oneBackend,
			want: `lbctl.toml:2: affinity.ipv4_prefix: 40 is out of range 1..32`,
		},
		{
			name: "ipv6 prefix out of range",
			file: "[affinity]\nipv6_prefix = 0\n" + oneBackend,
			want: `lbctl.toml:2: affinity.ipv6_prefix: 0 is out of range 1..128`,
		},
		{
			name: "backend idle conns negative",
			file: "[limits]\nheader_bytes = 2048\nbackend_idle_conns = -5\n" + oneBackend,
			want: `lbctl.toml:3: limits.backend_idle_conns: -5 is out of range 0..65536`,
		},
		{
			name: "backend idle conns not an integer",
			file: "[limits]\nbackend_idle_conns = \"many\"\n" + oneBackend,
			want: `lbctl.toml:2: limits.backend_idle_conns: "many" must be an integer`,
		},
		{
			name: "save interval not positive",
			file: "[affinity]\nstate_file = \"/tmp/pins\"\nsave_interval = \"0s\"\n" + oneBackend,
			want: `lbctl.toml:3: affinity.save_interval: "0s" must be positive`,
		},
		{
			name: "state file not a string",
			file: "[affinity]\nstate_file = 7\n" + oneBackend,
			want: `lbctl.toml:2: affinity.state_file: 7`,
		},
		{
			name: "unknown policy",
			file: "[balance]\npolicy = \"fastest\"\n" + oneBackend,
			want: `lbctl.toml:2: balance.policy: "fastest" is not one of roundrobin, leastconn, random2, maglev`,
		},
		{
			name: "maglev table size not a prime",
			file: "[balance]\npolicy = \"maglev\"\ntable_size = 65536\n" + oneBackend,
			want: `lbctl.toml:3: balance.table_size: 65536 is not a prime from 3 to 16777216 (the default is 65537)`,
		},
		{
			name: "address without port",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"10.0.0.2\"\n",
			want: `lbctl.toml:8: backend[1].address: "10.0.0.2" has no port`,
		},
		{
			name: "weight 0",
			file: oneBackend + "weight = 0\n",
			want: `lbctl.toml:5: backend[0].weight: 0 is out of range 1..256`,
		},
		{
			name: "negative weight",
			file: oneBackend + "weight = -3\n",
			want: `lbctl.toml:5: backend[0].weight: -3 is out of range 1..256`,
		},
		{
			name: "same_site none without secure",
			file: "[cookie]\nsame_site = \"none\"\n" + oneBackend,
			want: `lbctl.toml:2: cookie.same_site: "none" requires cookie.secure = true: browsers drop SameSite=None cookies that are not Secure`,
		},
		{
			name: "empty secret in an array",
			file: "[cookie]\nsecret = [\"k1\", \"\"]\n" + oneBackend,
			want: `lbctl.toml:2: cookie.secret: element 1 is empty`,
		},
		{
			name: "secret of the wrong type",
			file: "[cookie]\nsecret = 42\n" + oneBackend,
			want: `lbctl.toml:2: cookie.secret: 42 must be a string or an array of strings`,
		},
		{
			name: "secret array holding a number",
			file: "[cookie]\nsecret = [\"k1\", 2]\n" + oneBackend,
			want: `lbctl.toml:2: cookie.secret: element 1 is 2, not a string`,
		},
		{
			name: "mode",
			file: "mode = \"l5\"\n" + oneBackend,
			want: `lbctl.toml:1: mode: "l5" is not one of l4, l7`,
		},
		{
			name: "listen without port",
			file: "listen = \"0.0.0.0\"\n" + oneBackend,
			want: `lbctl.toml:1: listen: "0.0.0.0" has no port`,
		},
		{
			name: "health path for http",
			file: "[health]\ncheck = \"http\"\npath = \"healthz\"\n" + oneBackend,
			want: `lbctl.toml:3: health.path: "healthz" must start with "/" when health.check is http`,
		},
		{
			name: "inline table value error points at its key",
			file: "affinity = { ttl = \"0s\" }\n" + oneBackend,
			want: `lbctl.toml:1: affinity.ttl: "0s" must be positive`,
		},
		{
			name: "admin listen that does not parse",
			file: oneBackend + "\n[admin]\nlisten = \"localhost\"\n",
			want: `lbctl.toml:7: admin.listen: "localhost" has no port (write host:port or "unix:/path")`,
		},
		{
			name: "admin off loopback without token",
			file: oneBackend + "\n[admin]\nlisten = \"0.0.0.0:9090\"\n",
			want: `lbctl.toml:7: admin.listen: "0.0.0.0:9090": admin.token is required when admin.listen is not loopback or a unix socket`,
		},
		{
			name: "admin token that cannot be sent",
			file: "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"a b\"\n" + oneBackend,
			want: `lbctl.toml:3: admin.token: must hold only visible ASCII characters, no spaces`,
		},
		{
			name: "array of inline backends",
			file: "backend = [\n  { id = \"a\", address = \"127.0.0.1:1\" },\n  { id = \"a\", address = \"127.0.0.1:2\" },\n]\n",
			want: `lbctl.toml:1: backend[1].id: "a" duplicates backend[0].id`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.file), "lbctl.toml")
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config along with its error")
			}
			if got := errorLines(err); !hasLine(got, tt.want) {
				t.Errorf("error =\n%v\nwant a line with\n%s", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	file := `mode = "l5"
listen = "0.0.0.0"

[affinty]
ttl = "1h"

[affinity]
ttl = "soon"
ipv4_prefix = 40

[cookie]
same_site = "none"

[[backend]]
id = "app-01"
address = "10.0.0.1:80"
weight = 0

[[backend]]
id = "app-01"
address = "10.0.0.2"
`
	want := []string{
		`lbctl.toml:1: mode: "l5" is not one of l4, l7`,
		`lbctl.toml:2: listen: "0.0.0.0" has no port`,
		`lbctl.toml:5: unknown key "affinty.ttl"`,
		`lbctl.toml:8: affinity.ttl: "soon" is not a duration (use 300ms, 10s, 1h)`,
		`lbctl.toml:9: affinity.ipv4_prefix: 40 is out of range 1..32`,
		`lbctl.toml:12: cookie.same_site: "none" requires cookie.secure = true: browsers drop SameSite=None cookies that are not Secure`,
		`lbctl.toml:17: backend[0].weight: 0 is out of range 1..256`,
		`lbctl.toml:20: backend[1].id: "app-01" duplicates backend[0].id`,
		`lbctl.toml:21: backend[1].address: "10.0.0.2" has no port`,
	}
	_, err := Parse([]byte(file), "lbctl.toml")
	got := errorLines(err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("error lines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseDecodeErrorIsNotRepeated(t *testing.T) {
	// A value that does not decode keeps its default; Validate must not
	// then report the key, or the keys inside it, a second time.
	tests := []struct {
		name string
		file string
		want string
	}{
		{"backend", "backend = 5\n", `lbctl.toml:1: backend: 5 must be an array of tables ([[backend]])`},
		{"backend element", "backend = [1]\n", `lbctl.toml:1: backend[0]: 1 must be a table`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), "lbctl.toml")
			if got := errorLines(err); len(got) != 1 || got[0] != tt.want {
				t.Errorf("error =\n%v\nwant only\n%s", err, tt.want)
			}
		})
	}
}

// TestParseSyntaxErrorPlace checks the line and the wording of errors
// that the TOML library finds: the whole error, which is one line.
func TestParseSyntaxErrorPlace(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string
	}{
		{
			name: "unterminated table header",
			file: "mode = \"l4\"\n\n[health\ncheck = \"tcp\"\n" + oneBackend,
			want: `lbctl.toml:3: expected '.' or ']' to end table name, but got '\n' instead`,
		},
		{
			name: "unterminated table header at the end",
			file: oneBackend + "\n[health",
			want: `lbctl.toml:6: expected '.' or ']' to end table name, but got '\x00' instead`,
		},
		{
			name: "unterminated array of tables header",
			file: "mode = \"l4\"\n[[backend\nid = \"a\"\n",
			want: `lbctl.toml:2: expected '.' or ']' to end table name, but got '\n' instead`,
		},
		{
			name: "unterminated header after a byte order mark",
			file: "\ufeff\n[health\ncheck = \"tcp\"\n",
			want: `lbctl.toml:2: expected '.' or ']' to end table name, but got '\n' instead`,
		},
		{
			name: "value missing",
			file: "mode = \"l4\"\nlisten = \n",
			want: `lbctl.toml:2: expected value but found '\n' instead`,
		},
		{
			name: "key twice in the second backend",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\nid = \"app-03\"\naddress = \"127.0.0.1:9002\"\n",
			want: `lbctl.toml:8: backend[1].id: key defined twice, first on line 7`,
		},
		{
			name: "top-level key twice",
			file: "mode = \"l4\"\nlisten = \":80\"\nmode = \"l7\"\n" + oneBackend,
			want: `lbctl.toml:3: mode: key defined twice, first on line 1`,
		},
		{
			name: "dotted key twice",
			file: "health.rise = 2\n[health]\nrise = 3\n" + oneBackend,
			want: `lbctl.toml:3: health.rise: key defined twice, first on line 1`,
		},
		{
			name: "table twice",
			file: "[health]\ncheck = \"tcp\"\n\n[health]\nrise = 2\n" + oneBackend,
			want: `lbctl.toml:4: health: table defined twice, first on line 1`,
		},
		{
			// Keys inside an inline table are not tracked: the
			// library's words, at the right line.
			name: "key twice in an inline table",
			file: "mode = \"l4\"\naffinity = { ttl = \"1h\", ttl = \"2h\" }\n",
			want: `lbctl.toml:2: Key 'affinity.ttl' has already been defined.`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file), "lbctl.toml")
			if err == nil {
				t.Fatalf("Parse succeeded, want %s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", got, tt.want)
			}
			var pe toml.ParseError
			if !errors.As(err, &pe) {
				t.Errorf("errors.As(%v, *toml.ParseError) = false, want true", err)
			}
		})
	}
}

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // every warning, in order
	}{
		{
			name: "distinct addresses",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9002\"\n",
		},
		{
			name: "same address",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9001\"\n",
			want: []string{`lbctl.toml:8: backend[1].address: "127.0.0.1:9001" of "app-02" is also the address of backend[0] "app-01" (line 4); two backends at one address skew every balancing policy`},
		},
		{
			name: "same address written two ways",
			file: "[[backend]]\nid = \"a\"\naddress = \"[::1]:80\"\n[[backend]]\nid = \"b\"\naddress = \"[0:0::1]:0080\"\n" +
				"[[backend]]\nid = \"c\"\naddress = \"App.Internal:81\"\n[[backend]]\nid = \"d\"\naddress = \"app.internal:81\"\n",
			want: []string{
				`lbctl.toml:6: backend[1].address: "[0:0::1]:0080" of "b" is also the address of backend[0] "a" (line 3); two backends at one address skew every balancing policy`,
				`lbctl.toml:12: backend[3].address: "app.internal:81" of "d" is also the address of backend[2] "c" (line 9); two backends at one address skew every balancing policy`,
			},
		},
		{
			name: "three at one address",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9001\"\n" +
				"\n[[backend]]\nid = \"app-03\"\naddress = \"127.0.0.1:9001\"\n",
			want: []string{
				`lbctl.toml:8: backend[1].address: "127.0.0.1:9001" of "app-02" is also the address of backend[0] "app-01" (line 4); two backends at one address skew every balancing policy`,
				`lbctl.toml:12: backend[2].address: "127.0.0.1:9001" of "app-03" is also the address of backend[0] "app-01" (line 4); two backends at one address skew every balancing policy`,
			},
		},
		{
			name: "same host, other port",
			file: oneBackend + "\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9011\"\n",
		},
		{
			name: "inline backends",
			file: "backend = [\n  { id = \"a\", address = \"127.0.0.1:1\" },\n  { id = \"b\", address = \"127.0.0.1:1\" },\n]\n",
			want: []string{`lbctl.toml:1: backend[1].address: "127.0.0.1:1" of "b" is also the address of backend[0] "a" (line 1); two backends at one address skew every balancing policy`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := ParseWithWarnings([]byte(tt.file), "lbctl.toml")
			if err != nil || cfg == nil {
				t.Fatalf("ParseWithWarnings = %v, %v; want a config", cfg, err)
			}
			if strings.Join(warnings, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("warnings =\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := Parse([]byte("mode = \"l4\"\nlisten = \n"), "lbctl.toml")
	if err == nil {
		t.Fatal("Parse succeeded on bad TOML")
	}
	if got, want := err.Error(), "lbctl.toml:2: "; !strings.HasPrefix(got, want) {
		t.Errorf("error = %q, want prefix %q", got, want)
	}
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Errorf("errors.As(%v, *toml.ParseError) = false, want true", err)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(c *Config) (got, want any)
	}{
		{
			name:  "absent weight is 1",
			file:  oneBackend,
			check: func(c *Config) (any, any) { return c.Backends[0].Weight, 1 },
		},
		{
			name:  "explicit weight",
			file:  oneBackend + "weight = 7\n",
			check: func(c *Config) (any, any) { return c.Backends[0].Weight, 7 },
		},
		{
			name:  "explicit http_only = false is honoured",
			file:  "[cookie]\nhttp_only = false\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.HTTPOnly, false },
		},
		{
			name:  "secret as a string",
			file:  "[cookie]\nsecret = \"k1\"\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Secret, Secrets{"k1"} },
		},
		{
			name:  "secret as an array",
			file:  "[cookie]\nsecret = [\"k2\", \"k1\"]\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Secret, Secrets{"k2", "k1"} },
		},
		{
			name:  "empty secret is none",
			file:  "[cookie]\nsecret = \"\"\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Secret, Secrets(nil) },
		},
		{
			name:  "empty secret array is none",
			file:  "[cookie]\nsecret = []\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Secret, Secrets(nil) },
		},
		{
			name:  "session cookie",
			file:  "[cookie]\nexpires = \"0\"\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Expires, Duration(0) },
		},
		{
			name:  "session cookie as integer 0",
			file:  "[cookie]\nexpires = 0\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.Expires, Duration(0) },
		},
		{
			name:  "no idle timeout",
			file:  "[timeouts]\nidle = \"0s\"\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Timeouts.Idle, Duration(0) },
		},
		{
			name:  "same_site none with secure",
			file:  "[cookie]\nsame_site = \"none\"\nsecure = true\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Cookie.SameSite, "none" },
		},
		{
			name:  "listen on all addresses",
			file:  "listen = \":8080\"\n" + oneBackend,
			check: func(c *Config) (any, any) { return c.Listen, ":8080" },
		},
		{
			name:  "IPv6 backend",
			file:  "[[backend]]\nid = \"v6\"\naddress = \"[::1]:9001\"\n",
			check: func(c *Config) (any, any) { return c.Backends[0].Address, "[::1]:9001" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.file), "lbctl.toml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got, want := tt.check(c); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lbctl.toml")
	if err := os.WriteFile(path, []byte("[cookie]\nsame_site = \"loose\"\n"+oneBackend), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:2: cookie.same_site: "loose" is not one of lax, strict, none, `; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load error = %v, want it to contain %q", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}

	twice := filepath.Join(dir, "twice.toml")
	if err := os.WriteFile(twice, []byte(oneBackend+"\n[[backend]]\nid = \"app-02\"\naddress = \"127.0.0.1:9001\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := LoadWithWarnings(twice)
	if err != nil || len(cfg.Backends) != 2 {
		t.Fatalf("LoadWithWarnings = %+v, %v; want two backends", cfg, err)
	}
	if want := twice + `:8: backend[1].address: "127.0.0.1:9001" of "app-02" is also`; len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("LoadWithWarnings warnings = %q, want one starting %q", warnings, want)
	}
	if _, err := Load(twice); err != nil {
		t.Errorf("Load(%s) = %v: a warning is not an error", twice, err)
	}
}

func TestParseSettingsAllowsNoBackends(t *testing.T) {
	cfg, err := ParseSettings([]byte("[balance]\npolicy = \"leastconn\"\n"), "lab.toml")
	if err != nil || cfg.Balance.Policy != "leastconn" || len(cfg.Backends) != 0 {
		t.Fatalf("ParseSettings = %+v, %v; want leastconn and no backends", cfg, err)
	}
	// Everything else is still checked, backends included when present.
	_, err = ParseSettings([]byte("[balance]\npolicy = \"fastest\"\n[[backend]]\nid = \"a\"\naddress = \"x\"\n"), "lab.toml")
	for _, want := range []string{`balance.policy: "fastest"`, `backend[0].address: "x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSettings error %v lacks %q", err, want)
		}
	}
	if _, err := Parse([]byte("[balance]\npolicy = \"leastconn\"\n"), "lbctl.toml"); err == nil ||
		!strings.Contains(err.Error(), "no backends configured") {
		t.Errorf("Parse without backends = %v, want the no-backends error", err)
	}
}

package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../examples/lbctl.toml"

// minimal is the smallest valid file: a listener and one backend.
const minimal = `
listen = "127.0.0.1:8080"

[[backend]]
id      = "app-01"
address = "127.0.0.1:9001"
`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	got, err := Parse([]byte(minimal), "lbctl.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	want.Backends = []Backend{{ID: "app-01", Address: "127.0.0.1:9001", Weight: 1}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", *got, want)
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"mode", d.Mode, "l4"},
		{"listen", d.Listen, "127.0.0.1:8080"},
		{"balance.policy", d.Balance.Policy, "roundrobin"},
		{"balance.table_size", d.Balance.TableSize, 65537},
		{"affinity.ttl", d.Affinity.TTL.D(), time.Hour},
		{"affinity.capacity", d.Affinity.Capacity, 65536},
		{"affinity.ipv4_prefix", d.Affinity.IPv4Prefix, 32},
		{"affinity.ipv6_prefix", d.Affinity.IPv6Prefix, 128},
		{"affinity.state_file", d.Affinity.StateFile, ""},
		{"affinity.save_interval", d.Affinity.SaveInterval.D(), 30 * time.Second},
		{"cookie.name", d.Cookie.Name, "SERVERID"},
		{"cookie.expires", d.Cookie.Expires.D(), time.Hour},
		{"cookie.path", d.Cookie.Path, "/"},
		{"cookie.domain", d.Cookie.Domain, ""},
		{"cookie.http_only", d.Cookie.HTTPOnly, true},
		{"cookie.secure", d.Cookie.Secure, false},
		{"cookie.same_site", d.Cookie.SameSite, "lax"},
		{"cookie.secret", len(d.Cookie.Secret), 0},
		{"health.check", d.Health.Check, "tcp"},
		{"health.path", d.Health.Path, "/healthz"},
		{"health.interval", d.Health.Interval.D(), 2 * time.Second},
		{"health.timeout", d.Health.Timeout.D(), time.Second},
		{"health.rise", d.Health.Rise, 2},
		{"health.fall", d.Health.Fall, 3},
		{"timeouts.connect", d.Timeouts.Connect.D(), 3 * time.Second},
		{"timeouts.idle", d.Timeouts.Idle.D(), 60 * time.Second},
		{"timeouts.header", d.Timeouts.Header.D(), 10 * time.Second},
		{"timeouts.server", d.Timeouts.Server.D(), 60 * time.Second},
		{"limits.header_bytes", d.Limits.HeaderBytes, 65536},
		{"limits.backend_idle_conns", d.Limits.BackendIdleConns, 1024},
		{"l4.loops", d.L4.Loops, 0},
		{"l7.engine", d.L7.Engine, "loop"},
		{"backends", d.Backends == nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestExampleLoads(t *testing.T) {
	got, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	// Every key of the example is at its default.
	want := Default()
	want.Backends = got.Backends
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("example differs from the defaults:\n%+v\nwant\n%+v", *got, want)
	}
	if len(got.Backends) < 2 {
		t.Errorf("example has %d backends, want at least 2", len(got.Backends))
	}
}

func TestExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := keyLines(data)
	for _, key := range schemaKeys() {
		if strings.HasPrefix(key, backendKey+".") {
			key = backendKey + "[0]" + strings.TrimPrefix(key, backendKey)
		}
		if lines[key] == 0 {
			t.Errorf("example does not set %s", key)
		}
	}
}

// schemaKeys lists the keys the decoder knows, sorted: "mode",
// "affinity.ttl", "backend.id" and so on.
func schemaKeys() []string {
	var keys []string
	for table, fields := range schema {
		for k := range fields {
			if table != "" {
				k = table + "." + k
			}
			keys = append(keys, k)
		}
	}
	for _, k := range []string{"id", "address", "weight", "send_proxy"} {
		keys = append(keys, backendKey+"."+k)
	}
	slices.Sort(keys)
	return keys
}

// tagKeys lists the keys that the toml tags of t declare, as schemaKeys
// does.
func tagKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		key := f.Tag.Get("toml")
		if prefix != "" {
			key = prefix + "." + key
		}
		ft := f.Type
		// Arrays of tables are keys of their own, apart from the
		// top level's [[backend]].
		if prefix == "" && ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, tagKeys(key, ft)...)
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

func TestSchemaMatchesTags(t *testing.T) {
	got, want := schemaKeys(), tagKeys("", reflect.TypeFor[Config]())
	if !slices.Equal(got, want) {
		t.Errorf("decoder schema keys =\n%v\ntoml tags =\n%v", got, want)
	}
}

// TestTagsDecodeWithLibrary checks that Config also decodes with the TOML
// library directly, for callers who embed it in a file of their own.
func TestTagsDecodeWithLibrary(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got := Config{}
	md, err := toml.Decode(string(data)+"\n", &got)
	if err != nil {
		t.Fatalf("toml.Decode: %v", err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("undecoded keys: %v", u)
	}
	want, err := Parse(data, examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, *want) {
		t.Errorf("toml.Decode =\n%+v\nParse =\n%+v", got, *want)
	}
}

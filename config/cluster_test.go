package config

import (
	"bytes"
	"strings"
	"testing"
)

const key16 = "c2l4dGVlbiBieXRlIGtleQ==" // "sixteen byte key"

func TestValidateCluster(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Cluster)
		want   string // "" for valid
	}{
		{"off", func(c *Cluster) {}, ""},
		{"loopback without key", func(c *Cluster) { c.Bind, c.Join = "127.0.0.2:7946", []string{"127.0.0.3:7946", "localhost:7946"} }, ""},
		{"keyed", func(c *Cluster) { c.Bind, c.Join, c.SecretKey = "10.0.0.1:7946", []string{"10.0.0.2:7946"}, key16 }, ""},
		{"every address keyed", func(c *Cluster) { c.Bind, c.SecretKey = ":7946", key16 }, ""},
		{"join without bind", func(c *Cluster) { c.Join = []string{"10.0.0.2:7946"} }, `cluster.join: ["10.0.0.2:7946"] needs cluster.bind`},
		{"bind host name", func(c *Cluster) { c.Bind = "localhost:7946" }, `cluster.bind: "localhost:7946" must have an IP address or no host, not a host name`},
		{"bind no port", func(c *Cluster) { c.Bind = "127.0.0.1" }, `cluster.bind: "127.0.0.1" has no port`},
		{"join bad", func(c *Cluster) { c.Bind, c.Join = "127.0.0.1:7946", []string{"127.0.0.2"} }, `cluster.join: element 0: "127.0.0.2" has no port`},
		{"every address needs a key", func(c *Cluster) { c.Bind = ":7946" }, `cluster.secret_key: is required when cluster.bind or a cluster.join address is not loopback`},
		{"remote join needs a key", func(c *Cluster) { c.Bind, c.Join = "127.0.0.1:7946", []string{"10.0.0.2:7946"} }, `cluster.secret_key: is required`},
		{"key not base64", func(c *Cluster) { c.Bind, c.SecretKey = "127.0.0.1:7946", "not base64!" }, `cluster.secret_key: is not base64`},
		{"key length", func(c *Cluster) { c.Bind, c.SecretKey = "127.0.0.1:7946", "c2hvcnQ=" }, `cluster.secret_key: decodes to 5 bytes; an AES key is 16, 24 or 32`},
		{"name", func(c *Cluster) { c.Name = "a b" }, `cluster.name: "a b" must be at most 128 visible ASCII characters, no spaces`},
		{"push pull", func(c *Cluster) { c.PushPullInterval = 0 }, `cluster.push_pull_interval: "0s" must be positive`},
		{"gossip", func(c *Cluster) { c.GossipInterval = 0 }, `cluster.gossip_interval: "0s" must be positive`},
		{"queue", func(c *Cluster) { c.QueueSize = 0 }, `cluster.queue_size: 0 must be at least 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := validateChange(t, func(c *Config) { tt.mutate(&c.Cluster) }, tt.want)
			if err != nil && c.Cluster.SecretKey != "" && strings.Contains(err.Error(), c.Cluster.SecretKey) {
				t.Errorf("the message quotes the secret key: %v", err)
			}
		})
	}
}

func TestClusterFromFile(t *testing.T) {
	doc := `
[cluster]
bind = "127.0.0.1:7946"
join = ["127.0.0.2:7946", "127.0.0.3:7946"]
secret_key = "` + key16 + `"
queue_size = 0

[[backend]]
id = "a"
address = "127.0.0.1:9001"
`
	_, err := Parse([]byte(doc), "lbctl.toml")
	if err == nil || err.Error() != "lbctl.toml:6: cluster.queue_size: 0 must be at least 1" {
		t.Fatalf("Parse = %v, want the queue refused on line 6", err)
	}
	cfg, err := Parse([]byte(strings.Replace(doc, "queue_size = 0", "", 1)), "lbctl.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Cluster.ClusterKey()); got != "sixteen byte key" {
		t.Errorf("ClusterKey = %q", got)
	}
	if len(cfg.Cluster.Join) != 2 {
		t.Errorf("join = %q", cfg.Cluster.Join)
	}
	var buf bytes.Buffer
	if err := cfg.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `join               = ["127.0.0.2:7946", "127.0.0.3:7946"]`) {
		t.Errorf("Encode wrote\n%s", buf.String())
	}
	if _, err := Parse([]byte(strings.Replace(doc, `join = [`, `join = [1, `, 1)), "x"); err == nil || !strings.Contains(err.Error(), "cluster.join: element 0 is 1, not a string") {
		t.Errorf("a number in join: %v", err)
	}
}

func TestClusterWarnsOfPushPullPastTTL(t *testing.T) {
	doc := `
[affinity]
ttl = "1m"
[cluster]
bind = "127.0.0.1:7946"
push_pull_interval = "2m"
[[backend]]
id = "a"
address = "127.0.0.1:9001"
`
	_, warnings, err := ParseWithWarnings([]byte(doc), "lbctl.toml")
	if err != nil || len(warnings) != 1 || !strings.HasPrefix(warnings[0], `lbctl.toml:6: cluster.push_pull_interval: "2m" is not shorter than affinity.ttl ("1m")`) {
		t.Errorf("warnings = %q, %v", warnings, err)
	}
	_, warnings, _ = ParseWithWarnings([]byte(strings.Replace(doc, `"2m"`, `"30s"`, 1)), "lbctl.toml")
	if len(warnings) != 0 {
		t.Errorf("warnings = %q for an interval below the TTL", warnings)
	}
}

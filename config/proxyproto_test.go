package config

import "testing"

func TestValidateProxyProtocol(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // "" for valid
	}{
		{"listen_proxy", func(c *Config) { c.ListenProxy = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"} }, ""},
		{"listen_proxy bad", func(c *Config) { c.ListenProxy = []string{"10.0.0.0/8", "10.0.0.0/33"} }, `listen_proxy: element 1: "10.0.0.0/33" is not an address or a CIDR prefix`},
		{"listen_proxy host name", func(c *Config) { c.ListenProxy = []string{"lb.example"} }, `listen_proxy: element 0: "lb.example" is not an address`},
		{"send_proxy", func(c *Config) { c.Backends[0].SendProxy, c.Backends[1].SendProxy = "v1", "v2" }, ""},
		{"send_proxy bad", func(c *Config) { c.Backends[1].SendProxy = "v3" }, `backend[1].send_proxy: "v3" is not one of v1, v2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { validateChange(t, tt.mutate, tt.want) })
	}
	doc := "listen_proxy = [\"10.0.0.0/8\"]\n[[backend]]\nid = \"a\"\naddress = \"127.0.0.1:9001\"\nsend_proxy = \"v4\"\n"
	if _, err := Parse([]byte(doc), "lbctl.toml"); err == nil || err.Error() != `lbctl.toml:5: backend[0].send_proxy: "v4" is not one of v1, v2` {
		t.Errorf("Parse = %v, want send_proxy refused on line 5", err)
	}
}

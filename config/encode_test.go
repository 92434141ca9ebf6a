package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEncodeRoundTrip(t *testing.T) {
	custom := valid()
	custom.Mode = "l7"
	custom.Listen = "[::]:8443"
	custom.Balance.Policy = "leastconn"
	custom.Affinity = Affinity{TTL: Duration(90 * time.Second), Capacity: 10, IPv4Prefix: 24, IPv6Prefix: 64, StateFile: "/var/lib/lbctl/pins \"a\"", SaveInterval: Duration(5 * time.Second)}
	custom.Cookie = Cookie{
		Name: "lb", Expires: 0, Path: "/app", Domain: ".example.com",
		HTTPOnly: false, Secure: true, SameSite: "none",
		Secret: Secrets{`new "key"\with escapes`, "old\tkey\x01"},
	}
	custom.Health = Health{Check: "http", Path: "/ready", Interval: Duration(1500 * time.Millisecond), Timeout: Duration(250 * time.Millisecond), Rise: 1, Fall: 5}
	custom.Timeouts = Timeouts{Connect: Duration(time.Second), Idle: 0, Header: Duration(5 * time.Second), Server: Duration(2 * time.Minute)}
	custom.Limits.HeaderBytes = 8192
	custom.L4.Loops = 4
	custom.L7.Engine = "goroutine"
	custom.Admin = Admin{Listen: "0.0.0.0:9090", Token: "t0k3n~!"}
	custom.Backends = append(custom.Backends, Backend{ID: "app-03", Address: "app-03.internal:80", Weight: 200})

	unixAdmin := valid()
	unixAdmin.Admin.Listen = "unix:/run/lbctl \"x\".sock"

	oneSecret := valid()
	oneSecret.Cookie.Secret = Secrets{"only"}

	tests := []struct {
		name string
		cfg  Config
	}{
		{"defaults", valid()},
		{"every key changed", custom},
		{"one secret", oneSecret},
		{"admin on a unix socket", unixAdmin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.cfg.Encode(&buf); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Parse(buf.Bytes(), "encoded.toml")
			if err != nil {
				t.Fatalf("Parse(Encode(cfg)): %v\n%s", err, buf.String())
			}
			if !reflect.DeepEqual(*got, tt.cfg) {
				t.Errorf("Parse(Encode(cfg)) =\n%+v\nwant\n%+v\nencoded:\n%s", *got, tt.cfg, buf.String())
			}
		})
	}
}

func TestEncodeWritesEveryKey(t *testing.T) {
	c := valid()
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	lines := keyLines(buf.Bytes())
	var want []string
	for _, key := range schemaKeys() {
		if !strings.HasPrefix(key, backendKey+".") {
			want = append(want, key)
			continue
		}
		for i := range c.Backends {
			want = append(want, fmt.Sprintf("%s[%d]%s", backendKey, i, strings.TrimPrefix(key, backendKey)))
		}
	}
	for _, key := range want {
		if lines[key] == 0 {
			t.Errorf("Encode does not write %s:\n%s", key, buf.String())
		}
	}
	if strings.Contains(buf.String(), "1h0m0s") {
		t.Errorf("Encode writes durations long-hand:\n%s", buf.String())
	}
}

type failingWriter struct{}

var errWrite = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestEncodeReportsWriteError(t *testing.T) {
	c := valid()
	if err := c.Encode(failingWriter{}); !errors.Is(err, errWrite) {
		t.Errorf("Encode to a failing writer = %v, want %v", err, errWrite)
	}
}

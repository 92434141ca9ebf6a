package bench

import (
	"fmt"
	"os"
	"time"

	"github.com/lbctl/lbctl/config"
)

// LabConfig returns the settings the lab runs lbctl with when no config
// file is given: lbctl's defaults, with health checks fast enough to see a
// failure within a run (an HTTP check of /healthz every 200ms; two failures
// take a backend down, two passes bring it back).
func LabConfig() *config.Config {
	c := config.Default()
	c.Health = config.Health{
		Check:    "http",
		Path:     "/healthz",
		Interval: config.Duration(200 * time.Millisecond),
		Timeout:  config.Duration(time.Second),
		Rise:     2,
		Fall:     2,
	}
	return &c
}

// LoadConfig reads a config file for the lab. Only its [balance],
// [affinity], [cookie], [health] and [tls] tables are used; its backends and
// listen address are not, so a file may leave out [[backend]] entirely
// (which `lbctl check` would reject).
func LoadConfig(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return config.ParseSettings(data, path)
}

// runConfig is the config both front doors are built from: the lab's
// backends and timeouts, and base's [balance], [affinity], [cookie],
// [health] and [tls] (whose certificates make the L7 door https).
func runConfig(base *config.Config, backends []*labBackend) (*config.Config, error) {
	c := config.Default()
	c.Listen = "127.0.0.1:8080" // not used: the lab listens on a port of its own
	c.Balance = base.Balance
	c.Affinity = base.Affinity
	// The lab keeps the state files itself (--state-file): one per
	// instance and mode, in a folder of its own.
	c.Affinity.StateFile = ""
	c.Cookie = base.Cookie
	c.Health = base.Health
	// [tls] terminates TLS on the L7 door; runMode leaves it out of L4.
	c.TLS = base.TLS
	c.Timeouts = config.Timeouts{
		Connect: config.Duration(time.Second),
		Idle:    config.Duration(10 * time.Second),
		Header:  config.Duration(5 * time.Second),
		Server:  config.Duration(5 * time.Second),
	}
	for _, b := range backends {
		c.Backends = append(c.Backends, config.Backend{ID: b.id, Address: b.addr, Weight: 1})
	}
	check := c
	if c.TLS.On() {
		check.Mode = string(L7)
	}
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("lab config: %w", err)
	}
	return &c, nil
}

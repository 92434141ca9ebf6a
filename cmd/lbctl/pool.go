package main

import (
	"fmt"
	"log/slog"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/l4"
	"github.com/lbctl/lbctl/l7"
)

// defaultConfigPath is where serve and check look without --config.
const defaultConfigPath = "lbctl.toml"

// loadConfig loads path and applies a --mode override, validating again so
// that a bad override is reported like a bad file.
func loadConfig(path, mode string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if mode != "" {
		cfg.Mode = mode
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--mode: %w", err)
		}
	}
	return cfg, nil
}

// pool is what both front doors share: the backends, the policy that picks
// among them, and the prober that keeps their health (nil when the config
// turns health checks off).
type pool struct {
	registry *backend.Registry
	selector backend.Selector
	prober   *backend.Prober
}

// newPool builds the shared backend pool from cfg.
func newPool(cfg *config.Config, log *slog.Logger) (*pool, error) {
	bs := make([]*backend.Backend, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		bs = append(bs, backend.New(b.ID, b.Address, b.Weight))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		return nil, err
	}
	sel, err := backend.NewSelector(cfg.Balance.Policy)
	if err != nil {
		return nil, err
	}
	checker, err := backend.NewChecker(cfg.Health.Check, cfg.Health.Path)
	if err != nil {
		return nil, err
	}
	p := &pool{registry: reg, selector: sel}
	if checker != nil {
		p.prober = &backend.Prober{
			Registry: reg,
			Checker:  checker,
			Interval: cfg.Health.Interval.D(),
			Timeout:  cfg.Health.Timeout.D(),
			Rise:     cfg.Health.Rise,
			Fall:     cfg.Health.Fall,
			Logger:   log,
		}
	}
	return p, nil
}

// newL4 builds the L4 proxy and its affinity table from cfg over p. The
// caller closes the table after the proxy has stopped.
func newL4(cfg *config.Config, p *pool, log *slog.Logger) (*l4.Proxy, *affinity.Table) {
	table := affinity.New(affinity.Options{
		TTL:        cfg.Affinity.TTL.D(),
		Capacity:   cfg.Affinity.Capacity,
		IPv4Prefix: cfg.Affinity.IPv4Prefix,
		IPv6Prefix: cfg.Affinity.IPv6Prefix,
	})
	return &l4.Proxy{
		Registry:       p.registry,
		Selector:       p.selector,
		Table:          table,
		Health:         p.prober,
		ConnectTimeout: cfg.Timeouts.Connect.D(),
		IdleTimeout:    cfg.Timeouts.Idle.D(),
		Logger:         log,
	}, table
}

// newL7 builds the L7 proxy from cfg over p.
func newL7(cfg *config.Config, p *pool, log *slog.Logger) *l7.Proxy {
	c := cfg.Cookie
	return &l7.Proxy{
		Registry: p.registry,
		Selector: p.selector,
		Health:   p.prober,
		Cookie: l7.CookieOptions{
			Name:     c.Name,
			MaxAge:   c.Expires.D(),
			Path:     c.Path,
			Domain:   c.Domain,
			HTTPOnly: c.HTTPOnly,
			Secure:   c.Secure,
			SameSite: c.SameSite,
			Secrets:  c.Secret,
		},
		ConnectTimeout: cfg.Timeouts.Connect.D(),
		IdleTimeout:    cfg.Timeouts.Idle.D(),
		HeaderTimeout:  cfg.Timeouts.Header.D(),
		ServerTimeout:  cfg.Timeouts.Server.D(),
		MaxHeaderBytes: cfg.Limits.HeaderBytes,
		Logger:         log,
	}
}

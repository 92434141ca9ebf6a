// Package instance owns one running lbctl: it is the one place that knows
// how a config becomes running parts. It builds them (the backend Pool both
// front doors share, the FrontDoor of the configured mode, with its
// affinity table in L4), and its Instance owns them while they serve,
// applying reloads, operator commands and the state file to them. It sits
// above l4, l7 and admin and below cmd and bench: serve and the lab both
// build their servers through it, so the lab measures exactly what serve
// runs.
package instance

import (
	"context"
	"log/slog"
	"net"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/l4"
	"github.com/lbctl/lbctl/l7"
	"github.com/lbctl/lbctl/natview"
)

// Pool is what both front doors share: the live backend pool, the policy
// that picks among them, and the prober that keeps their health. The
// prober exists even when the config turns health checks off (it then
// probes nothing), so that a reload can turn them on.
//
// Each part is package backend's; this bundle of them is the instance's,
// and lives here because it is made from a config (see NewPool, and
// applyChecks and Reload, which change it) while backend reads no config.
type Pool struct {
	Backends *backend.Pool
	Selector backend.Selector
	Prober   *backend.Prober
}

// NewPool builds the shared backend pool from cfg.
func NewPool(cfg *config.Config, log *slog.Logger) (*Pool, error) {
	bs := make([]*backend.Backend, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		bs = append(bs, backend.NewFromSpec(Spec(b)))
	}
	reg, err := backend.NewRegistry(bs)
	if err != nil {
		return nil, err
	}
	sel, err := backend.NewSelector(cfg.Balance.Policy, backend.TableSize(cfg.Balance.TableSize))
	if err != nil {
		return nil, err
	}
	checks, err := probeSettings(cfg.Health)
	if err != nil {
		return nil, err
	}
	sel.Prepare(reg) // before the first client, not for it
	p := &Pool{Backends: backend.NewPool(reg), Selector: sel}
	// The fields show the settings the prober started with; applyChecks
	// makes them current and sets how joining backends start.
	p.Prober = &backend.Prober{
		Pool: p.Backends, Checker: checks.Checker, Interval: checks.Interval,
		Timeout: checks.Timeout, Rise: checks.Rise, Fall: checks.Fall, Logger: log,
	}
	applyChecks(p, checks)
	return p, nil
}

// FrontDoor is either proxy as the code that serves and stops it sees.
type FrontDoor interface {
	// Serve serves clients on ln until Shutdown or Close (returning
	// ErrClosed) or until ln fails.
	Serve(ln net.Listener) error
	// Shutdown stops accepting and lets open connections finish until
	// ctx ends.
	Shutdown(ctx context.Context) error
	// Close stops accepting and closes every connection at once.
	Close() error
}

// ErrClosed is what a FrontDoor's Serve returns after Shutdown or Close:
// l4.ErrProxyClosed and l7.ErrProxyClosed are this one error.
var ErrClosed = l4.ErrProxyClosed

// NewFrontDoor builds the front door of cfg.Mode over p: the L4 proxy and
// its affinity table (which the caller closes once the proxy has
// stopped), or the L7 proxy and a nil table.
func NewFrontDoor(cfg *config.Config, p *Pool, log *slog.Logger) (FrontDoor, *affinity.Table) {
	if cfg.Mode == "l7" {
		return L7(cfg, p, log), nil
	}
	return L4(cfg, p, log)
}

// L4 builds the L4 proxy and its affinity table from cfg over p. The
// caller closes the table after the proxy has stopped.
func L4(cfg *config.Config, p *Pool, log *slog.Logger) (*l4.Proxy, *affinity.Table) {
	table := affinity.New(affinity.Options{
		TTL:        cfg.Affinity.TTL.D(),
		Capacity:   cfg.Affinity.Capacity,
		IPv4Prefix: cfg.Affinity.IPv4Prefix,
		IPv6Prefix: cfg.Affinity.IPv6Prefix,
	})
	st := L4Settings(cfg, p.Selector)
	return &l4.Proxy{
		Pool:           p.Backends,
		Selector:       st.Selector,
		Table:          table,
		Health:         p.Prober,
		ConnectTimeout: st.ConnectTimeout,
		IdleTimeout:    st.IdleTimeout,
		ProxyProtocol:  proxyPolicy(cfg),
		Loops:          cfg.L4.Loops,
		Logger:         log,
		NAT:            new(natview.Tracker), // keys come masked by the table
	}, table
}

// L4Settings returns the L4 proxy settings of cfg, with sel as its policy:
// what New starts the proxy with, and what a reload applies to it.
func L4Settings(cfg *config.Config, sel backend.Selector) l4.Settings {
	return l4.Settings{
		Selector:       sel,
		ConnectTimeout: cfg.Timeouts.Connect.D(),
		IdleTimeout:    cfg.Timeouts.Idle.D(),
	}
}

// L7 builds the L7 proxy from cfg over p.
func L7(cfg *config.Config, p *Pool, log *slog.Logger) *l7.Proxy {
	st := L7Settings(cfg, p.Selector)
	return &l7.Proxy{
		Pool:              p.Backends,
		Selector:          st.Selector,
		Health:            p.Prober,
		Cookie:            st.Cookie,
		ConnectTimeout:    st.ConnectTimeout,
		IdleTimeout:       st.IdleTimeout,
		HeaderTimeout:     st.HeaderTimeout,
		ServerTimeout:     st.ServerTimeout,
		MaxHeaderBytes:    st.MaxHeaderBytes,
		MaxIdlePerBackend: st.MaxIdlePerBackend,
		ProxyProtocol:     proxyPolicy(cfg),
		Logger:            log,
		Engine:            cfg.L7.Engine,
		NAT:               &natview.Tracker{V4Prefix: cfg.Affinity.IPv4Prefix, V6Prefix: cfg.Affinity.IPv6Prefix},
	}
}

// L7Settings returns the L7 proxy settings of cfg, with sel as its policy:
// what New starts the proxy with, and what a reload applies to it.
func L7Settings(cfg *config.Config, sel backend.Selector) l7.Settings {
	c := cfg.Cookie
	return l7.Settings{
		Selector: sel,
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
		ConnectTimeout:    cfg.Timeouts.Connect.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		HeaderTimeout:     cfg.Timeouts.Header.D(),
		ServerTimeout:     cfg.Timeouts.Server.D(),
		MaxHeaderBytes:    cfg.Limits.HeaderBytes,
		MaxIdlePerBackend: idleConns(cfg.Limits.BackendIdleConns),
	}
}

// idleConns turns limits.backend_idle_conns into the proxy's cap, whose
// zero means its default: the key's 0 keeps no connection.
func idleConns(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

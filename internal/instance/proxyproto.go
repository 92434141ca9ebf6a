package instance

import (
	"slices"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/proxyproto"
)

// Spec returns what the pool needs of a configured backend: its address,
// weight and the PROXY protocol version it wants (send_proxy).
func Spec(b config.Backend) backend.Spec {
	v, _ := proxyproto.ParseVersion(b.SendProxy) // validated with the config
	return backend.Spec{ID: b.ID, Address: b.Address, Weight: b.Weight, SendProxy: v}
}

// proxyPolicy returns listen_proxy and the time its headers have
// (timeouts.header) as the front doors take them.
func proxyPolicy(cfg *config.Config) proxyproto.Policy {
	peers, _ := proxyproto.ParsePeers(cfg.ListenProxy) // validated with the config
	return proxyproto.Policy{From: peers, Timeout: cfg.Timeouts.Header.D()}
}

// proxyRestartOnly refuses a reload that changes listen_proxy: the front
// doors read it once, at start.
func proxyRestartOnly(cur, next *config.Config) []string {
	if slices.Equal(cur.ListenProxy, next.ListenProxy) {
		return nil
	}
	return []string{"listen_proxy: changed; it takes effect only at a restart, so the reload is refused (restore it, or restart lbctl)"}
}

package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ClusterKey decodes cluster.secret_key: nil when it is empty, else the
// 16, 24 or 32 bytes of an AES key, which Validate has checked.
func (c *Cluster) ClusterKey() []byte {
	if c.SecretKey == "" {
		return nil
	}
	key, err := base64.StdEncoding.DecodeString(c.SecretKey)
	if err != nil {
		return nil
	}
	return key
}

// maxClusterName bounds cluster.name, which memberlist sends in every
// message.
const maxClusterName = 128

// cluster checks the [cluster] table. The secret key is never quoted.
func (v *validator) cluster(c *Cluster) {
	v.positive("cluster.push_pull_interval", c.PushPullInterval)
	v.positive("cluster.gossip_interval", c.GossipInterval)
	v.atLeast("cluster.queue_size", c.QueueSize, 1)
	if len(c.Name) > maxClusterName || strings.IndexFunc(c.Name, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		v.fail("cluster.name", "%q must be at most %d visible ASCII characters, no spaces", c.Name, maxClusterName)
	}
	if c.Bind == "" {
		if len(c.Join) > 0 {
			v.fail("cluster.join", "%q needs cluster.bind: a member must listen for the others", c.Join)
		}
		return
	}
	loopback := true
	if msg := checkHostPort(c.Bind, true); msg != "" {
		v.fail("cluster.bind", "%q %s", c.Bind, msg)
	} else if host, _, _ := net.SplitHostPort(c.Bind); host != "" {
		if ip, err := netip.ParseAddr(host); err != nil {
			v.fail("cluster.bind", "%q must have an IP address or no host, not a host name", c.Bind)
		} else {
			loopback = ip.Unmap().IsLoopback()
		}
	} else {
		loopback = false
	}
	for i, addr := range c.Join {
		if msg := checkHostPort(addr, false); msg != "" {
			v.fail("cluster.join", "element %d: %q %s", i, addr, msg)
			continue
		}
		loopback = loopback && isLoopback(addr)
	}
	if c.SecretKey == "" {
		if !loopback {
			v.fail("cluster.secret_key", "is required when cluster.bind or a cluster.join address is not loopback: anyone who can reach the port could forge pins and drain backends")
		}
		return
	}
	key, err := base64.StdEncoding.DecodeString(c.SecretKey)
	switch {
	case err != nil:
		v.fail("cluster.secret_key", "is not base64 (make one with: head -c 32 /dev/urandom | base64)")
	case len(key) != 16 && len(key) != 24 && len(key) != 32:
		v.fail("cluster.secret_key", "%s", fmt.Sprintf("decodes to %d bytes; an AES key is 16, 24 or 32", len(key)))
	}
}

// clusterWarnings warns of a push/pull interval not shorter than the
// affinity TTL: the exchange is what carries a pin's last use to the
// members its client does not use, which would let the pin expire there
// in between.
func (d *decoder) clusterWarnings(c *Config, file string) []string {
	if c.Cluster.Bind == "" || c.Mode == "l7" || c.Cluster.PushPullInterval < c.Affinity.TTL {
		return nil
	}
	const path = "cluster.push_pull_interval"
	msg := fmt.Sprintf("%s: %q is not shorter than affinity.ttl (%q): a client that uses one member only may lose its pin on the others between two exchanges", path, c.Cluster.PushPullInterval, c.Affinity.TTL)
	return []string{(&fileError{file: file, line: d.line(path), msg: msg}).Error()}
}

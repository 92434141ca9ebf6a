package config

import (
	"net/netip"
	"strings"
)

// listenProxy checks listen_proxy: each element a CIDR prefix or an
// address.
func (v *validator) listenProxy(list []string) {
	for i, s := range list {
		var err error
		if strings.Contains(s, "/") {
			_, err = netip.ParsePrefix(s)
		} else {
			_, err = netip.ParseAddr(s)
		}
		if err != nil || strings.Contains(s, "%") {
			v.fail("listen_proxy", "element %d: %q is not an address or a CIDR prefix (10.0.0.0/8, 192.0.2.7, 2001:db8::/32)", i, s)
		}
	}
}

// sendProxy checks a backend's send_proxy.
func (v *validator) sendProxy(path, s string) {
	if s != "" {
		v.oneOf(path, s, "v1", "v2")
	}
}

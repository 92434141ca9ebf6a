package main

import "github.com/lbctl/lbctl/config"

// adminSettings returns the admin listener and token that cfg sets, the
// defaults of --admin and --token. This config has no [admin] section,
// so there are none and the operator commands need --admin.
func adminSettings(cfg *config.Config) (listen, token string) {
	_ = cfg
	return "", ""
}

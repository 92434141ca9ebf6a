// Command lbctl is a load balancer with two front doors over one backend
// pool: an L4 TCP proxy with source-IP affinity and an L7 HTTP proxy with
// cookie persistence. See the README for its commands and config.
//
// The package owns the command line alone: the cobra commands parse flags
// and call a package (internal/instance to serve, bench for the lab,
// admin's client for the operator commands, config for check), and the
// demo's backends come from internal/testbackend.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "lbctl:", err)
		os.Exit(1)
	}
}

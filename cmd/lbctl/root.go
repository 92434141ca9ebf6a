package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// newRootCmd builds the lbctl command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "lbctl",
		Short: "A load balancer that keeps sessions on one backend, by source IP (L4) or cookie (L7)",
		Long: `lbctl is a load balancer with two front doors over one backend pool:
  l4  a TCP proxy that pins each client source IP to one backend
  l7  an HTTP/1.1 proxy that pins each browser with a persistence cookie`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newCheckCmd(), newBenchCmd(), newVersionCmd(),
		newReloadCmd(), newUpgradeCmd(), newBackendCmd(), newPinCmd(), newClusterCmd(), newTopCmd())
	return root
}

// newLogger returns a text logger on stderr at the named level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

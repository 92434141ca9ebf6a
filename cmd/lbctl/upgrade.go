package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
)

// newUpgradeCmd builds `lbctl upgrade`: ask the running instance to hand
// over to the binary now on disk.
func newUpgradeCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Make the running lbctl hand over to the binary now on disk",
		Long: `upgrade asks the running lbctl, through its admin API, to start the binary
now on disk with its listeners, pins and admin states handed over, as
SIGUSR2 does. It returns once the new process is ready and prints its
process id; the old process then stops accepting and drains for up to its
--grace. No client is refused. When the new process fails to start or to
be ready in time, the old one serves on, upgrade prints why and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res admin.UpgradeResult
			if done, err := o.call(cmd, http.MethodPost, "/api/upgrade", nil, &res); done || err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), res.Summary)
			return err
		},
	}
	o.register(cmd.Flags())
	return cmd
}

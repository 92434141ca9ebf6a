package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
)

// newReloadCmd builds `lbctl reload`: ask the running instance to read its
// config file again.
func newReloadCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running lbctl read its config file again",
		Long: `reload asks the running lbctl, through its admin API, to load, check and
apply its config file, as SIGHUP does. It prints what changed, or every
problem of a file that fails validation and exits 1; a bad file changes
nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res admin.ReloadResult
			if done, err := o.call(cmd, http.MethodPost, "/api/reload", nil, &res); done || err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), res.Summary)
			return err
		},
	}
	o.register(cmd.Flags())
	return cmd
}

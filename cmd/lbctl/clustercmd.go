package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
)

// newClusterCmd builds `lbctl cluster`: the members of the running
// instance's cluster.
func newClusterCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the instances that share pins and admin states with this one",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	o.register(cmd.PersistentFlags())
	cmd.AddCommand(&cobra.Command{
		Use:   "members",
		Short: "List the cluster's members as the running instance sees them, and its replication counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st admin.ClusterStatus
			if done, err := o.call(cmd, http.MethodGet, "/api/cluster", nil, &st); done || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE")
			for _, m := range st.Members {
				self := ""
				if m.Name == st.Name {
					self = " (this one)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s%s\n", m.Name, m.Address, m.State, self)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pins sent %d, dropped %d, applied from others %d\n", st.PinsSent, st.PinsDropped, st.PinsApplied)
			return err
		},
	})
	return cmd
}

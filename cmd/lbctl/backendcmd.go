package main

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
)

// newBackendCmd builds `lbctl backend`: list the running instance's
// backends and set their admin states.
func newBackendCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "backend",
		Short: "List backends and set their admin state: ready, drain or maint",
		Long: `backend talks to the running lbctl through its admin API.
  ready  the backend takes new clients and keeps its pinned ones
  drain  it gets no new clients; its pinned clients stay (with --for, until then)
  maint  it gets nobody; its pinned clients move at their next connection or request;
         with --kill its open connections are closed at once`,
		// Runnable, so that a mistyped subcommand is an error (exit 1)
		// rather than the help (exit 0).
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	o.register(cmd.PersistentFlags())
	cmd.AddCommand(newBackendListCmd(&o),
		newBackendStateCmd(&o, backend.Ready, "Let a backend take new clients again"),
		newBackendStateCmd(&o, backend.Drain, "Give a backend no new clients; its pinned clients stay"),
		newBackendStateCmd(&o, backend.Maint, "Give a backend nobody; its pinned clients move"))
	return cmd
}

func newBackendListCmd(o *adminOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the backends: health, admin state, connections, pinned clients, requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list admin.BackendList
			if done, err := o.call(cmd, http.MethodGet, "/api/backends", nil, &list); done || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDRESS\tWEIGHT\tHEALTH\tSTATE\tACTIVE\tPINNED\tSERVED")
			for _, b := range list.Backends {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\n", b.ID, b.Address, b.Weight, b.Health, stateText(b), b.Active, b.Pinned, b.Served)
			}
			return tw.Flush()
		},
	}
}

// newBackendStateCmd builds `lbctl backend ready|drain|maint ID`.
func newBackendStateCmd(o *adminOptions, as backend.AdminState, short string) *cobra.Command {
	state := as.String()
	var forDur string
	var kill bool
	cmd := &cobra.Command{
		Use:   state + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.StateRequest{State: state, For: forDur, Kill: kill}
			var st admin.BackendStatus
			if done, err := o.call(cmd, http.MethodPost, "/api/backends/"+url.PathEscape(args[0])+"/state", req, &st); done || err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s: %s; %d pinned clients, %d active connections\n", st.ID, stateText(st), st.Pinned, st.Active)
			return err
		},
	}
	switch as {
	case backend.Drain:
		cmd.Flags().StringVar(&forDur, "for", "", `let the pinned clients stay this long (a Go duration: "10m", "1h30m"), then move them; default: until ready or maint`)
	case backend.Maint:
		cmd.Flags().BoolVar(&kill, "kill", false, "close the backend's open connections now instead of letting them finish")
	}
	return cmd
}

// stateText is a backend's admin state for a table: "drain (until in
// 9m59s)" for a bounded drain.
func stateText(b admin.BackendStatus) string {
	if b.State == backend.Drain.String() && !b.DrainUntil.IsZero() {
		return b.State + " (ends " + untilText(b.DrainUntil) + ")"
	}
	return b.State
}

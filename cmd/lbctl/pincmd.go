package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
)

// newPinCmd builds `lbctl pin`: look at and forget the running instance's
// affinity pins.
func newPinCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "pin",
		Short: "Show and forget the client pins of the affinity table",
		Long: `pin talks to the running lbctl through its admin API. A client key is
written as the client's address ("203.0.113.7"); lbctl masks it with the
configured affinity prefix.`,
		// Runnable, so that a mistyped subcommand is an error (exit 1)
		// rather than the help (exit 0).
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	o.register(cmd.PersistentFlags())
	cmd.AddCommand(newPinListCmd(&o), newPinGetCmd(&o), newPinForgetCmd(&o))
	return cmd
}

func newPinListCmd(o *adminOptions) *cobra.Command {
	var backendID string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List pins, all or those to one backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if backendID != "" {
				q.Set("backend", backendID)
			}
			if cmd.Flags().Changed("limit") {
				q.Set("limit", strconv.Itoa(limit))
			}
			path := "/api/pins"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var list admin.PinList
			if done, err := o.call(cmd, http.MethodGet, path, nil, &list); done || err != nil {
				return err
			}
			if err := printPins(cmd, list.Pins...); err != nil {
				return err
			}
			if list.More {
				fmt.Fprintf(cmd.ErrOrStderr(), "more than %d pins; --limit shows more (up to 10000)\n", len(list.Pins))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&backendID, "backend", "", "only the pins to this backend id")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many pins (up to 10000)")
	return cmd
}

func newPinGetCmd(o *adminOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Show which backend a client key is pinned to, and until when",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p admin.PinStatus
			if done, err := o.call(cmd, http.MethodGet, "/api/pins?key="+url.QueryEscape(args[0]), nil, &p); done || err != nil {
				return err
			}
			return printPins(cmd, p)
		},
	}
}

func newPinForgetCmd(o *adminOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "forget KEY",
		Short: "Forget a client key's pin: its next connection or request picks a backend anew",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p admin.PinStatus
			if done, err := o.call(cmd, http.MethodDelete, "/api/pins/"+url.PathEscape(args[0]), nil, &p); done || err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "forgot %s (was pinned to %s)\n", p.Key, p.Backend)
			return err
		},
	}
}

// printPins prints pins as a table.
func printPins(cmd *cobra.Command, pins ...admin.PinStatus) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tBACKEND\tEXPIRES")
	for _, p := range pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Key, p.Backend, untilText(p.Expires))
	}
	return tw.Flush()
}

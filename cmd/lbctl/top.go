package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lbctl/lbctl/admin"
)

// newTopCmd builds `lbctl top`: the stats page's view in the terminal,
// redrawn every --interval until interrupted.
func newTopCmd() *cobra.Command {
	var o adminOptions
	var interval time.Duration
	var once bool
	var limit int
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch backends and the NAT view of the running lbctl, refreshed every second",
		Long: `top shows what the stats page shows, in the terminal: every backend with its
health, admin state, connections, rate, errors and pinned clients, then the NAT
view: the client keys that carry the most users and what keying by source IP
does (L4) or would do (L7) to the spread of the load. Rates need two samples,
so they show from the second screen on. --once prints one screen and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return fmt.Errorf("--interval: %v is under 100ms", interval)
			}
			if limit < 1 || limit > 256 {
				return fmt.Errorf("--limit: %d is not from 1 to 256", limit)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			tty := false
			if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				tty = true
			}
			t := &topView{client: c, limit: limit}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				var buf bytes.Buffer
				if tty {
					buf.WriteString("\x1b[H\x1b[2J") // home, clear
				}
				if err := t.draw(ctx, &buf); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if _, err := out.Write(buf.Bytes()); err != nil {
					return err
				}
				if once {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().DurationVarP(&interval, "interval", "n", time.Second, "time between two screens")
	cmd.Flags().BoolVar(&once, "once", false, "print one screen and exit")
	cmd.Flags().IntVar(&limit, "limit", 10, "client keys shown in the NAT view")
	return cmd
}

// topStats is what top reads of GET /api/stats; a version without it
// gives the backends alone (from /api/backends).
type topStats struct {
	Time     time.Time `json:"time"`
	Mode     string    `json:"mode"`
	Listen   string    `json:"listen"`
	Backends []struct {
		admin.BackendStatus
		ConnectionsTotal uint64            `json:"connections_total"`
		RequestsTotal    uint64            `json:"requests_total"`
		Responses        map[string]uint64 `json:"responses"`
		ConnectFailures  uint64            `json:"connect_failures_total"`
	} `json:"backends"`
	Front struct {
		ActiveConnections int64  `json:"active_connections"`
		ConnectionsTotal  uint64 `json:"connections_total"`
		RequestsTotal     uint64 `json:"requests_total"`
	} `json:"front"`
}

// topView draws screens, keeping the previous sample for the rates.
type topView struct {
	client *admin.Client
	limit  int
	prev   *topStats
	full   bool // the instance answers /api/stats
	probed bool
}

// sample reads the stats, from /api/stats when the instance has it.
func (t *topView) sample(ctx context.Context) (*topStats, error) {
	var st topStats
	if !t.probed || t.full {
		raw, err := t.client.Do(ctx, http.MethodGet, "/api/stats", nil)
		var apiErr *admin.APIError
		switch {
		case err == nil:
			t.probed, t.full = true, true
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, fmt.Errorf("the answer to GET /api/stats: %w", err)
			}
			return &st, nil
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
			t.probed, t.full = true, false
		default:
			return nil, err
		}
	}
	raw, err := t.client.Do(ctx, http.MethodGet, "/api/backends", nil)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("the answer to GET /api/backends: %w", err)
	}
	st.Time = time.Now()
	return &st, nil
}

// draw writes one screen.
func (t *topView) draw(ctx context.Context, w io.Writer) error {
	st, err := t.sample(ctx)
	if err != nil {
		return err
	}
	var nat admin.NATView
	raw, err := t.client.Do(ctx, http.MethodGet, fmt.Sprintf("/api/nat?limit=%d", t.limit), nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &nat); err != nil {
		return fmt.Errorf("the answer to GET /api/nat: %w", err)
	}
	mode := st.Mode
	if mode == "" {
		mode = nat.Mode
	}
	l7 := mode == "l7"
	header := "lbctl " + mode
	if st.Listen != "" {
		header += " on " + st.Listen
	}
	fmt.Fprintf(w, "%s  %s", header, st.Time.Local().Format("15:04:05"))
	if t.full {
		fmt.Fprintf(w, "   %d open connections", st.Front.ActiveConnections)
	}
	fmt.Fprint(w, "\n\n")

	dt := 0.0
	if t.prev != nil {
		dt = st.Time.Sub(t.prev.Time).Seconds()
	}
	old := map[string]int{}
	if t.prev != nil {
		for i, b := range t.prev.Backends {
			old[b.ID] = i
		}
	}
	rateHead := "CONN/S"
	if l7 {
		rateHead = "REQ/S"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "BACKEND\tHEALTH\tSTATE\tACTIVE\t%s\tERRORS\tPINNED\tSERVED\t\n", rateHead)
	for _, b := range st.Backends {
		rate, errs := "-", "-"
		if i, ok := old[b.ID]; ok && t.full && dt > 0 {
			cur, was := b.ConnectionsTotal, t.prev.Backends[i].ConnectionsTotal
			if l7 {
				cur, was = b.RequestsTotal, t.prev.Backends[i].RequestsTotal
			}
			rate = fmt.Sprintf("%.1f", float64(cur-min(was, cur))/dt)
		}
		if t.full {
			errs = fmt.Sprint(b.Responses["5xx"] + b.ConnectFailures)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t\n", b.ID, b.Health, b.State, b.Active, rate, errs, b.Pinned, b.Served)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t.full {
		t.prev = st
	}

	unit := "sessions"
	if !l7 {
		unit = "source ports"
	}
	fmt.Fprintf(w, "\nNAT view, last %.0fs: %d %s", nat.WindowSeconds, nat.TotalSessions, unit)
	if l7 {
		fmt.Fprintf(w, "; keyed by source IP the busiest backend would carry %.2fx the mean\n", nat.IPAffinitySkew)
	} else {
		fmt.Fprintf(w, "; with source-IP affinity the busiest backend carries %.2fx the mean\n", nat.IPAffinitySkew)
	}
	if len(nat.Sources) == 0 {
		fmt.Fprintln(w, "  no client counted yet")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSESSIONS\tSHARE\t\tOPEN\tPER SEC\t")
	for _, s := range nat.Sources {
		flag := ""
		if s.NAT {
			flag = "NAT"
		}
		open := "-"
		if !l7 {
			open = fmt.Sprint(s.Connections)
		}
		fmt.Fprintf(tw, "%s\t%d ±%d\t%5.1f%%\t%s\t%s\t%.2f\t%s\n", s.Key, s.Sessions, s.SessionsError, 100*s.Share, shareBar(s.Share, 20), open, s.ConnRate, flag)
	}
	return tw.Flush()
}

// shareBar draws share (0 to 1) as a bar of width cells.
func shareBar(share float64, width int) string {
	n := int(share*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return strings.Repeat("█", n) + strings.Repeat("·", width-n)
}

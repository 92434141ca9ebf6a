package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
	"github.com/lbctl/lbctl/l4"
)

// serveOptions are serve's flags.
type serveOptions struct {
	config   string
	mode     string
	listen   string
	demo     bool
	tls      bool // the demo over TLS, with a self-signed certificate
	grace    time.Duration
	logLevel string
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the load balancer",
		Long: `serve loads the config, starts health checks and accepts clients until
SIGINT or SIGTERM; then it stops accepting, lets open connections finish
for up to --grace, and exits 0.

With --demo it needs no config: three demo HTTP backends start on loopback
and lbctl balances over them on 127.0.0.1:8080 (or --listen).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", defaultConfigPath, "config file")
	f.StringVar(&o.mode, "mode", "", "front door, overriding the config: l4 or l7")
	f.StringVar(&o.listen, "listen", "", "host:port to accept on, overriding the config")
	f.BoolVar(&o.demo, "demo", false, "serve three built-in demo backends; no config file needed")
	f.BoolVar(&o.tls, "tls", false, "with --demo and --mode l7: terminate TLS on 127.0.0.1:8443 (or --listen) with a throwaway self-signed certificate")
	f.DurationVar(&o.grace, "grace", 10*time.Second, "how long open connections may finish after SIGTERM")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.MarkFlagsMutuallyExclusive("demo", "config")
	return cmd
}

// runServe is serve's body: everything between the flags and the exit code.
func runServe(ctx context.Context, o serveOptions) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	var cfg *config.Config
	if o.demo {
		demo, err := startDemo(3, o.listen)
		if err != nil {
			return err
		}
		defer demo.Close()
		cfg = &demo.cfg
		if o.mode != "" {
			cfg.Mode = o.mode
		}
		if o.tls {
			cleanup, err := demoTLS(cfg, o.listen)
			if err != nil {
				return err
			}
			defer cleanup()
		}
	} else if o.tls {
		return errors.New("--tls goes with --demo; a config file turns TLS on in its [tls] table")
	} else {
		var warnings []string
		if cfg, warnings, err = loadConfig(o.config, o.mode); err != nil {
			return err
		}
		for _, w := range warnings {
			log.Warn("config", "warning", w)
		}
		if o.listen != "" {
			cfg.Listen = o.listen
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	in, err := instance.New(cfg, log)
	if err != nil {
		return err
	}
	defer in.Close()
	in.SetVersion(version)
	if !o.demo {
		in.Load = func() (*config.Config, error) {
			next, warnings, err := loadConfig(o.config, o.mode)
			if err != nil {
				return nil, err
			}
			for _, w := range warnings {
				log.Warn("config", "warning", w)
			}
			if o.listen != "" {
				next.Listen = o.listen
			}
			return next, nil
		}
	}
	ln, err := instance.Listen(ctx, cfg.Listen)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = admin.Listen(cfg.Admin.Listen); err != nil {
			ln.Close()
			return err
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	bgCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	if pr := in.Prober(); pr != nil {
		pr.Round(bgCtx) // know who is up before the first client
		wg.Go(func() { pr.Run(bgCtx) })
	}
	if table := in.Table(); table != nil {
		wg.Go(func() { logAffinity(bgCtx, log, table, time.Minute) })
	}
	var api *admin.Server
	if adminLn != nil {
		api = &admin.Server{Instance: in, Token: cfg.Admin.Token, Logger: log}
		in.API = api
		defer func() {
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			api.Shutdown(actx)
		}()
		wg.Go(func() {
			if err := api.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin API stopped", "error", err)
			}
		})
		log.Info("admin API listening", "listen", cfg.Admin.Listen)
	}
	// SIGHUP means "reload" from here on, before the first client is
	// taken: by default it would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() { reloadOnSignal(bgCtx, hup, in, log) })
	// The instance owns ln from here on: a reload that moves listen
	// replaces it.
	served := make(chan error, 1)
	go func() { served <- in.Serve(ln) }()

	log.Info("lbctl serving", "mode", cfg.Mode, "listen", ln.Addr().String(),
		"backends", in.Pool().Registry().Len(), "policy", cfg.Balance.Policy, "health", cfg.Health.Check)
	if o.demo {
		try := "curl -s http://%s/"
		if cfg.Mode == "l7" {
			try = "curl -si -c /tmp/lbctl-jar -b /tmp/lbctl-jar http://%s/"
		}
		if cfg.TLS.On() {
			try = "curl -ski -c /tmp/lbctl-jar -b /tmp/lbctl-jar https://%s/"
		}
		fmt.Fprintf(os.Stderr, "\ndemo: three backends behind %s (%s); try\n  "+try+"\n\n", ln.Addr(), cfg.Mode, ln.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serving clients: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", o.grace)
	sctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := in.Shutdown(sctx); err != nil {
		log.Warn("grace period over; open connections closed", "error", err)
	}
	in.SaveState() // logged when it fails; the exit is clean regardless
	if err := <-served; err != nil && !errors.Is(err, l4.ErrProxyClosed) {
		return err
	}
	if table := in.Table(); table != nil {
		st := table.Stats()
		log.Info("stopped", slog.Group("affinity", "size", st.Size, "hits", st.Hits, "misses", st.Misses,
			"repins", st.Repins, "evictions", st.Evictions, "expirations", st.Expirations))
	} else {
		log.Info("stopped")
	}
	return nil
}

// reloadOnSignal reloads the config each time hup delivers (SIGHUP), until
// ctx ends, and logs what the reload changed or why it was refused.
// Signals that arrive during a reload are folded into one more reload.
func reloadOnSignal(ctx context.Context, hup <-chan os.Signal, in *instance.Instance, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		res, err := in.Reload(ctx)
		if rerr, ok := errors.AsType[*admin.ReloadError](err); ok {
			log.Warn("config reload refused; the running config is unchanged", "source", "signal", "problems", strings.Join(rerr.Messages, "; "))
			continue
		}
		if err != nil {
			log.Error("config reload failed", "source", "signal", "error", err)
			continue
		}
		log.Info("config reloaded", "source", "signal", "summary", res.Summary)
	}
}

// logAffinity logs the affinity table's counters every interval in which
// clients were re-pinned or pins were evicted or expired, until ctx ends:
// the one line an operator needs to see failover and table pressure.
func logAffinity(ctx context.Context, log *slog.Logger, table *affinity.Table, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last affinity.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := table.Stats()
		if st.Repins == last.Repins && st.Evictions == last.Evictions && st.Expirations == last.Expirations {
			continue
		}
		log.Info("affinity", "size", st.Size, "repins", st.Repins-last.Repins,
			"evictions", st.Evictions-last.Evictions, "expirations", st.Expirations-last.Expirations,
			"hits", st.Hits-last.Hits, "misses", st.Misses-last.Misses)
		last = st
	}
}

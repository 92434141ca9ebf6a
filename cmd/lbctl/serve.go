package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/instance"
)

// serveOptions are serve's flags.
type serveOptions struct {
	config         string
	mode           string
	listen         string
	demo           bool
	tls            bool // the demo over TLS, with a self-signed certificate
	grace          time.Duration
	upgradeTimeout time.Duration
	pidFile        string
	logLevel       string
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the load balancer",
		Long: `serve loads the config, starts health checks and accepts clients until
SIGINT or SIGTERM; then it stops accepting, lets open connections finish
for up to --grace, and exits 0. SIGHUP reloads the config file; SIGUSR2
upgrades to the binary now on disk, handing the listeners, the pins and
the admin states over without refusing a client (see lbctl upgrade).

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
	f.DurationVar(&o.grace, "grace", 10*time.Second, "how long open connections may finish after SIGTERM or an upgrade")
	f.DurationVar(&o.upgradeTimeout, "upgrade-timeout", instance.DefaultUpgradeTimeout, "how long an upgrade waits for the new process to be ready")
	f.StringVar(&o.pidFile, "pid-file", "", "file to write the process id to (rewritten by the new process of an upgrade)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.MarkFlagsMutuallyExclusive("demo", "config")
	return cmd
}

// runServe is serve's body: everything between the flags and the exit code.
// The instance's wiring is instance.Run's; what is left here is the
// command line's: the logger, the config file with its overrides, and the
// demo.
func runServe(ctx context.Context, o serveOptions) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	ro := instance.Options{Log: log, Grace: o.grace, UpgradeTimeout: o.upgradeTimeout, PIDFile: o.pidFile, Version: version}
	if o.demo {
		demo, err := startDemo(3, o.listen)
		if err != nil {
			return err
		}
		defer demo.Close()
		ro.Config = &demo.cfg
		if o.mode != "" {
			ro.Config.Mode = o.mode
		}
		if o.tls {
			cleanup, err := demoTLS(ro.Config, o.listen)
			if err != nil {
				return err
			}
			defer cleanup()
		}
		ro.Serving = func(front net.Addr, cfg *config.Config) {
			try := "curl -s http://%s/"
			if cfg.Mode == "l7" {
				try = "curl -si -c /tmp/lbctl-jar -b /tmp/lbctl-jar http://%s/"
			}
			if cfg.TLS.On() {
				try = "curl -ski -c /tmp/lbctl-jar -b /tmp/lbctl-jar https://%s/"
			}
			fmt.Fprintf(os.Stderr, "\ndemo: three backends behind %s (%s); try\n  "+try+"\n\n", front, cfg.Mode, front)
		}
	} else if o.tls {
		return errors.New("--tls goes with --demo; a config file turns TLS on in its [tls] table")
	} else {
		// The same loading serves the start and every reload: the file,
		// then the flags that override it.
		ro.Load = func() (*config.Config, error) {
			cfg, warnings, err := loadConfig(o.config, o.mode)
			if err != nil {
				return nil, err
			}
			for _, w := range warnings {
				log.Warn("config", "warning", w)
			}
			if o.listen != "" {
				cfg.Listen = o.listen
			}
			return cfg, nil
		}
	}
	return instance.Run(ctx, ro)
}

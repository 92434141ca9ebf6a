package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCheckCmd builds `lbctl check`: load, default and validate a config,
// then print the effective config and, on stderr, the file's warnings.
func newCheckCmd() *cobra.Command {
	var path, mode string
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a config file and print the effective config",
		Long: `check loads the config file the way serve does (strict decode, defaults,
validation), prints every problem it finds and exits 1, or prints the
effective config with every default filled in and exits 0. Warnings about
a valid file (two backends at one address, say) follow the effective
config on stderr, each starting with "warning: ".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, warnings, err := loadConfig(path, mode)
			if err != nil {
				return err
			}
			if !showSecrets {
				for i := range cfg.Cookie.Secret {
					cfg.Cookie.Secret[i] = redacted
				}
				if cfg.Admin.Token != "" {
					cfg.Admin.Token = redacted
				}
				if cfg.Cluster.SecretKey != "" {
					cfg.Cluster.SecretKey = redacted
				}
			}
			if err := cfg.Encode(cmd.OutOrStdout()); err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfigPath, "config file")
	cmd.Flags().StringVar(&mode, "mode", "", "override the config's mode: l4 or l7")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print cookie secrets, the admin token and the cluster secret key instead of "+redacted)
	return cmd
}

// redacted stands for a secret in check's output.
const redacted = "<redacted>"

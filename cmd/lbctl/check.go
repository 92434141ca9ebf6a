package main

import "github.com/spf13/cobra"

// newCheckCmd builds `lbctl check`: load, default and validate a config,
// then print the effective config.
func newCheckCmd() *cobra.Command {
	var path, mode string
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a config file and print the effective config",
		Long: `check loads the config file the way serve does (strict decode, defaults,
validation), prints every problem it finds and exits 1, or prints the
effective config with every default filled in.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, mode)
			if err != nil {
				return err
			}
			if !showSecrets {
				for i := range cfg.Cookie.Secret {
					cfg.Cookie.Secret[i] = "<redacted>"
				}
			}
			return cfg.Encode(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultConfigPath, "config file")
	cmd.Flags().StringVar(&mode, "mode", "", "override the config's mode: l4 or l7")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print cookie secrets instead of <redacted>")
	return cmd
}

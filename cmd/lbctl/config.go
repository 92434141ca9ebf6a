package main

import (
	"fmt"

	"github.com/lbctl/lbctl/config"
)

// defaultConfigPath is where serve and check look without --config.
const defaultConfigPath = "lbctl.toml"

// loadConfig loads path and applies a --mode override, validating again so
// that a bad override is reported like a bad file. It also returns the
// warnings about the file, each a line "file:line: key.path: what", for
// check to print and serve to log.
func loadConfig(path, mode string) (*config.Config, []string, error) {
	cfg, warnings, err := config.LoadWithWarnings(path)
	if err != nil {
		return nil, nil, err
	}
	if mode != "" {
		cfg.Mode = mode
		if err := cfg.Validate(); err != nil {
			return nil, nil, fmt.Errorf("--mode: %w", err)
		}
	}
	return cfg, warnings, nil
}

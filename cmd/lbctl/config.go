package main

import (
	"fmt"

	"github.com/lbctl/lbctl/config"
)

// defaultConfigPath is where serve and check look without --config.
const defaultConfigPath = "lbctl.toml"

// loadConfig loads path and applies a --mode override, validating again so
// that a bad override is reported like a bad file.
func loadConfig(path, mode string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if mode != "" {
		cfg.Mode = mode
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--mode: %w", err)
		}
	}
	return cfg, nil
}

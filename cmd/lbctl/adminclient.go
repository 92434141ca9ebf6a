package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/config"
)

// tokenEnv names the environment variable that holds the admin token, so
// that it need not be typed on a command line (where ps shows it).
const tokenEnv = "LBCTL_ADMIN_TOKEN"

// adminOptions are the flags of the commands that talk to a running
// instance through its admin API.
type adminOptions struct {
	config string
	addr   string
	token  string
	json   bool
}

// register adds the flags to fs: the persistent flags of a command group,
// so that every subcommand has them.
func (o *adminOptions) register(fs *pflag.FlagSet) {
	fs.StringVarP(&o.config, "config", "c", defaultConfigPath, "config file whose admin.listen and admin.token are the defaults")
	fs.StringVar(&o.addr, "admin", "", "admin API address, host:port or unix:/path (default: admin.listen of --config)")
	fs.StringVar(&o.token, "token", "", "admin API token (default: $"+tokenEnv+", then admin.token of --config)")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON answer instead of a table")
}

// client returns a client of the admin API that the flags name: --admin,
// or else admin.listen of the config file; --token, or else the
// environment, or else admin.token of the config file.
func (o *adminOptions) client() (*admin.Client, error) {
	addr, token := o.addr, o.token
	if token == "" {
		token = os.Getenv(tokenEnv)
	}
	if addr != "" && token != "" {
		return admin.NewClient(addr, token)
	}
	cfg, err := config.Load(o.config)
	switch {
	case err != nil && addr == "":
		return nil, fmt.Errorf("no admin address: --admin is not given, and the config that would name it: %w", err)
	case err == nil:
		listen, cfgToken := cfg.Admin.Listen, cfg.Admin.Token
		if addr == "" {
			if listen == "" {
				return nil, fmt.Errorf("no admin address: [admin] listen is not set in %s; give --admin ADDR", o.config)
			}
			addr = listen
		}
		if token == "" {
			token = cfgToken
		}
	}
	return admin.NewClient(addr, token)
}

// call sends one request to the admin API. With --json it prints the
// answer's JSON, error answers included, and returns done; otherwise it
// decodes the answer into out for the caller to print.
func (o *adminOptions) call(cmd *cobra.Command, method, path string, body, out any) (done bool, err error) {
	c, err := o.client()
	if err != nil {
		return false, err
	}
	raw, err := c.Do(cmd.Context(), method, path, body)
	if o.json && raw != nil {
		var b bytes.Buffer
		if ierr := json.Indent(&b, raw, "", "  "); ierr != nil {
			return true, errors.Join(err, ierr)
		}
		b.WriteByte('\n')
		if _, werr := cmd.OutOrStdout().Write(b.Bytes()); werr != nil {
			return true, errors.Join(err, werr)
		}
		return true, err
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, fmt.Errorf("the admin API's answer to %s %s: %w", method, path, err)
	}
	return false, nil
}

// untilText says how long until t, to the second, for a table.
func untilText(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return "in " + d.String()
}

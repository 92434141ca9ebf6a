//go:build !unix

package bench

import (
	"context"
	"errors"

	"github.com/lbctl/lbctl/config"
)

// startProcs needs signals that only unix has.
func startProcs(context.Context, string, *config.Config, int, string, bool, bool) (fleet, error) {
	return nil, errors.New("lbctl as a child process (--restart@, --upgrade@, --cluster): unix only")
}

//go:build !unix

package instance

import (
	"context"
	"errors"
	"net"
	"os"
)

// Upgrades hand descriptors to a child process, which needs a unix system;
// elsewhere an upgrade is refused and nothing is inherited.

var upgradeSignals []os.Signal

var errUpgradeUnsupported = errors.New("upgrades need a unix system")

type socketDup struct{}

func dupSocket(net.Listener) (socketDup, error) { return socketDup{}, nil }

func (socketDup) close() {}

func (socketDup) file(string) (*os.File, error) { return nil, errUpgradeUnsupported }

func keepSocketFile(net.Listener) {}

func adoptSocketFile(net.Listener) {}

func inherited() (*predecessor, error) { return nil, nil }

func (r *runner) startSuccessor(context.Context) (*successor, error) {
	return nil, errUpgradeUnsupported
}

package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/config"
)

// The control stream between the old and the new process of an upgrade
// (see Run) carries, from the old process, the two parts of the hand-over
// (see writeHandover), and from the new one a single line: "ready" once it
// can serve, or "failed: " and the reason before it exits.
const (
	readyLine  = "ready"
	failedLine = "failed: "
)

// predecessor is, in a process started by an upgrade, the old process:
// the listeners it handed over and the control stream to it.
type predecessor struct {
	ctl        net.Conn
	br         *bufio.Reader
	front      net.Listener
	frontAddr  string // the listen address front was opened for
	adminLn    net.Listener
	adminAddr  string // the admin.listen adminLn was opened for
	ready      bool   // "ready" was sent
	taken      bool   // listeners returned by listeners, no longer ours to close
	closedOnce bool
}

// listeners returns the front and admin listeners for cfg: the ones
// handed over when their address is the configured one, new ones
// otherwise (none for the admin API when admin.listen is empty). p may be
// nil: no upgrade, every listener is new.
func (p *predecessor) listeners(ctx context.Context, cfg *config.Config) (front, adminLn net.Listener, err error) {
	if p != nil {
		front, adminLn = p.front, p.adminLn
		p.taken = true
		if front != nil && p.frontAddr != cfg.Listen {
			front.Close()
			front = nil
		}
		if adminLn != nil && p.adminAddr != cfg.Admin.Listen {
			adminLn.Close()
			adminLn = nil
		}
	}
	if front == nil {
		if front, err = Listen(ctx, cfg.Listen); err != nil {
			if adminLn != nil {
				adminLn.Close()
			}
			return nil, nil, err
		}
	}
	if adminLn == nil && cfg.Admin.Listen != "" {
		if adminLn, err = admin.Listen(cfg.Admin.Listen); err != nil {
			front.Close()
			return nil, nil, err
		}
	}
	return front, adminLn, nil
}

// takeOver receives the state of the old process in two parts around the
// "ready" line (see Run), writing the PID file in between; when it
// returns, the old process has stopped accepting and in holds its pins and
// admin states. Only a failure before "ready" is an error: after it, the
// old process no longer accepts, so the new one must serve whatever it
// has.
func (p *predecessor) takeOver(in *Instance, pidFile string, timeout time.Duration) error {
	p.ctl.SetReadDeadline(time.Now().Add(timeout))
	states, pins, err := in.readHandover(p.br)
	if err != nil {
		return fmt.Errorf("receiving the state of the old process: %w", err)
	}
	in.log.Info("upgrade: state received", "admin_states", states, "pins", pins)
	if err := writePIDFile(pidFile); err != nil {
		return err
	}
	p.ctl.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := p.ctl.Write([]byte(readyLine + "\n")); err != nil {
		return fmt.Errorf("telling the old process this one is ready: %w", err)
	}
	p.ready = true
	p.ctl.SetReadDeadline(time.Now().Add(timeout))
	if states, pins, err = in.readHandover(p.br); err != nil {
		in.log.Warn("upgrade: the old process's last changes were not received; serving with the state received before", "error", err)
	} else {
		in.log.Info("upgrade: changes since received", "admin_states", states, "pins", pins)
	}
	adoptSocketFile(p.adminLn)
	p.close(nil)
	return nil
}

// close ends the control stream; before "ready", it first tells the old
// process why this one gives up (err), and closes the listeners nobody
// took. It may be called again.
func (p *predecessor) close(err error) {
	if p.closedOnce {
		return
	}
	p.closedOnce = true
	if !p.ready {
		msg := "exited before it was ready"
		if err != nil {
			msg = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		p.ctl.SetWriteDeadline(time.Now().Add(time.Second))
		p.ctl.Write([]byte(failedLine + msg + "\n"))
		if !p.taken {
			for _, ln := range []net.Listener{p.front, p.adminLn} {
				if ln != nil {
					keepSocketFile(ln)
					ln.Close()
				}
			}
		}
	}
	p.ctl.Close()
}

// successor is, in the old process of an upgrade, the new process once it
// has said it is ready.
type successor struct {
	cmd   *exec.Cmd
	pid   int
	ctl   net.Conn
	since time.Time // the first part of the hand-over began after this
}

// finish sends the second part of the hand-over, the changes since the
// first, and lets the new process go.
func (s *successor) finish(in *Instance, timeout time.Duration) (states, pins int, err error) {
	defer s.release()
	s.ctl.SetWriteDeadline(time.Now().Add(timeout))
	states = len(in.parts.Backends.Registry().All())
	pins, err = in.writeHandover(s.ctl, s.since)
	return states, pins, err
}

// abandon stops a new process that was ready when this one was told to
// stop: the operator's stop applies to both.
func (s *successor) abandon() {
	s.cmd.Process.Signal(os.Interrupt)
	s.release()
}

// release closes the control stream and lets the new process run on its
// own: it is not this process's child to wait for any more.
func (s *successor) release() {
	s.ctl.Close()
	s.cmd.Process.Release()
}

// errNotReady is awaitReady's error when the new process says nothing
// before the deadline.
var errNotReady = errors.New("not ready in time")

// awaitReady reads the new process's answer on ctl: nil for "ready", its
// reason for "failed: ...", and an error when the stream ends or times out
// first.
func awaitReady(br *bufio.Reader) error {
	line, err := br.ReadString('\n')
	line = strings.TrimSuffix(line, "\n")
	switch {
	case line == readyLine:
		return nil
	case strings.HasPrefix(line, failedLine):
		return errors.New(strings.TrimPrefix(line, failedLine))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errNotReady
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return errors.New("exited before it was ready")
	case err != nil:
		return fmt.Errorf("control stream: %w", err)
	default:
		return fmt.Errorf("answered %s", strconv.Quote(line))
	}
}

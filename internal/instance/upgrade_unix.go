//go:build unix

package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The sockets are handed over as cloudflare/tableflip does it, in the few
// lines it takes here: the new process inherits them as descriptors (the
// kernel keeps one listening socket with one queue, so no client is
// refused), learns what they are from its environment, and answers on a
// control stream. tableflip itself is not used because its Ready makes
// the old process stop at once, while here the old process must still send
// what changed after the new one is ready and before it accepts (see Run).

// The environment of a process started by an upgrade, and its inherited
// descriptors: 3 the control stream, 4 the front listener, 5 the admin
// listener when envAdmin is not empty.
const (
	envUpgrade = "LBCTL_UPGRADE"        // "1"
	envFront   = "LBCTL_UPGRADE_LISTEN" // the listen address of descriptor 4
	envAdmin   = "LBCTL_UPGRADE_ADMIN"  // the admin.listen of descriptor 5, "" for none
	fdControl  = 3
	fdFront    = 4
	fdAdmin    = 5
)

// upgradeSignals are the signals that ask for an upgrade.
var upgradeSignals = []os.Signal{syscall.SIGUSR2}

// socketDup is a duplicate descriptor of a listening socket, kept as a
// bare descriptor so that the runtime's poller never watches it; the zero
// value holds none.
type socketDup struct {
	fd int
	ok bool
}

// dupSocket duplicates ln's socket.
func dupSocket(ln net.Listener) (socketDup, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return socketDup{}, fmt.Errorf("a %T has no socket to hand over", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return socketDup{}, err
	}
	var d socketDup
	var derr error
	if err := rc.Control(func(fd uintptr) {
		d.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return socketDup{}, err
	}
	if derr != nil {
		return socketDup{}, fmt.Errorf("duplicate listener: %w", derr)
	}
	d.ok = true
	return d, nil
}

func (d socketDup) close() {
	if d.ok {
		unix.Close(d.fd)
	}
}

// file returns another duplicate of the socket as a file, for a child's
// descriptors; the caller closes it.
func (d socketDup) file(name string) (*os.File, error) {
	if !d.ok {
		return nil, fmt.Errorf("the %s listener cannot be handed over (not serving, or not a socket)", name)
	}
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate %s listener: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// keepSocketFile makes closing ln leave its socket file in place when it
// is a unix socket: the new process of an upgrade listens on it.
func keepSocketFile(ln net.Listener) {
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
}

// adoptSocketFile makes closing ln remove its socket file when it is a
// unix socket handed over by an upgrade, as closing one this process
// opened does.
func adoptSocketFile(ln net.Listener) {
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
}

// inherited returns the old process when this one was started by an
// upgrade, and nil otherwise. It takes the inherited descriptors over and
// clears the environment that named them, so that nothing this process
// starts inherits either.
func inherited() (*predecessor, error) {
	if os.Getenv(envUpgrade) != "1" {
		return nil, nil
	}
	p := &predecessor{frontAddr: os.Getenv(envFront), adminAddr: os.Getenv(envAdmin)}
	for _, k := range []string{envUpgrade, envFront, envAdmin} {
		os.Unsetenv(k)
	}
	take := func(fd int, name string) *os.File {
		unix.CloseOnExec(fd)
		return os.NewFile(uintptr(fd), name)
	}
	ctl := take(fdControl, "upgrade-control")
	front := take(fdFront, "front-listener")
	var adminF *os.File
	if p.adminAddr != "" {
		adminF = take(fdAdmin, "admin-listener")
	}
	var errs []error
	var err error
	if p.ctl, err = net.FileConn(ctl); err != nil {
		errs = append(errs, fmt.Errorf("control stream: %w", err))
	}
	if p.front, err = net.FileListener(front); err != nil {
		errs = append(errs, fmt.Errorf("front listener: %w", err))
	}
	if adminF != nil {
		if p.adminLn, err = net.FileListener(adminF); err != nil {
			errs = append(errs, fmt.Errorf("admin listener: %w", err))
		}
		adminF.Close()
	}
	ctl.Close()
	front.Close()
	if len(errs) > 0 {
		if p.ctl != nil {
			p.close(errors.Join(errs...))
		}
		return nil, errors.Join(errs...)
	}
	p.br = bufio.NewReaderSize(p.ctl, 64<<10)
	return p, nil
}

// sinceMargin is how far before the first part of the hand-over the second
// one begins: a pin is stamped with the time read just before its shard is
// locked, so one made as the first part passes its shard may carry a time
// slightly before it.
const sinceMargin = time.Second

// startSuccessor starts the binary on disk as the new process, with this
// one's arguments, environment and output, the listeners and a control
// stream, and sends it the first part of the hand-over while this process
// serves on. It returns once the new process is ready; when that fails or
// takes longer than the upgrade timeout or ctx, the new process is killed
// and the error says why.
func (r *runner) startSuccessor(ctx context.Context) (*successor, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the binary: %w", err)
	}
	// Close-on-exec is set under the fork lock, as the os package does,
	// since not every unix can set it at creation.
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("control stream: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "upgrade-control"), os.NewFile(uintptr(fds[1]), "upgrade-control")
	ctl, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("control stream: %w", err)
	}
	// Once the new process has its copies, this one closes its own: the
	// control stream then ends when the new process does.
	files := []*os.File{theirs}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	front, err := r.in.frontSocket()
	if err != nil {
		ctl.Close()
		return nil, err
	}
	files = append(files, front)
	frontAddr := r.in.listenAddr()
	env := []string{envUpgrade + "=1", envFront + "=" + frontAddr, envAdmin + "="}
	if r.adminLn != nil {
		d, err := dupSocket(r.adminLn)
		if err != nil {
			ctl.Close()
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		f, err := d.file("admin")
		d.close()
		if err != nil {
			ctl.Close()
			return nil, err
		}
		files = append(files, f)
		env[2] = envAdmin + "=" + r.cfg.Admin.Listen
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(withoutUpgradeEnv(os.Environ()), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = files
	err = cmd.Start()
	for _, f := range files {
		f.Close()
	}
	files = nil
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	s := &successor{cmd: cmd, pid: cmd.Process.Pid, ctl: ctl, since: time.Now().Add(-sinceMargin)}
	sent := make(chan error, 1)
	go func() {
		_, err := r.in.writeHandover(ctl, time.Time{})
		sent <- err
	}()
	ctl.SetReadDeadline(time.Now().Add(r.o.upgradeTimeout()))
	stop := context.AfterFunc(ctx, func() { ctl.SetDeadline(time.Unix(1, 0)) })
	err = awaitReady(bufio.NewReader(ctl))
	stop()
	if err == nil {
		if err = <-sent; err != nil {
			err = fmt.Errorf("sending the state: %w", err)
		}
	} else if ctx.Err() != nil {
		err = fmt.Errorf("stopped: %w", ctx.Err())
	}
	if err != nil {
		ctl.Close()
		<-sent
		// A process that said why it failed, or closed the stream, is
		// exiting: it gets a moment to do so, so that its exit status is
		// its own. One that did not answer in time is killed at once.
		if errors.Is(err, errNotReady) || ctx.Err() != nil {
			cmd.Process.Kill()
		} else {
			kill := time.AfterFunc(5*time.Second, func() { cmd.Process.Kill() })
			defer kill.Stop()
		}
		if werr := cmd.Wait(); werr != nil {
			err = fmt.Errorf("%w (%v)", err, werr)
		}
		return nil, fmt.Errorf("new process %d: %w", cmd.Process.Pid, err)
	}
	ctl.SetDeadline(time.Time{})
	return s, nil
}

// withoutUpgradeEnv returns env without the variables of an upgrade.
func withoutUpgradeEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != envUpgrade && k != envFront && k != envAdmin {
			out = append(out, kv)
		}
	}
	return out
}

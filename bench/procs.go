//go:build unix

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/loopback"
)

// procs are the lbctl instances of a run with --restart@ or --upgrade@:
// each is `lbctl serve` from Options.Binary, a child process with a config
// file the lab writes (its front listener and admin API fixed on
// 127.0.0.(2+i), so that a restart comes back on the same addresses), a
// PID file and a log file. Admin states go through the admin API; --add
// rewrites the config files and sends SIGHUP. A
// restart is SIGTERM, the process's exit (it saves its state file if it
// has one) and a new start; an upgrade is SIGUSR2, after which the process
// the old one started serves and the old one drains and exits.
type procs struct {
	bin       string
	dir       string
	stateFile bool
	cluster   bool           // the processes form a [cluster]
	cfg       *config.Config // the config every process runs, but for its own files
	all       []*proc
}

// proc is one lbctl serve process and the files it runs with.
type proc struct {
	index   int
	addr    string
	admin   string // the admin API's address, for admin states
	member  string // the [cluster] bind address, with --cluster
	cfgPath string
	pidFile string
	logPath string
	// exited is closed when the process this lab started last has been
	// waited for; after an upgrade, the process serving is its child, not
	// the lab's, and is followed through the PID file.
	exited chan struct{}
}

// procWait is how long a process may take to start, hand over or stop: a
// loaded machine may take seconds.
const procWait = 30 * time.Second

// startProcs starts n lbctl serve processes of cfg (whose Mode says the
// front door) from bin, with their files in dir, and returns once each
// serves. With stateFile, each keeps lab-N.state in dir.
func startProcs(ctx context.Context, bin string, cfg *config.Config, n int, dir string, stateFile, cluster bool) (fleet, error) {
	ps := &procs{bin: bin, dir: dir, stateFile: stateFile, cluster: cluster, cfg: cfg}
	for i := range n {
		p := &proc{index: i,
			cfgPath: filepath.Join(dir, fmt.Sprintf("lab-%d.toml", i+1)),
			pidFile: filepath.Join(dir, fmt.Sprintf("lab-%d.pid", i+1)),
			logPath: filepath.Join(dir, fmt.Sprintf("lab-%d.log", i+1))}
		ip := fmt.Sprintf("127.0.0.%d", 2+i)
		var err error
		for _, a := range []*string{&p.addr, &p.admin, &p.member} {
			// A member gossips on UDP as well as TCP.
			if *a, err = loopback.FreePort(ip, a == &p.member); err != nil {
				return nil, fmt.Errorf("instance %d: finding a port: %w", i+1, err)
			}
		}
		ps.all = append(ps.all, p)
	}
	for _, p := range ps.all {
		if err := ps.writeConfig(p); err != nil {
			ps.close()
			return nil, err
		}
		if err := ps.start(ctx, p); err != nil {
			ps.close()
			return nil, err
		}
	}
	if cluster {
		for _, p := range ps.all {
			if err := p.awaitMembers(ctx, n); err != nil {
				ps.close()
				return nil, err
			}
		}
	}
	return ps, nil
}

// awaitMembers waits until p's admin API lists n cluster members.
func (p *proc) awaitMembers(ctx context.Context, n int) error {
	c, err := admin.NewClient(p.admin, "")
	if err != nil {
		return fmt.Errorf("instance %d: %w", p.index+1, err)
	}
	deadline := time.Now().Add(procWait)
	for {
		var st admin.ClusterStatus
		raw, err := c.Do(ctx, http.MethodGet, "/api/cluster", nil)
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err == nil && len(st.Members) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %d: %d of %d cluster members within %v (%v); its log:\n%s",
				p.index+1, len(st.Members), n, procWait, err, p.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeConfig writes the config file of p: the shared config with p's
// front listener, admin API and (with --cluster) cluster membership, and p's state file when the run keeps one.
func (ps *procs) writeConfig(p *proc) error {
	c := *ps.cfg
	c.Listen = p.addr
	c.Admin.Listen = p.admin
	if ps.stateFile {
		c.Affinity.StateFile = filepath.Join(ps.dir, fmt.Sprintf("lab-%d.state", p.index+1))
	}
	if ps.cluster {
		c.Cluster.Bind, c.Cluster.Name, c.Cluster.Join = p.member, fmt.Sprintf("lab-%d", p.index+1), nil
		for _, q := range ps.all {
			if q != p {
				c.Cluster.Join = append(c.Cluster.Join, q.member)
			}
		}
	}
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		return fmt.Errorf("instance %d: config: %w", p.index+1, err)
	}
	if err := os.WriteFile(p.cfgPath, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("instance %d: config: %w", p.index+1, err)
	}
	return nil
}

// start runs p's process and waits until it logs that it serves.
func (ps *procs) start(ctx context.Context, p *proc) error {
	before := p.count("lbctl serving")
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("instance %d: log: %w", p.index+1, err)
	}
	defer logf.Close()
	cmd := exec.Command(ps.bin, "serve", "--config", p.cfgPath, "--pid-file", p.pidFile, "--grace", "1s")
	// A file, not a pipe: no copying goroutine waits for the processes an
	// upgrade starts, which inherit it.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("instance %d: %w", p.index+1, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.exited = exited
	if err := p.await(ctx, "lbctl serving", before, exited); err != nil {
		cmd.Process.Kill()
		<-exited
		return err
	}
	return nil
}

// await waits until p's log holds more than before lines with what, and
// fails when gone closes first or the wait is too long.
func (p *proc) await(ctx context.Context, what string, before int, gone <-chan struct{}) error {
	deadline := time.Now().Add(procWait)
	for p.count(what) <= before {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-gone:
			return fmt.Errorf("instance %d exited before %q; its log:\n%s", p.index+1, what, p.tail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %d: no %q within %v; its log:\n%s", p.index+1, what, procWait, p.tail())
		}
	}
	return nil
}

// count returns how many lines of p's log hold what.
func (p *proc) count(what string) int {
	data, _ := os.ReadFile(p.logPath)
	return bytes.Count(data, []byte(what))
}

// tail returns the last lines of p's log, for an error.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(len(lines)-10, 0):], "\n")
}

// pid returns the process that serves now, from the PID file.
func (p *proc) pid() (int, error) {
	data, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0, fmt.Errorf("instance %d: %w", p.index+1, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("instance %d: PID file: %w", p.index+1, err)
	}
	return n, nil
}

// stop sends SIGTERM to the process that serves and waits until it has
// exited: its PID file gone (it removes it last) and, when it is the
// lab's own child, waited for.
func (p *proc) stop() error {
	pid, err := p.pid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("instance %d: SIGTERM: %w", p.index+1, err)
	}
	deadline := time.Now().Add(procWait)
	for {
		_, err := os.Stat(p.pidFile)
		if errors.Is(err, os.ErrNotExist) && !alive(pid) {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("instance %d (pid %d) did not exit within %v of SIGTERM", p.index+1, pid, procWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-p.exited:
	case <-time.After(procWait):
		return fmt.Errorf("instance %d: the process the lab started did not exit", p.index+1)
	}
	return nil
}

func (ps *procs) urls() []string {
	var us []string
	for _, p := range ps.all {
		us = append(us, frontURL(ps.cfg, p.addr))
	}
	return us
}

// restart stops each process and starts it again, one after the other, as
// a rolling restart does.
func (ps *procs) restart(ctx context.Context) error {
	for _, p := range ps.all {
		if err := p.stop(); err != nil {
			return err
		}
		if err := ps.start(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// upgrade sends SIGUSR2 to each process in turn and waits until the new
// one has the hand-over.
func (ps *procs) upgrade(ctx context.Context) error {
	for _, p := range ps.all {
		before := p.count("upgrade: handed over")
		pid, err := p.pid()
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			return fmt.Errorf("instance %d: SIGUSR2: %w", p.index+1, err)
		}
		if err := p.await(ctx, "upgrade: handed over", before, nil); err != nil {
			return err
		}
	}
	return nil
}

// reload sends SIGHUP to each process and waits until it has reloaded.
func (ps *procs) reload(ctx context.Context) error {
	for _, p := range ps.all {
		before := p.count("config reloaded")
		pid, err := p.pid()
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("instance %d: SIGHUP: %w", p.index+1, err)
		}
		if err := p.await(ctx, "config reloaded", before, nil); err != nil {
			return err
		}
	}
	return nil
}

// alive reports whether process pid runs: it exists and (on Linux, where
// /proc tells) is no zombie waiting for a parent that is not the lab.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's closing parenthesis.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// add puts a backend into every process's config file and reloads them.
func (ps *procs) add(ctx context.Context, id, addr string) error {
	c := *ps.cfg
	c.Backends = append(slices.Clone(c.Backends), config.Backend{ID: id, Address: addr, Weight: 1})
	ps.cfg = &c
	for _, p := range ps.all {
		if err := ps.writeConfig(p); err != nil {
			return err
		}
	}
	return ps.reload(ctx)
}

// setState puts backend id in state on every process through its admin
// API, as lbctl backend drain does; a drain lasts at most drainFor when it
// is positive.
func (ps *procs) setState(id string, state backend.AdminState, drainFor time.Duration) error {
	req := admin.StateRequest{State: state.String()}
	if state == backend.Drain && drainFor > 0 {
		req.For = drainFor.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), procWait)
	defer cancel()
	for _, p := range ps.all {
		c, err := admin.NewClient(p.admin, "")
		if err != nil {
			return fmt.Errorf("instance %d: %w", p.index+1, err)
		}
		if _, err := c.Do(ctx, http.MethodPost, "/api/backends/"+url.PathEscape(id)+"/state", req); err != nil {
			return fmt.Errorf("instance %d: %w", p.index+1, err)
		}
	}
	return nil
}

// affinity is not read from a process: its table is its own.
func (ps *procs) affinity() *AffinityStats { return nil }

// close stops every process.
func (ps *procs) close() error {
	var errs []error
	for _, p := range ps.all {
		if p.exited == nil {
			continue
		}
		errs = append(errs, p.stop())
	}
	ps.all = nil
	return errors.Join(errs...)
}

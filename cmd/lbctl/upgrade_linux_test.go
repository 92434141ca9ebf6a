package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lbctl/lbctl/internal/eventually"
)

// buildLbctl builds lbctl into a folder of the test's and returns the
// binary's path: an upgrade starts the binary on disk, which a test then
// replaces.
func buildLbctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lbctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// upgradable is an lbctl serve process run from a binary on disk, with a
// PID file and a log file shared by it and every process an upgrade
// starts. This test process is their subreaper: the processes an upgrade
// starts become its children when their parent exits, so that it can see
// them exit.
type upgradable struct {
	t       *testing.T
	pidFile string
	logPath string
	pids    []int // every process so far, oldest first
}

// startUpgradable starts bin serve with args and waits until it serves.
func startUpgradable(t *testing.T, bin string, args ...string) *upgradable {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	dir := t.TempDir()
	u := &upgradable{t: t, pidFile: filepath.Join(dir, "lbctl.pid"), logPath: filepath.Join(dir, "lbctl.log")}
	logf, err := os.Create(u.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--pid-file", u.pidFile}, args...)...)
	cmd.Stderr = logf // a file: no copying goroutine waits for the processes that inherit it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u.pids = append(u.pids, cmd.Process.Pid)
	cmd.Process.Release() // reaped by exited, like the processes it starts
	t.Cleanup(u.stop)
	u.waitLog("lbctl serving", 1)
	if got := u.pid(); got != cmd.Process.Pid && got != u.pids[0] {
		t.Fatalf("PID file says %d, want %d", got, u.pids[0])
	}
	return u
}

// log returns everything the processes have logged.
func (u *upgradable) log() string {
	b, _ := os.ReadFile(u.logPath)
	return string(b)
}

// waitLog waits until the log holds want at least n times.
func (u *upgradable) waitLog(want string, n int) {
	u.t.Helper()
	defer func() {
		if u.t.Failed() {
			u.t.Logf("the log:\n%s", u.log())
		}
	}()
	eventually.True(u.t, fmt.Sprintf("the log to say %q %d times", want, n), func() bool {
		return strings.Count(u.log(), want) >= n
	})
}

// pid returns the process id the PID file names, 0 when there is none.
func (u *upgradable) pid() int {
	b, err := os.ReadFile(u.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// signal sends sig to the process the PID file names.
func (u *upgradable) signal(sig syscall.Signal) int {
	u.t.Helper()
	pid := u.pid()
	if err := syscall.Kill(pid, sig); err != nil {
		u.t.Fatalf("signal %v to %d: %v", sig, pid, err)
	}
	return pid
}

// upgrade sends SIGUSR2 and waits until a new process has taken over.
func (u *upgradable) upgrade() (old, next int) {
	u.t.Helper()
	done := strings.Count(u.log(), "upgrade complete")
	old = u.signal(syscall.SIGUSR2)
	u.waitLog("upgrade complete", done+1)
	next = u.pid()
	if next == old || next == 0 {
		u.t.Fatalf("after an upgrade the PID file names %d, the old process was %d", next, old)
	}
	u.pids = append(u.pids, next)
	return old, next
}

// exited reports whether process pid has exited, reaping it when it is
// this process's child by then.
func exited(pid int) bool {
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if got == pid {
		return true
	}
	if errors.Is(err, unix.ECHILD) {
		// Not a child yet (its parent lives on), or reaped already.
		return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
	}
	return false
}

// alive reports whether pid runs: not exited, and not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// waitExit waits until process pid has exited.
func (u *upgradable) waitExit(pid int) {
	u.t.Helper()
	eventually.True(u.t, fmt.Sprintf("process %d to exit", pid), func() bool { return exited(pid) })
}

// stop ends every process still running: SIGTERM to the one serving, then
// SIGKILL to any left.
func (u *upgradable) stop() {
	if pid := u.pid(); pid != 0 && alive(pid) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range u.pids {
		if !awaitExit(pid, time.Until(deadline)) {
			syscall.Kill(pid, syscall.SIGKILL)
			awaitExit(pid, 20*time.Second)
		}
	}
}

// awaitExit waits up to d for process pid, which need not be a child of
// the test, to exit, and reports whether it has: a pidfd becomes readable
// when its process ends, so nothing polls on a clock.
func awaitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return exited(pid) // gone already (ESRCH), or no pidfd here
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for until := time.Now().Add(d); ; {
		left := time.Until(until)
		if left <= 0 {
			return exited(pid)
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		return n > 0 || exited(pid)
	}
}

// load runs clients against an L4 and an L7 lbctl until stopped, and
// counts what went wrong: a refused or broken connection, a failed
// request, a client that reached another backend than before.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	conns   atomic.Int64 // L4 connections that completed
	reqs    atomic.Int64 // L7 requests that completed
	mu      sync.Mutex
	errs    []string
	moved   []string
	tracked map[string]string // client -> the backend it reached first
}

func newLoad() *load {
	return &load{stop: make(chan struct{}), tracked: map[string]string{}}
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// reached records that client reached backend id, and a move when it had
// reached another before.
func (l *load) reached(client, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if first, ok := l.tracked[client]; !ok {
		l.tracked[client] = id
	} else if first != id {
		l.moved = append(l.moved, fmt.Sprintf("%s from %s to %s", client, first, id))
	}
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// l4Client opens connection after connection to listen, each greeted by
// its backend and carrying three echoed requests: all from one address,
// or, with rotate, two from each address of the 127.0.net.0/24 in turn, so
// that new clients keep arriving while an upgrade hands over.
func (l *load) l4Client(listen string, net3 int, rotate bool) {
	for i := 0; !l.stopped(); i++ {
		host := 1
		if rotate {
			host = i/2%250 + 1
		}
		source := fmt.Sprintf("127.0.%d.%d", net3, host)
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		c, err := d.Dial("tcp", listen)
		if err != nil {
			l.fail("L4 %s: dial: %v", source, err)
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		id, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			l.fail("L4 %s: greeting: %v", source, err)
			return
		}
		l.reached("L4 "+source, strings.TrimSpace(id))
		for j := range 3 {
			msg := fmt.Sprintf("%s %d %d\n", source, i, j)
			if _, err := io.WriteString(c, msg); err != nil {
				l.fail("L4 %s: write: %v", source, err)
				break
			}
			if line, err := r.ReadString('\n'); err != nil || line != msg {
				l.fail("L4 %s: echo %q, %v", source, line, err)
				break
			}
		}
		c.Close()
		l.conns.Add(1)
	}
}

// l7Client sends request after request from source to listen on kept-alive
// connections, with a cookie jar as a browser has.
func (l *load) l7Client(listen, source string) {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}).DialContext,
		MaxIdleConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Jar: jar, Timeout: 10 * time.Second}
	for !l.stopped() {
		resp, err := c.Get("http://" + listen + "/")
		if err != nil {
			l.fail("L7 %s: %v", source, err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			l.fail("L7 %s: %s %q, %v", source, resp.Status, body, err)
			return
		}
		l.reached("L7 "+source, strings.TrimSpace(string(body)))
		l.reqs.Add(1)
	}
}

// waitProgress waits until the clients have completed n more connections
// and requests than when it was called.
func (l *load) waitProgress(t *testing.T, n int64) {
	t.Helper()
	c, r := l.conns.Load(), l.reqs.Load()
	eventually.True(t, fmt.Sprintf("%d more connections and requests through the upgraded processes", n), func() bool {
		return l.conns.Load() >= c+n && l.reqs.Load() >= r+n
	})
}

// TestUpgradeUnderLoad upgrades an L4 and an L7 lbctl three times each
// with SIGUSR2 while clients, each from its own address, open connection
// after connection through L4 (some from a new address every second
// connection, so that clients pinned during a hand-over are among them) and
// send request after request on kept-alive connections through L7: no connection is refused, no request fails, no
// client reaches another backend, and each old process, which still carries
// a connection opened before its upgrade, exits once that connection ends,
// long before its grace period.
func TestUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lbctl and runs it under load")
	}
	bin := buildLbctl(t)
	dir := t.TempDir()
	l4Listen, l7Listen := freeAddrOn(t, "127.0.77.1"), freeAddrOn(t, "127.0.77.2")
	l4Admin, l7Admin := "unix:"+filepath.Join(dir, "l4.sock"), "unix:"+filepath.Join(dir, "l7.sock")
	l4Path := writeConfig(t, fmt.Sprintf(liveConfig, l4Listen, "60s", l4Admin)+
		liveBackends("app-01", echoBackend(t, "app-01"), "app-02", echoBackend(t, "app-02"), "app-03", echoBackend(t, "app-03")))
	l7Path := writeConfig(t, "mode = \"l7\"\n"+fmt.Sprintf(liveConfig, l7Listen, "60s", l7Admin)+
		liveBackends("app-01", idBackend(t, "app-01"), "app-02", idBackend(t, "app-02"), "app-03", idBackend(t, "app-03")))
	l4 := startUpgradable(t, bin, "--config", l4Path, "--grace", "60s")
	l7 := startUpgradable(t, bin, "--config", l7Path, "--grace", "60s")

	ld := newLoad()
	for i := range 6 {
		ld.wg.Go(func() { ld.l4Client(l4Listen, 80+i, i%2 == 1) })
		ld.wg.Go(func() { ld.l7Client(l7Listen, fmt.Sprintf("127.0.90.%d", i+1)) })
	}
	stopLoad := sync.OnceFunc(func() { close(ld.stop); ld.wg.Wait() })
	defer stopLoad()
	ld.waitProgress(t, 50)

	for round := range 3 {
		// A client whose connection stays open across the upgrade.
		heldFrom := fmt.Sprintf("127.0.91.%d", round+1)
		held := openFrom(t, l4Listen, heldFrom)

		old4, _ := l4.upgrade()
		old7, _ := l7.upgrade()
		ld.waitProgress(t, 50)

		if err := held.echoes(); err != nil {
			t.Errorf("round %d: the connection opened before the upgrade broke: %v", round+1, err)
		}
		if !alive(old4) {
			t.Errorf("round %d: the old L4 process %d exited while a connection through it was open", round+1, old4)
		}
		if round == 0 {
			// A draining process upgrades nothing more.
			if err := syscall.Kill(old4, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			l4.waitLog("upgrade refused: another is in flight or done", 1)
		}
		if got := greeting(t, l4Listen, heldFrom); got != held.on {
			t.Errorf("round %d: %s was pinned to %s before the upgrade, reached %s after", round+1, heldFrom, held.on, got)
		}
		held.c.Close()
		l4.waitExit(old4)
		l7.waitExit(old7)
	}
	stopLoad()

	ld.mu.Lock()
	defer ld.mu.Unlock()
	for _, e := range ld.errs {
		t.Error(e)
	}
	for _, m := range ld.moved {
		t.Errorf("client moved: %s", m)
	}
	t.Logf("%d L4 connections, %d L7 requests, %d clients across three upgrades of each", ld.conns.Load(), ld.reqs.Load(), len(ld.tracked))
	for _, u := range []*upgradable{l4, l7} {
		l := strings.Replace(u.log(), "level=WARN msg=\"upgrade refused: another is in flight or done\"", "", 1)
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("warnings or errors in the log:\n%s", u.log())
		}
		// The last process removes the PID file it wrote when it stops.
		last := u.signal(syscall.SIGTERM)
		u.waitExit(last)
		if _, err := os.Stat(u.pidFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("PID file after the last process stopped: %v, want none", err)
		}
	}
}

// replaceBinary puts body, a shell script, or the file at from in place of
// the binary at bin, as an operator installing a new version would: a new
// file renamed over the old.
func replaceBinary(t *testing.T, bin, script, from string) {
	t.Helper()
	var b []byte
	if from != "" {
		var err error
		if b, err = os.ReadFile(from); err != nil {
			t.Fatal(err)
		}
	} else {
		b = []byte("#!/bin/sh\n" + script + "\n")
	}
	tmp := bin + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFailuresKeepServing asks a running lbctl to upgrade to a
// binary that exits at once, to one that never becomes ready (and asks
// again while that one is in flight), and to a good binary with a broken
// config: each time the old process serves on with its pins and says why,
// and then an upgrade to a good binary and config works.
func TestUpgradeFailuresKeepServing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lbctl")
	}
	bin := buildLbctl(t)
	good := bin + ".good"
	replaceBinary(t, good, "", bin)
	listen := freeAddrOn(t, "127.0.77.3")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	body := fmt.Sprintf(liveConfig, listen, "60s", adminAddr) +
		liveBackends("app-01", echoBackend(t, "app-01"), "app-02", echoBackend(t, "app-02"), "app-03", echoBackend(t, "app-03"))
	path := writeConfig(t, body)
	u := startUpgradable(t, bin, "--config", path, "--grace", "10s", "--upgrade-timeout", "2s")
	first := u.pid()
	pinned := map[string]string{}
	for i := range 6 {
		src := fmt.Sprintf("127.0.95.%d", i+1)
		pinned[src] = greeting(t, listen, src)
	}
	servesOn := func(what string) {
		t.Helper()
		if got := u.pid(); got != first {
			t.Errorf("%s: the PID file names %d, want %d, the process that serves on", what, got, first)
		}
		if !alive(first) {
			t.Fatalf("%s: the old process is gone", what)
		}
		for src, id := range pinned {
			if got := greeting(t, listen, src); got != id {
				t.Errorf("%s: client %s reached %s, pinned to %s", what, src, got, id)
			}
		}
	}

	// A binary that exits at once, by signal and by the API.
	replaceBinary(t, bin, "echo 'not lbctl' >&2; exit 1", "")
	u.signal(syscall.SIGUSR2)
	u.waitLog("upgrade failed; this process serves on", 1)
	if l := u.log(); !strings.Contains(l, "exit status 1") || !strings.Contains(l, "not lbctl") {
		t.Errorf("the log does not say how the new binary ended:\n%s", l)
	}
	servesOn("a binary that exits")
	_, _, err := runLbctl(t, "upgrade", "--admin", adminAddr)
	if err == nil || !strings.Contains(err.Error(), "upgrade failed") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("lbctl upgrade to a binary that exits: %v, want the failure and its exit status", err)
	}
	servesOn("a binary that exits, by the API")

	// A binary that never becomes ready; a second upgrade meanwhile is
	// refused, by signal and by the API.
	replaceBinary(t, bin, "exec sleep 60", "")
	started := strings.Count(u.log(), "upgrade: starting the binary on disk")
	late := strings.Count(u.log(), "not ready in time")
	u.signal(syscall.SIGUSR2)
	u.waitLog("upgrade: starting the binary on disk", started+1)
	u.signal(syscall.SIGUSR2)
	u.waitLog("upgrade refused: another is in flight or done", 1)
	_, _, err = runLbctl(t, "upgrade", "--admin", adminAddr)
	if err == nil || !strings.Contains(err.Error(), "already in progress") {
		t.Errorf("lbctl upgrade while one is in flight: %v, want it refused", err)
	}
	u.waitLog("not ready in time", late+1)
	servesOn("a binary that is never ready")

	// The good binary with a broken config: the new process says why.
	replaceBinary(t, bin, "", good)
	if err := os.WriteFile(path, []byte(body+"[[backend]]\nid = \"app-04\"\naddress = \"10.0.0.4\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u.signal(syscall.SIGUSR2)
	u.waitLog("upgrade failed; this process serves on", 4)
	if l := u.log(); !strings.Contains(l, `has no port`) {
		t.Errorf("the log does not say what is wrong with the config:\n%s", l)
	}
	servesOn("a broken config")

	// Fixed: a later SIGUSR2 upgrades, and so does the API after it; the
	// clients keep their backends, and each old process exits.
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	old, second := u.upgrade()
	if old != first {
		t.Fatalf("upgraded %d, want %d", old, first)
	}
	u.waitExit(first)
	out := mustRun(t, "upgrade", "--admin", adminAddr)
	u.waitLog("upgrade complete", 2)
	third := u.pid()
	u.pids = append(u.pids, third)
	if want := fmt.Sprintf("upgraded: new process %d serves", third); !strings.HasPrefix(out, want) || third == second {
		t.Errorf("lbctl upgrade printed %q, want %q (the old process was %d)", out, want, second)
	}
	for src, id := range pinned {
		if got := greeting(t, listen, src); got != id {
			t.Errorf("after the upgrades client %s reached %s, pinned to %s", src, got, id)
		}
	}
	u.waitExit(second)
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/logtest"
	"github.com/lbctl/lbctl/internal/loopback"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// TestMain lets a test run the real command in a child process: with
// LBCTL_TEST_MAIN set, the test binary is lbctl.
func TestMain(m *testing.M) {
	if os.Getenv("LBCTL_TEST_MAIN") == "1" {
		if n := os.Getenv("LBCTL_TEST_NOFILE"); n != "" {
			limitFiles(n)
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// limitFiles lowers the process's soft limit on open files to n, so that a
// test can make lbctl run out of descriptors.
func limitFiles(n string) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		panic(err)
	}
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		panic(err)
	}
	lim.Cur = v
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		panic(err)
	}
}

// lbctl returns a command that runs this test binary as lbctl with args.
func lbctl(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LBCTL_TEST_MAIN=1")
	return cmd
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lbctl.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (see loopback.FreeAddr).
func freeAddr(t *testing.T) string {
	t.Helper()
	return loopback.FreeAddr(t)
}

// echoBackend starts a TCP backend that writes id and a newline to each
// connection, then echoes (see testbackend.StartTCP), until the test ends;
// it returns the address.
func echoBackend(t *testing.T, id string) string {
	t.Helper()
	return killableEcho(t, id).Addr()
}

// killableEcho is echoBackend for a test that kills the backend and
// revives it on the same address, to play one that fails and comes back.
func killableEcho(t *testing.T, id string) *testbackend.Backend {
	t.Helper()
	b, err := testbackend.StartTCP(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b
}

// revive brings a killed backend back on its address.
func revive(t *testing.T, b *testbackend.Backend) {
	t.Helper()
	if err := b.Revive(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckPrintsEffectiveConfig(t *testing.T) {
	path := writeConfig(t, `
[cookie]
secret = ["new", "old"]
[[backend]]
id = "app-01"
address = "127.0.0.1:9001"
`)
	out, err := lbctl(t, "check", "--config", path).CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{`policy     = "roundrobin"`, `table_size = 65537`, `capacity      = 65536`, `save_interval = "30s"`, `id         = "app-01"`, `<redacted>`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), `"old"`) {
		t.Errorf("check printed a secret:\n%s", out)
	}
}

func TestConfigErrorExitsNonZeroWithoutListening(t *testing.T) {
	listen := freeAddr(t)
	path := writeConfig(t, fmt.Sprintf(`
listen = %q
[[backend]]
id = "app-01"
address = "10.0.0.1:80"
[[backend]]
id = "app-02"
address = "10.0.0.2"
`, listen))
	for _, sub := range []string{"check", "serve"} {
		t.Run(sub, func(t *testing.T) {
			cmd := lbctl(t, sub, "--config", path)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatal("lbctl did not exit on a config error")
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1", err)
			}
			want := `backend[1].address: "10.0.0.2" has no port`
			if !strings.Contains(string(out), want) {
				t.Errorf("output %q lacks %q", out, want)
			}
		})
	}
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on %s after a config error", listen)
	}
}

func TestServeL4AndStopOnSIGTERM(t *testing.T) {
	listen := freeAddr(t)
	path := writeConfig(t, fmt.Sprintf(`
listen = %q
[health]
interval = "100ms"
[[backend]]
id = "app-01"
address = %q
[[backend]]
id = "app-02"
address = %q
`, listen, echoBackend(t, "app-01"), echoBackend(t, "app-02")))
	cmd, stderr := startServe(t, "--config", path, "--grace", "5s")
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatalf("lbctl serving does not take a client on %s: %v\n%s", listen, err, stderr.String())
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if id, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(id, "app-0") {
		t.Fatalf("greeting through lbctl = %q, %v", id, err)
	}

	// SIGTERM while a connection is open: lbctl stops accepting, the open
	// connection keeps working, and lbctl exits 0 once it ends.
	cmd.Process.Signal(syscall.SIGTERM)
	refuses(t, listen) // the listener is closed: lbctl is shutting down
	fmt.Fprintln(c, "still here")
	if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Errorf("echo after SIGTERM = %q, %v", line, err)
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, r)

	waitExit(t, waitFor(cmd), "after SIGTERM", stderr)
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("log lacks the shutdown line:\n%s", stderr.String())
	}
}

// Out of file descriptors, lbctl keeps serving the clients it has, turns
// away (or leaves queued) the ones it cannot take, says why, and serves new
// clients once descriptors are free again.
//
// A session holds two descriptors, so with one limit every accept
// succeeds and the backend's socket is what fails, and with the next limit
// up accept itself fails, and is retried after a backoff. Both are run, and
// one must show the accept retry.
func TestServeL4SurvivesRunningOutOfDescriptors(t *testing.T) {
	var logs []string
	for _, limit := range []int{64, 65} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) { logs = append(logs, outOfDescriptors(t, limit)) })
	}
	if !strings.Contains(strings.Join(logs, ""), "accept failed; retrying") {
		t.Errorf("neither limit made accept fail:\n%s", strings.Join(logs, ""))
	}
}

// outOfDescriptors runs lbctl with at most limit open files against more
// clients than that allows, and returns its log.
func outOfDescriptors(t *testing.T, limit int) string {
	listen := freeAddr(t)
	path := writeConfig(t, fmt.Sprintf(`
listen = %q
[health]
check = "none"
[[backend]]
id = "app-01"
address = %q
`, listen, echoBackend(t, "app-01")))
	cmd := lbctl(t, "serve", "--config", path, "--log-level", "debug")
	cmd.Env = append(cmd.Env, fmt.Sprintf("LBCTL_TEST_NOFILE=%d", limit))
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	greet := func() (net.Conn, error) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if id, err := bufio.NewReader(c).ReadString('\n'); err != nil || id != "app-01\n" {
			c.Close()
			return nil, fmt.Errorf("greeting %q, %v", id, err)
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
	// servedWithin waits until a client is served, and fails the test
	// unless that took at most d.
	servedWithin := func(d time.Duration, when string) {
		t.Helper()
		start := time.Now()
		eventually.True(t, fmt.Sprintf("a client served on %s %s", listen, when), func() bool {
			c, err := greet()
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
		if took := time.Since(start); took > d {
			t.Fatalf("the first client served on %s %s took %v, want at most %v\n%s", listen, when, took, d, stderr.String())
		}
	}
	servedWithin(10*time.Second, "after start")
	// 40 clients need more descriptors than lbctl has. Whether accept or
	// the backend's socket runs out, the log says so (a refused client at
	// debug level).
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range 40 {
		c, err := greet()
		if err != nil {
			break
		}
		open = append(open, c)
	}
	if len(open) < 10 || len(open) == 40 {
		t.Fatalf("%d of 40 clients served with %d descriptors, want some but not all\n%s", len(open), limit, stderr.String())
	}
	waitLog(t, &stderr, "too many open files")
	t.Logf("%d clients served with %d descriptors", len(open), limit)
	// The clients served before still are.
	for i, c := range open {
		fmt.Fprintf(c, "ping %d\n", i)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != fmt.Sprintf("ping %d\n", i) {
			t.Fatalf("client %d after the limit: echo %q, %v", i, line, err)
		}
	}
	for _, c := range open {
		c.Close()
	}
	open = nil
	// Descriptors are free again: a new client is served within the
	// backoff (at most a second).
	servedWithin(5*time.Second, "after descriptors were freed")
	return stderr.String()
}

// syncBuffer is where a child's output is copied while the test reads it.
type syncBuffer = logtest.Buffer

func TestServeDemo(t *testing.T) {
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- runServe(ctx, serveOptions{demo: true, listen: listen, grace: time.Second, logLevel: "warn"})
	}()
	var c net.Conn
	eventually.True(t, "the demo to listen on "+listen, func() bool {
		var err error
		c, err = net.DialTimeout("tcp", listen, time.Second)
		return err == nil
	})
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	resp := string(b)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "app-0") {
		t.Errorf("demo response:\n%s", resp)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("runServe after cancel = %v, want nil", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := lbctl(t, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "lbctl ") {
		t.Errorf("version = %q, %v", out, err)
	}
}

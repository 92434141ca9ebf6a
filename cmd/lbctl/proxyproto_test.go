package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/proxyproto"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// proxyEchoBackend accepts connections that start with a PROXY header and
// greets each with its id and the client the header named.
func proxyEchoBackend(t *testing.T, id string) string {
	t.Helper()
	b, err := testbackend.StartTCPFunc(id, func(c net.Conn) {
		src, _, err := proxyproto.Read(c.(*net.TCPConn), time.Now().Add(10*time.Second))
		if err != nil {
			fmt.Fprintf(c, "%s no header: %v\n", id, err)
			return
		}
		fmt.Fprintf(c, "%s %s\n", id, src.Addr())
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b.Addr()
}

// TestBehindHAProxy runs lbctl behind HAProxy (mode tcp, send-proxy-v2,
// connecting from 127.0.0.2, the one peer listen_proxy lists): clients
// from distinct addresses behind the one HAProxy are pinned by their own
// addresses, and the backends, which want send_proxy = "v2", are told who
// they are. A connection straight from a peer that is not listed is
// refused.
func TestBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	listen, front := freeAddr(t), freeAddrOn(t, "127.0.0.2")
	adminAddr := "unix:" + filepath.Join(dir, "admin.sock")
	b1, b2 := proxyEchoBackend(t, "app-01"), proxyEchoBackend(t, "app-02")
	path := writeConfig(t, fmt.Sprintf(`
listen = %q
listen_proxy = ["127.0.0.2/32"]
[health]
check = "none"
[admin]
listen = %q
[[backend]]
id = "app-01"
address = %q
send_proxy = "v2"
[[backend]]
id = "app-02"
address = %q
send_proxy = "v2"
`, listen, adminAddr, b1, b2))
	cmd, log := startServe(t, "--config", path, "--grace", "2s")

	cfg := filepath.Join(dir, "haproxy.cfg")
	writeTestFile(t, cfg, fmt.Sprintf(`
global
	maxconn 100
defaults
	mode tcp
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend in
	bind %s
	default_backend lbctl
backend lbctl
	server lbctl %s send-proxy-v2 source 127.0.0.2
`, front, listen))
	hp := exec.Command(haproxy, "-f", cfg, "-db")
	hpLog := new(syncBuffer)
	hp.Stdout, hp.Stderr = hpLog, hpLog
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hp.Process.Kill()
		hp.Wait()
	})
	eventually.True(t, "haproxy to listen", func() bool {
		c, err := net.Dial("tcp", front)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	for _, src := range []string{"127.0.90.1", "127.0.90.2"} {
		line := greeting(t, front, src)
		id, client, _ := strings.Cut(line, " ")
		if client != src {
			t.Errorf("through HAProxy from %s, the backend was told %q", src, line)
		}
		if pin := pinOf(t, adminAddr, src); pin != id {
			t.Errorf("client %s reached %s, pinned to %q", src, id, pin)
		}
		if again := greeting(t, front, src); !strings.HasPrefix(again, id+" ") {
			t.Errorf("client %s came back to %q, was on %s", src, again, id)
		}
	}
	if pin := pinOf(t, adminAddr, "127.0.0.2"); pin != "" {
		t.Errorf("HAProxy's own address was pinned to %s", pin)
	}

	// Straight from an unlisted peer, with or without a header: refused.
	for _, send := range []string{"", string(proxyproto.Append(nil, 1, mustAddrPort("203.0.113.7:1"), mustAddrPort("192.0.2.1:2")))} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(send))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
			t.Errorf("an unlisted peer got %q", line)
		}
		c.Close()
	}
	stopServe(t, cmd, cmd.Process.Pid, log)
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

package main

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/lbctl/lbctl/internal/testbackend"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
)

// openedClient is a connection through lbctl that stays open, and the
// backend that greeted it.
type openedClient struct {
	c  net.Conn
	r  *bufio.Reader
	on string
}

// openFrom connects to listen from source and reads the backend's greeting.
func openFrom(t *testing.T, listen, source string) *openedClient {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	c, err := d.Dial("tcp", listen)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", listen, source, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	id, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", source, err)
	}
	return &openedClient{c: c, r: r, on: strings.TrimSpace(id)}
}

// echoes reports whether the connection still carries bytes both ways.
func (oc *openedClient) echoes() error {
	if _, err := io.WriteString(oc.c, "ping\n"); err != nil {
		return err
	}
	line, err := oc.r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echo %q, want ping", line)
	}
	return nil
}

// TestMaintKillClosesConnections puts a backend of a running lbctl into
// maintenance with the operator command: without --kill its open
// connection goes on, with --kill it is closed, while the other backend's
// connection goes on in both cases.
func TestMaintKillClosesConnections(t *testing.T) {
	listen := freeAddr(t)
	a1, a2 := echoBackend(t, "app-01"), echoBackend(t, "app-02")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	path := writeConfig(t, fmt.Sprintf(liveConfig, listen, "60s", adminAddr)+liveBackends("app-01", a1, "app-02", a2))
	_, log := startServe(t, "--config", path, "--grace", "2s")

	// One open connection to each backend, from sources of their own.
	on := map[string]*openedClient{}
	for i := 1; len(on) < 2 && i < 50; i++ {
		oc := openFrom(t, listen, fmt.Sprintf("127.0.44.%d", i))
		if on[oc.on] == nil {
			on[oc.on] = oc
		} else {
			oc.c.Close()
		}
	}
	if on["app-01"] == nil || on["app-02"] == nil {
		t.Fatalf("no open connection to each backend: %v", on)
	}

	mustRun(t, "backend", "maint", "app-02", "--admin", adminAddr)
	for id, oc := range on {
		if err := oc.echoes(); err != nil {
			t.Errorf("maint without --kill: the connection to %s broke: %v", id, err)
		}
	}

	out := mustRun(t, "backend", "maint", "app-02", "--kill", "--admin", adminAddr)
	if !strings.HasPrefix(out, "app-02: maint;") {
		t.Errorf("backend maint --kill printed %q", out)
	}
	if b, err := on["app-02"].r.ReadByte(); err == nil {
		t.Errorf("the connection to app-02 is open after --kill: read %q", b)
	} else if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the connection to app-02 after --kill: %v, want it closed", err)
	}
	if err := on["app-01"].echoes(); err != nil {
		t.Errorf("app-02's kill broke the connection to app-01: %v", err)
	}
	waitLog(t, log, "backend=app-02 state=maint source=api kill=true")
	// The event loop releases the closed connection at its next wake.
	want := "app-02 " + a2 + " 1 up maint 0"
	eventually.True(t, "backend list to show "+want, func() bool {
		list := fields(mustRun(t, "backend", "list", "--admin", adminAddr))
		return len(list) == 3 && strings.Join(list[2][:6], " ") == want
	})
}

// idBackend starts an HTTP backend that answers every request with its
// id (see testbackend.StartHTTP) until the test ends; it returns the
// address.
func idBackend(t *testing.T, id string) string {
	t.Helper()
	b, err := testbackend.StartHTTP(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill() })
	return b.Addr()
}

// TestBackendListShowsL7PinnedClients runs lbctl in L7 mode: clients,
// each from its own address, send requests with a cookie for app-02, and
// `lbctl backend list` shows as many pinned clients for app-02 and
// none for app-01.
func TestBackendListShowsL7PinnedClients(t *testing.T) {
	listen := freeAddr(t)
	a1, a2 := idBackend(t, "app-01"), idBackend(t, "app-02")
	adminAddr := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	path := writeConfig(t, "mode = \"l7\"\n"+fmt.Sprintf(liveConfig, listen, "60s", adminAddr)+liveBackends("app-01", a1, "app-02", a2))
	startServe(t, "--config", path, "--grace", "2s")

	const n = 30
	for i := range n {
		src := fmt.Sprintf("127.0.47.%d", i+1)
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for range 2 {
			req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
			req.Header.Set("Cookie", "SERVERID=app-02")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("client %s: %v", src, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(body)) != "app-02" {
				t.Fatalf("client %s with a cookie for app-02 answered by %q", src, body)
			}
		}
		tr.CloseIdleConnections()
	}
	rows := fields(mustRun(t, "backend", "list", "--admin", adminAddr))
	if len(rows) != 3 {
		t.Fatalf("backend list: %v", rows)
	}
	pinned := func(row []string) int {
		var v int
		fmt.Sscan(row[6], &v)
		return v
	}
	if got := pinned(rows[2]); rows[2][0] != "app-02" || got != n {
		t.Errorf("backend list shows %v for app-02, want %d pinned clients", rows[2], n)
	}
	if got := pinned(rows[1]); rows[1][0] != "app-01" || got != 0 {
		t.Errorf("backend list shows %v for app-01, want no pinned client", rows[1])
	}
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	cmd := lbctl(t, "serve", "--config", path, "--grace", "2s")
	var log syncBuffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitLog(t, &log, "lbctl serving")

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
	waitLog(t, &log, "backend=app-02 state=maint source=api kill=true")
	// The event loop releases the closed connection at its next wake.
	want := "app-02 " + a2 + " 1 up maint 0"
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := fields(mustRun(t, "backend", "list", "--admin", adminAddr))
		if len(list) == 3 && strings.Join(list[2][:6], " ") == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend list after the kill: %v, want %q", list, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

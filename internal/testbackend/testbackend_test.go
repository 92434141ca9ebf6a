package testbackend

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHTTPBackendAnswersDiesAndComesBack(t *testing.T) {
	base := leakcheck.Take(t)
	b, err := StartHTTP("app-01", nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + b.Addr()
	if code, body := get(t, url+"/x"); code != 200 || body != "app-01\n" {
		t.Errorf("GET /x = %d %q, want 200 app-01", code, body)
	}
	if code, _ := get(t, url+HealthPath); code != 200 {
		t.Errorf("health check = %d, want 200", code)
	}
	b.SetHealthy(false)
	if code, _ := get(t, url+HealthPath); code != 500 {
		t.Errorf("health check when unhealthy = %d, want 500", code)
	}
	if b.Served() != 1 {
		t.Errorf("Served = %d, want 1 (health checks left out)", b.Served())
	}
	// A kept-alive connection is cut by Kill.
	kept, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	io.WriteString(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	kept.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(kept), nil); err != nil {
		t.Fatal(err)
	}
	if !b.Kill() || b.Kill() {
		t.Error("Kill reported the wrong state")
	}
	if _, err := kept.Read(make([]byte, 1)); err == nil {
		t.Error("a kept-alive connection survived Kill")
	}
	if c, err := net.Dial("tcp", b.Addr()); err == nil {
		c.Close()
		t.Error("a killed backend accepted a connection")
	}
	if err := b.Revive(); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, url+"/"); code != 200 || body != "app-01\n" {
		t.Errorf("after Revive: %d %q, want 200 app-01", code, body)
	}
	b.Kill()
	kept.Close()
	base.Wait(t, 20*time.Second)
}

func TestTCPBackendGreetsEchoesAndDies(t *testing.T) {
	b, err := StartTCP("app-02")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if id, err := r.ReadString('\n'); err != nil || strings.TrimSpace(id) != "app-02" {
		t.Fatalf("greeting %q, %v", id, err)
	}
	io.WriteString(c, "ping\n")
	if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
	eventually.True(t, "one open connection", func() bool { return b.OpenConns() == 1 })
	b.Kill()
	if _, err := r.ReadByte(); err == nil {
		t.Error("an open connection survived Kill")
	}
	if b.OpenConns() != 0 || b.Accepted() != 1 {
		t.Errorf("after Kill: %d open, %d accepted; want 0, 1", b.OpenConns(), b.Accepted())
	}
}

// A backend of the test's own framing serves each connection with its
// function, and Kill ends a serve still blocked on its connection, leaving
// no goroutine or descriptor behind.
func TestTCPFuncServesEachConnectionAndKillEndsIt(t *testing.T) {
	base := leakcheck.Take(t)
	b, err := StartTCPFunc("app-03", func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(c, "got "+line)
		io.Copy(io.Discard, c) // held until the client or Kill closes
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello\n")
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); err != nil || got != "got hello\n" {
		t.Fatalf("reply %q, %v", got, err)
	}
	if b.Served() != 1 || b.OpenConns() != 1 {
		t.Errorf("served %d, %d open; want 1, 1", b.Served(), b.OpenConns())
	}
	if !b.Kill() {
		t.Fatal("Kill reported the backend dead already")
	}
	if _, err := r.ReadByte(); err == nil {
		t.Error("the connection survived Kill")
	}
	c.Close()
	base.Wait(t, 20*time.Second)
}

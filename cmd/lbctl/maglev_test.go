package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/testbackend"
)

// maglevInstances starts one lbctl serve process per backend order, each
// with policy maglev over the same backends (ids[i] at addrs[i]) listed in
// that order, and returns their listen addresses and logs. head is put
// before the shared config (mode = "l7" or nothing).
func maglevInstances(t *testing.T, head string, ids, addrs []string, orders [][]int) ([]string, []*syncBuffer) {
	t.Helper()
	var listens []string
	var logs []*syncBuffer
	for n, order := range orders {
		listen := freeAddr(t)
		adminAddr := "unix:" + filepath.Join(t.TempDir(), fmt.Sprintf("admin-%d.sock", n))
		var pool []string
		for _, i := range order {
			pool = append(pool, ids[i], addrs[i])
		}
		cfg := head + fmt.Sprintf(liveConfig, listen, "60s", adminAddr) + "[balance]\npolicy = \"maglev\"\n" + liveBackends(pool...)
		_, log := startServe(t, "--config", writeConfig(t, cfg), "--grace", "2s")
		listens = append(listens, listen)
		logs = append(logs, log)
	}
	return listens, logs
}

// TestMaglevInstancesAgreeOnEveryClient runs three L4 instances with
// policy maglev, each listing the backends in another order and none
// talking to another: every client lands on the same backend through all
// three. When a backend dies, each of its clients moves to the same new
// backend through all three, and no client of another backend moves; when
// it comes back, nobody moves back (the pins hold).
func TestMaglevInstancesAgreeOnEveryClient(t *testing.T) {
	ids := []string{"app-01", "app-02", "app-03", "app-04"}
	var echoes []*testbackend.Backend
	var addrs []string
	for _, id := range ids {
		e := killableEcho(t, id)
		echoes = append(echoes, e)
		addrs = append(addrs, e.Addr())
	}
	listens, logs := maglevInstances(t, "", ids, addrs, [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}})

	const clients = 1000 // as many client keys as the scale-out issue asks for
	source := func(i int) string { return fmt.Sprintf("127.63.%d.%d", i/250, i%250+1) }
	// placeAll connects each client through each instance and returns
	// where it landed, failing the test where the instances disagree.
	placeAll := func(what string) []string {
		t.Helper()
		placed := make([]string, clients)
		for i := range clients {
			for n, listen := range listens {
				id := greeting(t, listen, source(i))
				if n == 0 {
					placed[i] = id
				} else if id != placed[i] {
					t.Errorf("%s: client %s on %s through instance 0, on %s through instance %d", what, source(i), placed[i], id, n)
				}
			}
		}
		return placed
	}
	before := placeAll("all up")
	count := map[string]int{}
	for _, id := range before {
		count[id]++
	}
	if len(count) != len(ids) {
		t.Errorf("%d clients landed on %v, want every backend used", clients, count)
	}

	echoes[1].Kill() // app-02 dies
	after := placeAll("app-02 dead")
	for i := range clients {
		switch {
		case before[i] == "app-02" && after[i] == "app-02":
			t.Errorf("client %s still on the dead app-02", source(i))
		case before[i] != "app-02" && after[i] != before[i]:
			t.Errorf("client %s of %s moved to %s when app-02 died", source(i), before[i], after[i])
		}
	}

	revive(t, echoes[1])
	for _, log := range logs {
		waitLog(t, log, `"backend up" backend=app-02`)
	}
	again := placeAll("app-02 back")
	for i := range clients {
		if again[i] != after[i] {
			t.Errorf("client %s went from %s to %s when app-02 came back, want it to stay", source(i), after[i], again[i])
		}
	}
}

// TestMaglevL7FirstRequestsAgree runs two L7 instances with policy maglev
// and the backends in opposite orders: a request without a cookie from one
// source address goes to the same backend through both.
func TestMaglevL7FirstRequestsAgree(t *testing.T) {
	ids := []string{"app-01", "app-02", "app-03"}
	var addrs []string
	for _, id := range ids {
		addrs = append(addrs, idBackend(t, id))
	}
	listens, _ := maglevInstances(t, "mode = \"l7\"\n", ids, addrs, [][]int{{0, 1, 2}, {2, 1, 0}})
	used := map[string]bool{}
	for i := range 40 {
		src := fmt.Sprintf("127.0.64.%d", i+1)
		var got []string
		for _, listen := range listens {
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			resp, err := c.Get("http://" + listen + "/")
			if err != nil {
				t.Fatalf("client %s: %v", src, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			got = append(got, strings.TrimSpace(string(body)))
		}
		if got[0] != got[1] {
			t.Errorf("client %s answered by %s through one instance and %s through the other", src, got[0], got[1])
		}
		used[got[0]] = true
	}
	if len(used) != len(ids) {
		t.Errorf("40 clients reached only %v, want every backend", used)
	}
}

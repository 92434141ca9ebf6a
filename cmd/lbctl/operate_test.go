package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/admin/admintest"
	"github.com/lbctl/lbctl/internal/leakcheck"
)

// operated is a running admin API over an in-memory instance, for the
// operator commands to talk to.
type operated struct {
	inst *admintest.Instance
	addr string
}

// startAdmin serves the admin API of an in-memory instance at addr
// ("127.0.0.1:0" or "unix:/path") until the test ends, then checks that
// nothing is left running.
func startAdmin(t *testing.T, addr, token string) *operated {
	t.Helper()
	base := leakcheck.Take(t)
	ln, err := admin.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	o := &operated{inst: admintest.NewInstance(), addr: addr}
	if !strings.HasPrefix(addr, "unix:") {
		o.addr = ln.Addr().String()
	}
	srv := &admin.Server{Instance: o.inst, Token: token, Logger: slog.New(slog.DiscardHandler)}
	admintest.Serve(t, srv, ln, base)
	return o
}

// runLbctl runs lbctl with args in this process and returns what it
// printed on stdout and stderr, and its error (what main prints before
// exiting 1).
func runLbctl(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustRun runs lbctl with args and fails the test unless it succeeds.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runLbctl(t, args...)
	if err != nil {
		t.Fatalf("lbctl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fields returns the lines of a table, each split into its columns.
func fields(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestBackendCommands(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "")
	rows := fields(mustRun(t, "backend", "list", "--admin", o.addr))
	want := [][]string{
		{"ID", "ADDRESS", "WEIGHT", "HEALTH", "STATE", "ACTIVE", "PINNED", "SERVED"},
		{"app-01", "127.0.0.1:9001", "1", "up", "ready", "2", "2", "40"},
		{"app-02", "127.0.0.1:9002", "3", "up", "ready", "1", "1", "12"},
		{"app-03", "127.0.0.1:9003", "1", "down", "ready", "0", "0", "0"},
	}
	if fmtRows(rows) != fmtRows(want) {
		t.Errorf("backend list:\n got %v\nwant %v", rows, want)
	}

	out := mustRun(t, "backend", "drain", "app-02", "--for", "10m", "--admin", o.addr)
	if !strings.HasPrefix(out, "app-02: drain (ends in 10m0s); 1 pinned clients, 1 active connections") &&
		!strings.HasPrefix(out, "app-02: drain (ends in 9m") {
		t.Errorf("backend drain: %q", out)
	}
	rows = fields(mustRun(t, "backend", "list", "--admin", o.addr))
	if got := strings.Join(rows[2][4:7], " "); !strings.HasPrefix(got, "drain (ends in") {
		t.Errorf("backend list after drain shows %q for app-02", got)
	}
	mustRun(t, "backend", "maint", "app-01", "--admin", o.addr)
	mustRun(t, "backend", "ready", "app-02", "--admin", o.addr)
	out = mustRun(t, "backend", "maint", "app-02", "--kill", "--admin", o.addr)
	if out != "app-02: maint; 1 pinned clients, 0 active connections\n" {
		t.Errorf("backend maint --kill: %q", out)
	}
	wantChanges := []string{"app-02 drain 10m0s api", "app-01 maint 0s api", "app-02 ready 0s api", "app-02 maint 0s api kill"}
	if got := o.inst.Changes(); strings.Join(got, ",") != strings.Join(wantChanges, ",") {
		t.Errorf("instance saw %q, want %q", got, wantChanges)
	}

	out = mustRun(t, "backend", "list", "--json", "--admin", o.addr)
	var list admin.BackendList
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Backends) != 3 || list.Backends[0].State != "maint" || list.Backends[1].State != "maint" {
		t.Errorf("backend list --json: %v\n%s", err, out)
	}
}

func fmtRows(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, " ") + "\n")
	}
	return b.String()
}

// Each bad command gets the API's clear answer, exits non-zero and changes
// nothing.
func TestOperatorBadInput(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"backend", "maint", "app-09"}, `no backend with id "app-09"`},
		{[]string{"backend", "dran", "app-01"}, `unknown command "dran" for "lbctl backend"`},
		{[]string{"pin", "forgte", "203.0.113.7"}, `unknown command "forgte" for "lbctl pin"`},
		{[]string{"backend", "drain", "app-01", "--for", "forever"}, `"for": "forever" is not a positive duration`},
		{[]string{"backend", "drain", "app-01", "--kill"}, `unknown flag: --kill`},
		{[]string{"backend", "ready", "app-01", "--kill"}, `unknown flag: --kill`},
		{[]string{"pin", "get", "203.0.113.99"}, "203.0.113.99 is not pinned"},
		{[]string{"pin", "get", "not-an-ip"}, `key "not-an-ip" is not an IP address`},
		{[]string{"pin", "forget", "203.0.113.99"}, "203.0.113.99 is not pinned"},
		{[]string{"pin", "list", "--backend", "app-09"}, `no backend with id "app-09"`},
		{[]string{"pin", "list", "--limit", "0"}, `limit "0" is not a number from 1 to 10000`},
	}
	for _, c := range cases {
		before := o.inst.Snapshot()
		args := append(c.args, "--admin", o.addr)
		out, _, err := runLbctl(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("lbctl %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
		if out != "" {
			t.Errorf("lbctl %s printed %q on failure", strings.Join(c.args, " "), out)
		}
		if o.inst.Snapshot() != before {
			t.Errorf("lbctl %s changed the instance", strings.Join(c.args, " "))
		}
	}
	// With --json the error answer is printed as it came.
	out, _, err := runLbctl(t, "backend", "maint", "app-09", "--json", "--admin", o.addr)
	var e admin.Error
	if err == nil || json.Unmarshal([]byte(out), &e) != nil || e.Error != `no backend with id "app-09"` {
		t.Errorf("backend maint app-09 --json: %v\n%s", err, out)
	}
}

func TestPinCommands(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "")
	o.inst.AddPin("203.0.113.7", "app-02", time.Hour)
	o.inst.AddPin("203.0.113.8", "app-01", time.Hour)
	o.inst.AddPin("203.0.113.9", "app-01", time.Hour)
	o.inst.AddPin("2001:db8::/64", "app-01", time.Hour)

	rows := fields(mustRun(t, "pin", "get", "203.0.113.7", "--admin", o.addr))
	if len(rows) != 2 || rows[1][0] != "203.0.113.7" || rows[1][1] != "app-02" || rows[1][2] != "in" {
		t.Errorf("pin get: %v", rows)
	}
	out, errOut, err := runLbctl(t, "pin", "list", "--backend", "app-01", "--limit", "2", "--admin", o.addr)
	if rows := fields(out); err != nil || len(rows) != 3 || rows[1][0] != "2001:db8::/64" || rows[2][0] != "203.0.113.8" {
		t.Errorf("pin list --backend app-01 --limit 2: %v %v", rows, err)
	}
	if !strings.Contains(errOut, "more than 2 pins") {
		t.Errorf("pin list did not say it was cut: %q", errOut)
	}
	if rows := fields(mustRun(t, "pin", "list", "--admin", o.addr)); len(rows) != 5 {
		t.Errorf("pin list: %v", rows)
	}
	out = mustRun(t, "pin", "list", "--json", "--admin", o.addr)
	var list admin.PinList
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Pins) != 4 || list.More {
		t.Errorf("pin list --json: %v\n%s", err, out)
	}

	if out := mustRun(t, "pin", "forget", "203.0.113.7", "--admin", o.addr); out != "forgot 203.0.113.7 (was pinned to app-02)\n" {
		t.Errorf("pin forget: %q", out)
	}
	if out := mustRun(t, "pin", "forget", "2001:db8::/64", "--admin", o.addr); out != "forgot 2001:db8::/64 (was pinned to app-01)\n" {
		t.Errorf("pin forget of an IPv6 prefix: %q", out)
	}
	if _, ok, _ := o.inst.Pin("203.0.113.7"); ok {
		t.Error("pin forget left the pin")
	}
}

func TestReloadCommand(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "")
	o.inst.SetReload(func() (admin.ReloadResult, error) {
		return admin.ReloadResult{Changes: []string{"+app-04", "-app-03", "~app-02(weight 1->3)"}, Summary: "reloaded: +app-04 -app-03 ~app-02(weight 1->3)"}, nil
	})
	if out := mustRun(t, "reload", "--admin", o.addr); out != "reloaded: +app-04 -app-03 ~app-02(weight 1->3)\n" {
		t.Errorf("reload: %q", out)
	}

	msgs := []string{`lbctl.toml:4: unterminated table "[health"`, `lbctl.toml:9: backend[1].address: "10.0.0.2" has no port`}
	o.inst.SetReload(func() (admin.ReloadResult, error) {
		return admin.ReloadResult{}, &admin.ReloadError{Messages: msgs}
	})
	out, _, err := runLbctl(t, "reload", "--admin", o.addr)
	if err == nil || out != "" {
		t.Fatalf("reload of a bad file: out %q, err %v; want an error", out, err)
	}
	for _, m := range append(msgs, "the running config is unchanged") {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("reload error lacks %q:\n%v", m, err)
		}
	}
	out, _, err = runLbctl(t, "reload", "--json", "--admin", o.addr)
	var e admin.Error
	if err == nil || json.Unmarshal([]byte(out), &e) != nil || len(e.Messages) != 2 {
		t.Errorf("reload --json of a bad file: %v\n%s", err, out)
	}
}

func TestOperatorToken(t *testing.T) {
	o := startAdmin(t, "127.0.0.1:0", "s3cret-token")
	t.Setenv(tokenEnv, "")
	_, _, err := runLbctl(t, "backend", "list", "--admin", o.addr)
	if err == nil || !strings.Contains(err.Error(), "missing token") || !strings.Contains(err.Error(), tokenEnv) {
		t.Errorf("without a token: %v", err)
	}
	_, _, err = runLbctl(t, "backend", "maint", "app-01", "--admin", o.addr, "--token", "wrong")
	if err == nil || !strings.Contains(err.Error(), "wrong token") {
		t.Errorf("with a wrong token: %v", err)
	}
	if len(o.inst.Changes()) != 0 {
		t.Errorf("a wrong token changed the instance: %q", o.inst.Changes())
	}
	mustRun(t, "backend", "list", "--admin", o.addr, "--token", "s3cret-token")
	t.Setenv(tokenEnv, "s3cret-token")
	mustRun(t, "backend", "maint", "app-01", "--admin", o.addr)
	if len(o.inst.Changes()) != 1 {
		t.Errorf("the token from %s did not reach the API: %q", tokenEnv, o.inst.Changes())
	}
}

func TestOperatorOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "lbctl-cmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	o := startAdmin(t, "unix:"+filepath.Join(dir, "admin.sock"), "")
	if rows := fields(mustRun(t, "backend", "list", "--admin", o.addr)); len(rows) != 4 {
		t.Errorf("backend list over %s: %v", o.addr, rows)
	}
}

// When nothing answers, the command says where it looked and what to
// check; without --admin it says why it has no address.
func TestOperatorNothingAnswers(t *testing.T) {
	addr := freeAddr(t)
	_, _, err := runLbctl(t, "backend", "list", "--admin", addr)
	want := "no lbctl admin API at " + addr + ": is [admin] listen set?"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("nothing at %s: %v, want %q", addr, err, want)
	}
	_, _, err = runLbctl(t, "reload", "--admin", "unix:/nonexistent/lbctl.sock")
	if err == nil || !strings.HasPrefix(err.Error(), "no lbctl admin API at unix:/nonexistent/lbctl.sock: is [admin] listen set?") {
		t.Errorf("no socket: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "lbctl.toml")
	_, _, err = runLbctl(t, "pin", "list", "--config", missing)
	if err == nil || !strings.Contains(err.Error(), "no admin address: --admin is not given") || !strings.Contains(err.Error(), missing) {
		t.Errorf("no --admin and no config: %v", err)
	}
	path := writeConfig(t, "[[backend]]\nid = \"app-01\"\naddress = \"127.0.0.1:9001\"\n")
	_, _, err = runLbctl(t, "backend", "list", "--config", path)
	if err == nil || !strings.Contains(err.Error(), "no admin address: [admin] listen is not set in "+path+"; give --admin ADDR") {
		t.Errorf("config without [admin] listen: %v", err)
	}
}

package main

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sameAddressConfig is a valid file whose two backends share an address,
// which check and serve report as a warning, not an error. Its arguments
// are listen, admin.listen, and the two backend addresses.
const sameAddressConfig = `listen = %q
[admin]
listen = %q
token = "s3cret-token"

[[backend]]
id = "app-01"
address = %q

[[backend]]
id = "app-02"
address = %q
`

func TestCheckPrintsWarningsAfterTheConfig(t *testing.T) {
	path := writeConfig(t, fmt.Sprintf(sameAddressConfig, "127.0.0.1:8080", "0.0.0.0:9090", "127.0.0.1:9001", "127.0.0.1:9001"))
	cmd := lbctl(t, "check", "--config", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("check = %v, want exit 0 for a file with warnings\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	for _, want := range []string{"[admin]\nlisten = \"0.0.0.0:9090\"\ntoken  = \"<redacted>\"\n", `id         = "app-02"`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, &stdout)
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), "s3cret-token") {
		t.Errorf("check printed the admin token:\n%s%s", &stdout, &stderr)
	}
	want := "warning: " + path + `:12: backend[1].address: "127.0.0.1:9001" of "app-02" is also the address of backend[0] "app-01" (line 8); two backends at one address skew every balancing policy` + "\n"
	if stderr.String() != want {
		t.Errorf("stderr =\n%s\nwant\n%s", &stderr, want)
	}

	out, err := lbctl(t, "check", "--config", path, "--show-secrets").Output()
	if err != nil || !strings.Contains(string(out), `token  = "s3cret-token"`) {
		t.Errorf("check --show-secrets = %v, output lacks the token:\n%s", err, out)
	}
}

func TestCheckReportsDuplicateKeyInItsOwnWords(t *testing.T) {
	path := writeConfig(t, "[[backend]]\nid = \"app-01\"\naddress = \"127.0.0.1:9001\"\nid = \"app-02\"\n")
	out, err := lbctl(t, "check", "--config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("check succeeded on a key defined twice:\n%s", out)
	}
	if want := "lbctl: " + path + ":4: backend[0].id: key defined twice, first on line 2\n"; string(out) != want {
		t.Errorf("check output =\n%s\nwant\n%s", out, want)
	}
}

func TestServeLogsConfigWarnings(t *testing.T) {
	listen := freeAddr(t)
	backend := echoBackend(t, "app")
	// A unix socket for the admin API: no port to collide with.
	admin := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	path := writeConfig(t, fmt.Sprintf(sameAddressConfig, listen, admin, backend, backend))
	cmd, stderr := startServe(t, "--config", path, "--grace", "1s")
	logs := stderr.String()
	if want := `level=WARN msg=config warning="` + path + `:12: backend[1].address: \"` + backend + `\" of \"app-02\" is also the address of backend[0] \"app-01\" (line 8)`; !strings.Contains(logs, want) {
		t.Errorf("log lacks the warning %s:\n%s", want, logs)
	}
	if c, err := net.DialTimeout("tcp", listen, time.Second); err != nil {
		t.Errorf("a config with a warning does not serve: %v", err)
	} else {
		c.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("lbctl exited with %v, want 0\n%s", err, stderr.String())
	}
}

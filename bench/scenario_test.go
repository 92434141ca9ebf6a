package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShippedScenariosLoad loads every scenario in bench/scenarios and
// checks what each one sets.
func TestShippedScenariosLoad(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.toml")
	if err != nil || len(files) != 4 {
		t.Fatalf("scenarios: %v, %v; want 4 files", files, err)
	}
	got := make(map[string]*ScenarioFile)
	for _, f := range files {
		sf, err := LoadScenario(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		got[filepath.Base(f)] = sf
	}
	if s := got["cgnat.toml"]; s == nil || s.Options.PoolSize != 16 || s.Options.IPChurn != 0.05 || s.Options.Gateways != 20 {
		t.Errorf("cgnat: %+v", s)
	}
	if s := got["scale-up.toml"]; s == nil || len(s.Options.Adds) != 1 || s.Options.Adds[0] != (Event{"app-05", 2 * time.Second}) || s.Options.Duration != 8*time.Second {
		t.Errorf("scale-up: %+v", s)
	}
	if s := got["maintenance.toml"]; s == nil || len(s.Options.Drains) != 1 || s.Options.DrainFor != 3*time.Second {
		t.Errorf("maintenance: %+v", s)
	}
	if s := got["nat-skew.toml"]; s == nil || s.Name != "NAT skew" || s.Options.Users != 2000 {
		t.Errorf("nat-skew: %+v", s)
	}
}

// TestScenarioErrorsNameKeyAndLine writes broken scenarios: each error
// names the file, the line and the key.
func TestScenarioErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"unknown key", "[population]\nusers = 10\nuser = 3\n", []string{"s.toml:3: population.user: unknown key"}},
		{"unknown table", "name = \"x\"\n[popul]\nusers = 1\n", []string{"s.toml:2: popul: unknown key"}},
		{"wrong type", "[run]\nbackends = \"four\"\n", []string{"s.toml:2: run.backends: want a whole number"}},
		{"out of range", "[population]\n\nusers = 0\n", []string{"s.toml:3: population.users: 0 must be at least 1"}},
		{"bad event", "[events]\nfail = [\"app-02\"]\n", []string{"s.toml:2: events.fail:", "is not ID@DURATION"}},
		{"event past the run", "[run]\nduration = \"1s\"\n[events]\nreload = [\"2s\"]\n", []string{"s.toml:4: events.reload 2s: each run lasts 1s"}},
		{"bad duration", "[events]\ndrain_for = \"soon\"\n", []string{"s.toml:2: events.drain_for: \"soon\" is not a duration"}},
		{"syntax", "[run\nbackends = 3\n", []string{"s.toml:1:"}},
		{"two problems", "[population]\nusers = -1\n[run]\nbackends = 0\n", []string{"s.toml:2: population.users", "s.toml:4: run.backends"}},
		{"cluster of one", "[run]\ninstances = 1\ncluster = true\n", []string{"s.toml:3: run.cluster: a cluster of one instance"}},
		{"upgrade past the run", "[run]\nduration = \"1s\"\n[events]\nupgrade = [\"3s\"]\n", []string{"s.toml:4: events.upgrade 3s: each run lasts 1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.doc), "s.toml")
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want %q", err, want)
				}
			}
		})
	}
}

// TestScenarioLifecycleKeys: run.cluster and events.upgrade set their
// options.
func TestScenarioLifecycleKeys(t *testing.T) {
	doc := "[run]\ninstances = 3\ncluster = true\nstate_file = true\n[events]\nupgrade = [\"2s\"]\nrestart = [\"4s\"]\n"
	sf, err := ParseScenario([]byte(doc), "l.toml")
	if err != nil {
		t.Fatal(err)
	}
	o := sf.Options
	if !o.Cluster || o.Instances != 3 || !o.StateFile || len(o.Upgrades) != 1 || o.Upgrades[0] != 2*time.Second || len(o.Restarts) != 1 {
		t.Errorf("options %+v", o)
	}
}

// TestScenarioTargetSetsModes: a [target] with l7 alone runs l7 alone.
func TestScenarioTargetSetsModes(t *testing.T) {
	doc := "[run]\nbackends = 2\n[target]\nl7 = \"127.0.0.1:18080\"\nbackends = [\"127.0.0.1:19001\", \"127.0.0.1:19002\"]\n"
	sf, err := ParseScenario([]byte(doc), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if o := sf.Options; len(o.Modes) != 1 || o.Modes[0] != L7 || !slices.Equal(o.Targets[L7], []string{"127.0.0.1:18080"}) || len(o.TargetBackends) != 2 {
		t.Errorf("options %+v", o)
	}
}

// TestScenarioTargetInstancesAndCommands: a list of addresses is the
// instances of one load balancer, and reload_cmd and restart_cmd let
// events.reload and events.restart act on it; without them, or with a
// value of the wrong type, the key and line are named.
func TestScenarioTargetInstancesAndCommands(t *testing.T) {
	doc := `[run]
backends = 1
duration = "2s"
[events]
reload = ["500ms"]
restart = ["1s"]
[target]
l4 = ["127.0.0.41:18101", "127.0.0.42:18101"]
l7 = "https://127.0.0.41:18443"
backends = ["127.0.0.1:19001"]
reload_cmd = "kill -HUP 1234"
restart_cmd = "systemctl restart haproxy"
`
	sf, err := ParseScenario([]byte(doc), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	o := sf.Options
	if !slices.Equal(o.Targets[L4], []string{"127.0.0.41:18101", "127.0.0.42:18101"}) || !slices.Equal(o.Targets[L7], []string{"https://127.0.0.41:18443"}) ||
		o.TargetReloadCmd != "kill -HUP 1234" || o.TargetRestartCmd != "systemctl restart haproxy" || len(o.Modes) != 2 {
		t.Errorf("options %+v", o)
	}
	for bad, want := range map[string]string{
		strings.Replace(doc, `l7 = "https://127.0.0.41:18443"`, "l7 = 3", 1):         "t.toml:9: target.l7: want a list of strings, got 3",
		strings.Replace(doc, "restart_cmd = \"systemctl restart haproxy\"\n", "", 1): "t.toml:6: events.restart: with a --target, give --target-restart-cmd",
		strings.Replace(doc, `l7 = "https://`, `l7 = "ftp://`, 1):                    "t.toml:7: target l7=ftp://127.0.0.41:18443: \"ftp\" is not http or https",
	} {
		if _, err := ParseScenario([]byte(bad), "t.toml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

// TestScenarioConfigIsRelativeToTheFile: config names a file next to the
// scenario, whose settings the run uses; a bad one is the config key's
// error.
func TestScenarioConfigIsRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lb.toml"), []byte("[balance]\npolicy = \"maglev\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := filepath.Join(dir, "s.toml")
	if err := os.WriteFile(sc, []byte("config = \"lb.toml\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sf, err := LoadScenario(sc)
	if err != nil {
		t.Fatal(err)
	}
	if sf.Options.Config == nil || sf.Options.Config.Balance.Policy != "maglev" {
		t.Errorf("config %+v, want maglev from lb.toml", sf.Options.Config)
	}
	if _, err := ParseScenario([]byte("name = \"x\"\nconfig = \"missing.toml\"\n"), sc); err == nil || !strings.Contains(err.Error(), sc+":2: config: read config:") {
		t.Errorf("missing config: %v, want it named by key and line", err)
	}
}

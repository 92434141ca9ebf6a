package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/lbctl/lbctl/config"
)

// A scenario file is TOML with the tables below, each key the bench flag
// of the same name (see LoadScenario). It is strict like lbctl's config:
// an unknown table or key, a value of the wrong type, or one that the
// flag would refuse is an error naming the file, line and key.
//
//	name = "carrier-grade NAT with churn"
//	config = "lbctl.toml"          # [balance], [affinity], [cookie], [health]; relative to this file
//	[population]  users, gateways, skew, zipf_s, seed, pool_size, ip_churn, ip_churn_every
//	[run]         backends, requests, mode, rate, duration, concurrency, keepalive, instances, cluster, state_file
//	[events]      fail, recover, add, drain, maint, ready (lists of "ID@DURATION"),
//	              drain_for, reload, restart, upgrade (lists of "DURATION")
//	[target]      l4, l7 (an address or a list: instances), backends, settle,
//	              reload_cmd, restart_cmd
var scenarioKeys = map[string][]string{
	"":           {"name", "config", "population", "run", "events", "target"},
	"population": {"users", "gateways", "skew", "zipf_s", "seed", "pool_size", "ip_churn", "ip_churn_every"},
	"run":        {"backends", "requests", "mode", "rate", "duration", "concurrency", "keepalive", "instances", "cluster", "state_file"},
	"events":     {"fail", "recover", "add", "drain", "maint", "ready", "drain_for", "reload", "restart", "upgrade"},
	"target":     {"l4", "l7", "backends", "settle", "reload_cmd", "restart_cmd"},
}

// flagKeys maps the flags Validate names to the keys of a scenario file,
// so that its messages name the key and line instead.
var flagKeys = map[string]string{
	"--users": "population.users", "--gateways": "population.gateways", "--skew": "population.skew",
	"--zipf-s": "population.zipf_s", "--pool-size": "population.pool_size", "--ip-churn": "population.ip_churn",
	"--ip-churn-every": "population.ip_churn_every", "--backends": "run.backends", "--requests": "run.requests",
	"--mode": "run.mode", "--rate": "run.rate", "--duration": "run.duration", "--concurrency": "run.concurrency",
	"--instances": "run.instances", "--cluster": "run.cluster", "--fail": "events.fail", "--recover": "events.recover", "--add": "events.add",
	"--drain": "events.drain", "--maint": "events.maint", "--ready": "events.ready", "--drain-for": "events.drain_for",
	"--reload@": "events.reload", "--restart@": "events.restart", "--upgrade@": "events.upgrade", "--target": "target", "--target-backends": "target.backends", "--target-settle": "target.settle",
	"--target-reload-cmd": "target.reload_cmd", "--target-restart-cmd": "target.restart_cmd",
}

// Scenario file is a loaded scenario: its name and the options it sets.
type ScenarioFile struct {
	Path    string
	Name    string
	Options Options
}

// LoadScenario reads a scenario file: the lab's default options, changed
// by what the file sets. Every problem is reported, each naming the file,
// the line and the key.
func LoadScenario(path string) (*ScenarioFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return ParseScenario(data, path)
}

// ParseScenario is LoadScenario of data read from path.
func ParseScenario(data []byte, path string) (*ScenarioFile, error) {
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// As config does: the library's line is one too far when the
			// problem is the newline that ends a line; the offset is not.
			line := pe.Position.Line
			if start := pe.Position.Start; start >= 0 && start < len(data) {
				if l := 1 + strings.Count(string(data[:start]), "\n"); l == line-1 {
					line = l
				}
			}
			return nil, fmt.Errorf("%s:%d: %s", path, line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &scenarioDecoder{path: path, lines: config.KeyLines(data)}
	sf := &ScenarioFile{Path: path, Options: DefaultOptions()}
	o := &sf.Options
	d.table("", tree)
	d.str(tree, "name", &sf.Name)
	var cfgPath string
	if d.str(tree, "config", &cfgPath) {
		if !filepath.IsAbs(cfgPath) {
			cfgPath = filepath.Join(filepath.Dir(path), cfgPath)
		}
		cfg, err := LoadConfig(cfgPath)
		if err != nil {
			d.fail("config", "%v", err)
		} else {
			o.Config = cfg
		}
	}
	if p := d.sub(tree, "population"); p != nil {
		d.int(p, "population.users", &o.Users)
		d.int(p, "population.gateways", &o.Gateways)
		var skew string
		if d.str(p, "population.skew", &skew) {
			o.Skew = Skew(skew)
		}
		d.float(p, "population.zipf_s", &o.ZipfS)
		var seed int
		if d.int(p, "population.seed", &seed) {
			if seed < 0 {
				d.fail("population.seed", "%d must not be negative", seed)
			}
			o.Seed = uint64(seed)
		}
		d.int(p, "population.pool_size", &o.PoolSize)
		d.float(p, "population.ip_churn", &o.IPChurn)
		d.duration(p, "population.ip_churn_every", &o.IPChurnEvery)
	}
	if r := d.sub(tree, "run"); r != nil {
		d.int(r, "run.backends", &o.Backends)
		d.int(r, "run.requests", &o.Requests)
		var mode string
		if d.str(r, "run.mode", &mode) {
			if modes, err := ParseModes(mode); err != nil {
				d.fail("run.mode", "%q is not l4, l7 or both", mode)
			} else {
				o.Modes = modes
			}
		}
		d.float(r, "run.rate", &o.Rate)
		d.duration(r, "run.duration", &o.Duration)
		d.int(r, "run.concurrency", &o.Concurrency)
		d.bool(r, "run.keepalive", &o.KeepAlive)
		d.int(r, "run.instances", &o.Instances)
		d.bool(r, "run.cluster", &o.Cluster)
		d.bool(r, "run.state_file", &o.StateFile)
	}
	if e := d.sub(tree, "events"); e != nil {
		d.events(e, "events.fail", &o.Failures)
		d.events(e, "events.recover", &o.Recoveries)
		d.events(e, "events.add", &o.Adds)
		d.events(e, "events.drain", &o.Drains)
		d.events(e, "events.maint", &o.Maints)
		d.events(e, "events.ready", &o.Readies)
		d.duration(e, "events.drain_for", &o.DrainFor)
		d.times(e, "events.reload", &o.Reloads)
		d.times(e, "events.restart", &o.Restarts)
		d.times(e, "events.upgrade", &o.Upgrades)
	}
	if t := d.sub(tree, "target"); t != nil {
		o.Targets = make(map[Mode][]string)
		for _, m := range []Mode{L4, L7} {
			key := "target." + string(m)
			if v, ok := value(t, key); ok {
				// An address, or a list of them: the instances of one
				// load balancer.
				if addr, one := v.(string); one {
					o.Targets[m] = []string{addr}
				} else {
					var addrs []string
					d.strs(t, key, &addrs)
					o.Targets[m] = addrs
				}
			}
		}
		if _, set := d.lines["run.mode"]; !set {
			o.Modes = nil
			for _, m := range []Mode{L4, L7} {
				if len(o.Targets[m]) > 0 {
					o.Modes = append(o.Modes, m)
				}
			}
		}
		d.str(t, "target.reload_cmd", &o.TargetReloadCmd)
		d.str(t, "target.restart_cmd", &o.TargetRestartCmd)
		d.duration(t, "target.settle", &o.TargetSettle)
		if d.strs(t, "target.backends", &o.TargetBackends) {
			o.Backends = len(o.TargetBackends)
		}
	}
	if len(d.errs) == 0 {
		if err := o.Validate(); err != nil {
			for _, e := range unjoinErrors(err) {
				d.errs = append(d.errs, d.keyed(e.Error()))
			}
		}
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return sf, nil
}

// unjoinErrors returns the errors errors.Join combined into err.
func unjoinErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// scenarioDecoder copies a scenario's TOML tree onto Options, keeping
// every problem.
type scenarioDecoder struct {
	path  string
	lines map[string]int
	errs  []error
}

// at is "file:line: key" for key, or "file: key" when its line is unknown.
func (d *scenarioDecoder) at(key string) string {
	for k := key; k != ""; {
		if l, ok := d.lines[k]; ok {
			return fmt.Sprintf("%s:%d: %s", d.path, l, key)
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return d.path + ": " + key
}

func (d *scenarioDecoder) fail(key, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s: %s", d.at(key), fmt.Sprintf(format, args...)))
}

// keyed rewrites a message of Validate, which names a flag, to name the
// key and line of the file instead.
func (d *scenarioDecoder) keyed(msg string) error {
	flag, rest, _ := strings.Cut(msg, " ")
	flag, colon := strings.CutSuffix(flag, ":")
	if key, ok := flagKeys[flag]; ok {
		if colon {
			return fmt.Errorf("%s: %s", d.at(key), rest)
		}
		return fmt.Errorf("%s %s", d.at(key), rest)
	}
	return fmt.Errorf("%s: %s", d.path, msg)
}

// table reports the keys of table (the top level when name is "") that a
// scenario does not have.
func (d *scenarioDecoder) table(name string, t map[string]any) {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(scenarioKeys[name], k) {
			full := k
			if name != "" {
				full = name + "." + k
			}
			d.fail(full, "unknown key (a scenario has %s)", strings.Join(scenarioKeys[name], ", "))
		}
	}
}

// sub returns table name of the top level, checked, or nil.
func (d *scenarioDecoder) sub(tree map[string]any, name string) map[string]any {
	v, ok := tree[name]
	if !ok {
		return nil
	}
	t, ok := v.(map[string]any)
	if !ok {
		d.fail(name, "want a table, got %v", v)
		return nil
	}
	d.table(name, t)
	return t
}

// value returns the value of key (a path; its last part names it in t).
func value(t map[string]any, key string) (any, bool) {
	v, ok := t[key[strings.LastIndex(key, ".")+1:]]
	return v, ok
}

// decodeAs sets *dst to the value of key in t when it is a T, and reports
// whether it did: false when key is absent, and false with a failure that
// says what was wanted when its value is of another type.
func decodeAs[T any](d *scenarioDecoder, t map[string]any, key, want string, dst *T) bool {
	v, ok := value(t, key)
	if !ok {
		return false
	}
	x, ok := v.(T)
	if !ok {
		d.fail(key, "want %s, got %v", want, v)
		return false
	}
	*dst = x
	return true
}

func (d *scenarioDecoder) int(t map[string]any, key string, dst *int) bool {
	var n int64
	if !decodeAs(d, t, key, "a whole number", &n) {
		return false
	}
	*dst = int(n)
	return true
}

func (d *scenarioDecoder) float(t map[string]any, key string, dst *float64) bool {
	v, ok := value(t, key)
	if !ok {
		return false
	}
	switch x := v.(type) {
	case float64:
		*dst = x
	case int64:
		*dst = float64(x)
	default:
		d.fail(key, "want a number, got %v", v)
		return false
	}
	return true
}

func (d *scenarioDecoder) bool(t map[string]any, key string, dst *bool) bool {
	return decodeAs(d, t, key, "true or false", dst)
}

func (d *scenarioDecoder) str(t map[string]any, key string, dst *string) bool {
	return decodeAs(d, t, key, "a string", dst)
}

func (d *scenarioDecoder) strs(t map[string]any, key string, dst *[]string) bool {
	var list []any
	if !decodeAs(d, t, key, "a list of strings", &list) {
		return false
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			d.fail(key, "want a list of strings, got %v", list)
			return false
		}
		out = append(out, s)
	}
	*dst = out
	return true
}

func (d *scenarioDecoder) duration(t map[string]any, key string, dst *time.Duration) {
	var s string
	if !d.str(t, key, &s) {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		d.fail(key, "%q is not a duration (500ms, 5s)", s)
		return
	}
	*dst = v
}

func (d *scenarioDecoder) events(t map[string]any, key string, dst *[]Event) {
	decodeEach(d, t, key, dst, ParseEvent)
}

func (d *scenarioDecoder) times(t map[string]any, key string, dst *[]time.Duration) {
	decodeEach(d, t, key, dst, ParseAt)
}

// decodeEach appends to *dst each string of the list at key in t, parsed;
// a string that does not parse is a failure, and the others still count.
func decodeEach[T any](d *scenarioDecoder, t map[string]any, key string, dst *[]T, parse func(string) (T, error)) {
	var list []string
	if !d.strs(t, key, &list) {
		return
	}
	for _, s := range list {
		x, err := parse(s)
		if err != nil {
			d.fail(key, "%v", err)
			continue
		}
		*dst = append(*dst, x)
	}
}

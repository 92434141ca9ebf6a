package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// Load reads the file at path and returns its configuration, decoded,
// defaulted and validated as Parse does. It drops the warnings that
// LoadWithWarnings returns.
func Load(path string) (*Config, error) {
	cfg, _, err := LoadWithWarnings(path)
	return cfg, err
}

// LoadWithWarnings is Load, and also returns the warnings about the file:
// things that are valid but nearly always a mistake, such as two backends
// at one address. Each is a line in the form of an error,
// "name:line: key.path: what", in document order; there are none when err
// is not nil.
func LoadWithWarnings(path string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	return ParseWithWarnings(data, path)
}

// Parse decodes data, a TOML document called name in error messages, in
// three steps: decode strictly (a key the schema does not know is an
// error), keep the default of every key the document leaves out, then
// Validate. Every problem found is reported, one per line, as
// "name:line: key.path: reason", in document order. The line is that of the
// key, or of its table when the key is absent, and is left out when neither
// is in the document. On error the returned Config is nil.
func Parse(data []byte, name string) (*Config, error) {
	cfg, _, err := parse(data, name, true)
	return cfg, err
}

// ParseWithWarnings is Parse, and also returns the warnings about data, as
// LoadWithWarnings does.
func ParseWithWarnings(data []byte, name string) (*Config, []string, error) {
	return parse(data, name, true)
}

// ParseSettings is Parse for tools that bring their own backends, such as
// the lab: the file may leave out [[backend]]; every other key is checked
// as Parse checks it, and backends the file does have are checked too.
func ParseSettings(data []byte, name string) (*Config, error) {
	cfg, _, err := parse(data, name, false)
	return cfg, err
}

func parse(data []byte, name string, needBackends bool) (*Config, []string, error) {
	// The document is decoded to a generic tree and copied onto the Config
	// by hand rather than decoded into it: the library matches struct
	// fields case-insensitively (it would take "Mode" for "mode"), cannot
	// tell which [[backend]] a bad value sits in, and knows no positions
	// past the syntax check.
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		return nil, nil, syntaxError(data, name, err)
	}

	d := decoder{lines: keyLines(data), failed: make(map[string]bool)}
	cfg := Default()
	d.config(tree, &cfg)
	if cfg.TLS.On() && !hasKey(tree, "cookie", "secure") {
		// Browsers send a Secure cookie only over https: on a TLS
		// listener that is every request.
		cfg.Cookie.Secure = true
	}
	if err := cfg.validate(needBackends); err != nil {
		for _, e := range unjoin(err) {
			var fe *fieldError
			if errors.As(e, &fe) {
				if d.reported(fe.path) {
					continue
				}
				d.errs = append(d.errs, posError{line: d.line(fe.path), err: e})
				continue
			}
			d.errs = append(d.errs, posError{err: e})
		}
	}
	if len(d.errs) > 0 {
		return nil, nil, d.join(name)
	}
	return &cfg, d.warnings(&cfg, name), nil
}

// hasKey reports whether the document sets key in table.
func hasKey(tree map[string]any, table, key string) bool {
	t, ok := tree[table].(map[string]any)
	if !ok {
		return false
	}
	_, ok = t[key]
	return ok
}

// syntaxError places err, the TOML library's refusal of data, in the file
// called name. The line is worked out from the byte offset of the problem:
// the library's own line number is one too far when the problem is the
// newline that ends a line, as in an unterminated "[health" header. A key
// or table defined twice is reported as lbctl reports other problems with
// a key, "backend[1].id: ...", rather than with the library's
// "Key 'backend.id' has already been defined".
func syntaxError(data []byte, name string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &fileError{file: name, msg: err.Error(), err: err}
	}
	// The offset counts from after a UTF-8 byte order mark, which the
	// library skips. The library's line is kept when the offset disagrees
	// with it by more than that one line.
	line := pe.Position.Line
	body := bytes.TrimPrefix(data, []byte("\ufeff"))
	if start := pe.Position.Start; start >= 0 && start < len(body) {
		if l := 1 + bytes.Count(body[:start], []byte("\n")); l == line || l == line-1 {
			line = l
		}
	}
	msg := pe.Message
	if _, dups := scanKeys(data); len(dups) > 0 && dups[0].line == line {
		dup := dups[0]
		what := "key"
		if dup.table {
			what = "table"
		}
		msg = fmt.Sprintf("%s: %s defined twice, first on line %d", dup.path, what, dup.first)
	}
	return &fileError{file: name, line: line, msg: msg, err: err}
}

// fileError places an error in a config file. It unwraps to the error it
// places, so errors.As still finds a toml.ParseError behind a syntax error.
type fileError struct {
	file string
	line int // 0 when the problem is not on one line, such as a missing key
	msg  string
	err  error
}

func (e *fileError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return e.file + ": " + e.msg
}

func (e *fileError) Unwrap() error { return e.err }

// fieldError is one problem with the value of one key.
type fieldError struct {
	path string // key path as written in the file: "backend[1].address"
	err  error  // what is wrong, starting with the value: `"x" has no port`
}

func (e *fieldError) Error() string { return e.path + ": " + e.err.Error() }

func (e *fieldError) Unwrap() error { return e.err }

// unjoin returns the errors that errors.Join combined into err, or err
// alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// decoder copies a generic TOML tree onto a Config, checking each key
// against the schema and each value against its key's type. It collects
// every problem rather than stopping at the first.
type decoder struct {
	lines  map[string]int  // key path -> line, from keyLines
	failed map[string]bool // key paths whose value did not decode
	errs   []posError
}

// posError is a problem and the line of the key it concerns, 0 if none.
type posError struct {
	line int
	err  error
}

// line returns the line of path in the document, or of its closest
// enclosing key or table when path itself was not found (a key inside an
// inline table, say), or 0.
func (d *decoder) line(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// reported reports whether the value at path, or a value enclosing it, did
// not decode. Validate then sees a default or a zero in its place, which
// would only repeat the problem.
func (d *decoder) reported(path string) bool {
	for ; path != ""; path = parentPath(path) {
		if d.failed[path] {
			return true
		}
	}
	return false
}

func (d *decoder) fail(path string, err error) {
	d.failed[path] = true
	d.errs = append(d.errs, posError{line: d.line(path), err: &fieldError{path: path, err: err}})
}

func (d *decoder) failf(path, format string, args ...any) {
	d.fail(path, fmt.Errorf(format, args...))
}

// join returns the collected problems in document order, each placed in
// file. Problems with no line, such as a missing key, come last.
func (d *decoder) join(file string) error {
	slices.SortStableFunc(d.errs, func(a, b posError) int {
		if a.line == 0 || b.line == 0 {
			return b.line - a.line // the one with a line first
		}
		return a.line - b.line
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = &fileError{file: file, line: e.line, msg: e.err.Error(), err: e.err}
	}
	return errors.Join(errs...)
}

// field stores the value of one key into a Config, or says what is wrong
// with the value (without the key path, which the caller adds).
type field func(c *Config, v any) error

// schema lists every key of the file except [[backend]], by table ("" is
// the top level). It must agree with the toml tags of Config, which a test
// checks.
var schema = map[string]map[string]field{
	"": {
		"mode":         func(c *Config, v any) error { return setString(&c.Mode, v) },
		"listen":       func(c *Config, v any) error { return setString(&c.Listen, v) },
		"listen_proxy": func(c *Config, v any) error { return setStrings(&c.ListenProxy, v) },
	},
	"balance": {
		"policy":     func(c *Config, v any) error { return setString(&c.Balance.Policy, v) },
		"table_size": func(c *Config, v any) error { return setInt(&c.Balance.TableSize, v) },
	},
	"affinity": {
		"ttl":           func(c *Config, v any) error { return setDuration(&c.Affinity.TTL, v) },
		"capacity":      func(c *Config, v any) error { return setInt(&c.Affinity.Capacity, v) },
		"ipv4_prefix":   func(c *Config, v any) error { return setInt(&c.Affinity.IPv4Prefix, v) },
		"ipv6_prefix":   func(c *Config, v any) error { return setInt(&c.Affinity.IPv6Prefix, v) },
		"state_file":    func(c *Config, v any) error { return setString(&c.Affinity.StateFile, v) },
		"save_interval": func(c *Config, v any) error { return setDuration(&c.Affinity.SaveInterval, v) },
	},
	"cookie": {
		"name":      func(c *Config, v any) error { return setString(&c.Cookie.Name, v) },
		"expires":   func(c *Config, v any) error { return setDuration(&c.Cookie.Expires, v) },
		"path":      func(c *Config, v any) error { return setString(&c.Cookie.Path, v) },
		"domain":    func(c *Config, v any) error { return setString(&c.Cookie.Domain, v) },
		"http_only": func(c *Config, v any) error { return setBool(&c.Cookie.HTTPOnly, v) },
		"secure":    func(c *Config, v any) error { return setBool(&c.Cookie.Secure, v) },
		"same_site": func(c *Config, v any) error { return setString(&c.Cookie.SameSite, v) },
		"secret":    func(c *Config, v any) error { return c.Cookie.Secret.UnmarshalTOML(v) },
	},
	"health": {
		"check":    func(c *Config, v any) error { return setString(&c.Health.Check, v) },
		"path":     func(c *Config, v any) error { return setString(&c.Health.Path, v) },
		"interval": func(c *Config, v any) error { return setDuration(&c.Health.Interval, v) },
		"timeout":  func(c *Config, v any) error { return setDuration(&c.Health.Timeout, v) },
		"rise":     func(c *Config, v any) error { return setInt(&c.Health.Rise, v) },
		"fall":     func(c *Config, v any) error { return setInt(&c.Health.Fall, v) },
	},
	"timeouts": {
		"connect": func(c *Config, v any) error { return setDuration(&c.Timeouts.Connect, v) },
		"idle":    func(c *Config, v any) error { return setDuration(&c.Timeouts.Idle, v) },
		"header":  func(c *Config, v any) error { return setDuration(&c.Timeouts.Header, v) },
		"server":  func(c *Config, v any) error { return setDuration(&c.Timeouts.Server, v) },
	},
	"limits": {
		"header_bytes":       func(c *Config, v any) error { return setInt(&c.Limits.HeaderBytes, v) },
		"backend_idle_conns": func(c *Config, v any) error { return setInt(&c.Limits.BackendIdleConns, v) },
	},
	"l4": {
		"loops": func(c *Config, v any) error { return setInt(&c.L4.Loops, v) },
	},
	"l7": {
		"engine": func(c *Config, v any) error { return setString(&c.L7.Engine, v) },
	},
	"admin": {
		"listen": func(c *Config, v any) error { return setString(&c.Admin.Listen, v) },
		"token":  func(c *Config, v any) error { return setString(&c.Admin.Token, v) },
	},
	"log": {
		"access": func(c *Config, v any) error { return setString(&c.Log.Access, v) },
	},
	"cluster": {
		"bind":               func(c *Config, v any) error { return setString(&c.Cluster.Bind, v) },
		"name":               func(c *Config, v any) error { return setString(&c.Cluster.Name, v) },
		"join":               func(c *Config, v any) error { return setStrings(&c.Cluster.Join, v) },
		"secret_key":         func(c *Config, v any) error { return setString(&c.Cluster.SecretKey, v) },
		"push_pull_interval": func(c *Config, v any) error { return setDuration(&c.Cluster.PushPullInterval, v) },
		"gossip_interval":    func(c *Config, v any) error { return setDuration(&c.Cluster.GossipInterval, v) },
		"queue_size":         func(c *Config, v any) error { return setInt(&c.Cluster.QueueSize, v) },
	},
	"tls": {
		"certificates":  func(c *Config, v any) error { return setCertificates(&c.TLS.Certificates, v) },
		"min_version":   func(c *Config, v any) error { return setString(&c.TLS.MinVersion, v) },
		"alpn":          func(c *Config, v any) error { return setStrings(&c.TLS.ALPN, v) },
		"redirect_http": func(c *Config, v any) error { return setString(&c.TLS.RedirectHTTP, v) },
		"curves":        func(c *Config, v any) error { return setStrings(&c.TLS.Curves, v) },
	},
}

// backendKey is the key of the [[backend]] array of tables.
const backendKey = "backend"

// config decodes the top level of the document onto c. Keys are visited in
// sorted order so that problems come out in a stable order whatever the
// map's.
func (d *decoder) config(tree map[string]any, c *Config) {
	for _, k := range slices.Sorted(maps.Keys(tree)) {
		v := tree[k]
		if set, ok := schema[""][k]; ok {
			if err := set(c, v); err != nil {
				d.fail(k, err)
			}
			continue
		}
		if k == backendKey {
			d.backends(v, c)
			continue
		}
		fields, ok := schema[k]
		if !ok || k == "" {
			d.unknown(k, v)
			continue
		}
		table, ok := v.(map[string]any)
		if !ok {
			d.failf(k, "%s must be a table ([%s])", describe(v), k)
			continue
		}
		for _, kk := range slices.Sorted(maps.Keys(table)) {
			path := k + "." + kk
			set, ok := fields[kk]
			if !ok {
				d.unknown(path, table[kk])
				continue
			}
			if err := set(c, table[kk]); err != nil {
				d.fail(path, err)
			}
		}
	}
}

// backends decodes the [[backend]] tables onto c.Backends. A weight left
// out is 1; an explicit 0 stays 0 for Validate to reject.
func (d *decoder) backends(v any, c *Config) {
	var tables []any
	switch v := v.(type) {
	case []map[string]any: // [[backend]] tables
		for _, t := range v {
			tables = append(tables, t)
		}
	case []any: // backend = [{...}, {...}]
		tables = v
	default:
		d.failf(backendKey, "%s must be an array of tables ([[%s]])", describe(v), backendKey)
		return
	}
	c.Backends = make([]Backend, 0, len(tables))
	for i, t := range tables {
		prefix := fmt.Sprintf("%s[%d]", backendKey, i)
		b := Backend{Weight: defaultWeight}
		table, ok := t.(map[string]any)
		if !ok {
			d.failf(prefix, "%s must be a table", describe(t))
			c.Backends = append(c.Backends, b)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(table)) {
			var err error
			switch k {
			case "id":
				err = setString(&b.ID, table[k])
			case "address":
				err = setString(&b.Address, table[k])
			case "weight":
				err = setInt(&b.Weight, table[k])
			case "send_proxy":
				err = setString(&b.SendProxy, table[k])
			default:
				d.unknown(prefix+"."+k, table[k])
				continue
			}
			if err != nil {
				d.fail(prefix+"."+k, err)
			}
		}
		c.Backends = append(c.Backends, b)
	}
}

// unknown reports a key the schema does not have. For a table it reports
// the keys inside instead, so that a misspelt [affinty] table points at
// "affinty.ttl" and its line; an empty table is reported itself.
func (d *decoder) unknown(path string, v any) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) > 0 {
			for _, k := range slices.Sorted(maps.Keys(v)) {
				d.unknown(path+"."+k, v[k])
			}
			return
		}
	case []map[string]any:
		if len(v) > 0 {
			for i, t := range v {
				d.unknown(fmt.Sprintf("%s[%d]", path, i), t)
			}
			return
		}
	}
	d.errs = append(d.errs, posError{line: d.line(path), err: fmt.Errorf("unknown key %q", path)})
}

func setString(dst *string, v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s must be a string", describe(v))
	}
	*dst = s
	return nil
}

// setStrings takes an array of strings.
func setStrings(dst *[]string, v any) error {
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%s must be an array of strings", describe(v))
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return fmt.Errorf("element %d is %s, not a string", i, describe(e))
		}
		out = append(out, s)
	}
	*dst = out
	return nil
}

func setBool(dst *bool, v any) error {
	b, ok := v.(bool)
	if !ok {
		return fmt.Errorf("%s must be true or false", describe(v))
	}
	*dst = b
	return nil
}

func setInt(dst *int, v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("%s must be an integer", describe(v))
	}
	if n < math.MinInt || n > math.MaxInt {
		return fmt.Errorf("%d is too large", n)
	}
	*dst = int(n)
	return nil
}

// setDuration takes a duration string, or the integer 0 for users who
// write `expires = 0`.
func setDuration(dst *Duration, v any) error {
	switch v := v.(type) {
	case string:
		return dst.UnmarshalText([]byte(v))
	case int64:
		if v == 0 {
			*dst = 0
			return nil
		}
		return fmt.Errorf("%d is not a duration (use 300ms, 10s, 1h)", v)
	}
	return fmt.Errorf("%s is not a duration (use 300ms, 10s, 1h)", describe(v))
}

// describe shows a decoded TOML value in an error message: strings quoted,
// numbers and booleans as written, arrays and tables by kind.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int64, float64, bool:
		return fmt.Sprint(v)
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

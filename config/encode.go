package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Encode writes c as TOML: every key of every table, every backend, and
// durations in their compact form, so that Parse reads it back to an equal
// Config. `lbctl check` prints the effective configuration this way. The
// output includes the cookie secrets, the admin token and the cluster's
// secret key as they are (check redacts them first). It is not
// toml.Encoder: see the package doc.
func (c *Config) Encode(w io.Writer) error {
	e := encoder{w: w}
	e.table("",
		"mode", quote(c.Mode),
		"listen", quote(c.Listen),
		"listen_proxy", quoteList(c.ListenProxy))
	e.table("[balance]",
		"policy", quote(c.Balance.Policy),
		"table_size", strconv.Itoa(c.Balance.TableSize))
	e.table("[affinity]",
		"ttl", quote(c.Affinity.TTL.String()),
		"capacity", strconv.Itoa(c.Affinity.Capacity),
		"ipv4_prefix", strconv.Itoa(c.Affinity.IPv4Prefix),
		"ipv6_prefix", strconv.Itoa(c.Affinity.IPv6Prefix),
		"state_file", quote(c.Affinity.StateFile),
		"save_interval", quote(c.Affinity.SaveInterval.String()))
	e.table("[cookie]",
		"name", quote(c.Cookie.Name),
		"expires", quote(c.Cookie.Expires.String()),
		"path", quote(c.Cookie.Path),
		"domain", quote(c.Cookie.Domain),
		"http_only", strconv.FormatBool(c.Cookie.HTTPOnly),
		"secure", strconv.FormatBool(c.Cookie.Secure),
		"same_site", quote(c.Cookie.SameSite),
		"secret", encodeSecrets(c.Cookie.Secret))
	e.table("[health]",
		"check", quote(c.Health.Check),
		"path", quote(c.Health.Path),
		"interval", quote(c.Health.Interval.String()),
		"timeout", quote(c.Health.Timeout.String()),
		"rise", strconv.Itoa(c.Health.Rise),
		"fall", strconv.Itoa(c.Health.Fall))
	e.table("[timeouts]",
		"connect", quote(c.Timeouts.Connect.String()),
		"idle", quote(c.Timeouts.Idle.String()),
		"header", quote(c.Timeouts.Header.String()),
		"server", quote(c.Timeouts.Server.String()))
	e.table("[limits]",
		"header_bytes", strconv.Itoa(c.Limits.HeaderBytes),
		"backend_idle_conns", strconv.Itoa(c.Limits.BackendIdleConns))
	e.table("[l4]",
		"loops", strconv.Itoa(c.L4.Loops))
	e.table("[l7]",
		"engine", quote(c.L7.Engine))
	e.table("[admin]",
		"listen", quote(c.Admin.Listen),
		"token", quote(c.Admin.Token))
	e.table("[log]",
		"access", quote(c.Log.Access))
	e.table("[cluster]",
		"bind", quote(c.Cluster.Bind),
		"name", quote(c.Cluster.Name),
		"join", quoteList(c.Cluster.Join),
		"secret_key", quote(c.Cluster.SecretKey),
		"push_pull_interval", quote(c.Cluster.PushPullInterval.String()),
		"gossip_interval", quote(c.Cluster.GossipInterval.String()),
		"queue_size", strconv.Itoa(c.Cluster.QueueSize))
	e.table("[tls]",
		"certificates", encodeCertificates(c.TLS.Certificates),
		"min_version", quote(c.TLS.MinVersion),
		"alpn", quoteList(c.TLS.ALPN),
		"redirect_http", quote(c.TLS.RedirectHTTP),
		"curves", quoteList(c.TLS.Curves))
	for _, b := range c.Backends {
		e.table("[["+backendKey+"]]",
			"id", quote(b.ID),
			"address", quote(b.Address),
			"weight", strconv.Itoa(b.Weight),
			"send_proxy", quote(b.SendProxy))
	}
	return e.err
}

// encoder writes TOML tables and remembers the first write error.
type encoder struct {
	w     io.Writer
	err   error
	wrote bool // whether a table has been written, to separate the next
}

// table writes a header (none for "") and the key/value pairs kv, with the
// equals signs aligned.
func (e *encoder) table(header string, kv ...string) {
	var b strings.Builder
	if e.wrote {
		b.WriteByte('\n')
	}
	e.wrote = true
	if header != "" {
		b.WriteString(header + "\n")
	}
	width := 0
	for i := 0; i < len(kv); i += 2 {
		width = max(width, len(kv[i]))
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, "%-*s = %s\n", width, kv[i], kv[i+1])
	}
	if e.err == nil {
		_, e.err = io.WriteString(e.w, b.String())
	}
}

// encodeSecrets writes no secret as "", one as a string and several as an
// array, the forms UnmarshalTOML reads. A lone empty secret, which Validate
// rejects, is written as [""] so that it does not turn into "no secret".
func encodeSecrets(s Secrets) string {
	switch {
	case len(s) == 0:
		return `""`
	case len(s) == 1 && s[0] != "":
		return quote(s[0])
	}
	return quoteList(s)
}

// encodeCertificates writes tls.certificates as an array of inline tables.
func encodeCertificates(cs []Certificate) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = "{ cert = " + quote(c.Cert) + ", key = " + quote(c.Key)
		if c.OCSP != "" {
			parts[i] += ", ocsp = " + quote(c.OCSP)
		}
		parts[i] += " }"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// quoteList writes a list of strings as a TOML array.
func quoteList(list []string) string {
	quoted := make([]string, len(list))
	for i, v := range list {
		quoted[i] = quote(v)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// quote returns s as a TOML basic string. Unlike strconv.Quote it only uses
// the escapes TOML has; bytes that are not UTF-8 become U+FFFD, since TOML
// strings cannot hold them.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

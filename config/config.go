// Package config owns lbctl's TOML schema: the types a config file decodes
// into, their defaults, the validation that runs before anything starts
// (each problem named by key, line and value), and the effective config
// that `lbctl check` prints. It knows nothing of sockets and imports no
// other lbctl package; the packages that serve traffic copy what they need
// out of a Config.
//
// Two pieces are written by hand next to BurntSushi/toml, each because the
// library cannot do its job: the key-line finder (lines.go), since the
// decoder exposes no key positions, and the encoder (encode.go), since
// toml.Encoder leaves out a key whose value is a nil slice (a config with
// no cookie secret would print no secret key, and check must print every
// key) and indents tables, where the file's own style does not.
package config

import "time"

// Config is one lbctl.toml file after defaults have been applied. The toml
// tags are the file's keys; DESIGN.md documents each of them.
type Config struct {
	// Mode selects the front door: "l4" (TCP, source-IP affinity) or "l7"
	// (HTTP/1.1, cookie persistence).
	Mode string `toml:"mode"`
	// Listen is the host:port to accept on. An empty host means every
	// local address.
	Listen string `toml:"listen"`
	// ListenProxy lists the peers (CIDR prefixes or addresses) whose
	// connections must start with a PROXY protocol header naming the
	// client: upstream L4 balancers. A connection from any other peer, and
	// one from a listed peer without a valid header within
	// timeouts.header, is refused. Empty: no header is read.
	ListenProxy []string `toml:"listen_proxy"`

	Balance  Balance  `toml:"balance"`
	Affinity Affinity `toml:"affinity"`
	Cookie   Cookie   `toml:"cookie"`
	Health   Health   `toml:"health"`
	Timeouts Timeouts `toml:"timeouts"`
	Limits   Limits   `toml:"limits"`
	L4       L4       `toml:"l4"`
	L7       L7       `toml:"l7"`
	Admin    Admin    `toml:"admin"`
	Log      Log      `toml:"log"`
	Cluster  Cluster  `toml:"cluster"`
	TLS      TLS      `toml:"tls"`

	// Backends is the pool, in file order ([[backend]] tables).
	Backends []Backend `toml:"backend"`
}

// Balance is the [balance] table.
type Balance struct {
	// Policy picks a backend when no affinity or cookie applies:
	// "roundrobin", "leastconn", "random2" (power of two choices) or
	// "maglev" (consistent hashing of the client address, alike on
	// every instance).
	Policy string `toml:"policy"`
	// TableSize is the size of the Maglev lookup table, a prime; other
	// policies ignore it.
	TableSize int `toml:"table_size"`
}

// Affinity is the [affinity] table: L4 source-IP affinity.
type Affinity struct {
	// TTL is how long an idle pin lasts; every connection renews it.
	TTL Duration `toml:"ttl"`
	// Capacity is the number of pins kept; past it the least recently
	// used one is evicted.
	Capacity int `toml:"capacity"`
	// IPv4Prefix is how many leading bits of an IPv4 source address form
	// the key: 32 keys on the whole address, 24 groups a /24 like nginx's
	// ip_hash.
	IPv4Prefix int `toml:"ipv4_prefix"`
	// IPv6Prefix is the same for IPv6 source addresses; 64 groups one
	// household's or site's prefix.
	IPv6Prefix int `toml:"ipv6_prefix"`
	// StateFile is where the pins and the backends' admin states are kept
	// across restarts; empty keeps them in memory only.
	StateFile string `toml:"state_file"`
	// SaveInterval is how often the state file is written while serving;
	// it is also written at shutdown.
	SaveInterval Duration `toml:"save_interval"`
}

// Cookie is the [cookie] table: L7 cookie persistence.
type Cookie struct {
	// Name is the cookie's name, an RFC 6265 token.
	Name string `toml:"name"`
	// Expires sets Max-Age (and Expires) on the cookie; zero makes it a
	// session cookie.
	Expires Duration `toml:"expires"`
	// Path is the cookie's Path attribute.
	Path string `toml:"path"`
	// Domain is the cookie's Domain attribute; empty omits it.
	Domain string `toml:"domain"`
	// HTTPOnly adds the HttpOnly attribute.
	HTTPOnly bool `toml:"http_only"`
	// Secure adds the Secure attribute. A file that leaves it out gets
	// true when [tls] has certificates, false otherwise.
	Secure bool `toml:"secure"`
	// SameSite is "lax", "strict", "none", or empty to omit the attribute.
	SameSite string `toml:"same_site"`
	// Secret, when set, makes the cookie value an opaque HMAC token rather
	// than the backend id. The first secret signs; all of them verify.
	Secret Secrets `toml:"secret"`
}

// Health is the [health] table: the active health check.
type Health struct {
	// Check is the probe kind: "tcp" (connect), "http" (GET Path, 2xx or
	// 3xx is healthy) or "none" (every backend is always up).
	Check string `toml:"check"`
	// Path is the request path of the http check.
	Path string `toml:"path"`
	// Interval is the time between two probes of one backend.
	Interval Duration `toml:"interval"`
	// Timeout bounds one probe.
	Timeout Duration `toml:"timeout"`
	// Rise is how many consecutive passes mark a backend up.
	Rise int `toml:"rise"`
	// Fall is how many consecutive failures mark a backend down.
	Fall int `toml:"fall"`
}

// Timeouts is the [timeouts] table.
type Timeouts struct {
	// Connect bounds dialing a backend.
	Connect Duration `toml:"connect"`
	// Idle closes a connection after this long without traffic (L4: no
	// bytes either way; L7: keep-alive idle). Zero means no idle timeout.
	Idle Duration `toml:"idle"`
	// Header is the time a client has to send its whole request head (L7).
	Header Duration `toml:"header"`
	// Server is the time a backend has to start its response before the
	// client gets 504 (L7).
	Server Duration `toml:"server"`
}

// Limits is the [limits] table.
type Limits struct {
	// HeaderBytes is the largest request head accepted; larger ones get
	// 431 (L7).
	HeaderBytes int `toml:"header_bytes"`
	// BackendIdleConns caps the kept-alive connections lbctl holds to
	// each backend between requests (L7; per event loop with the loop
	// engine); 0 keeps none, so every request dials. Those unused for
	// timeouts.idle are closed.
	BackendIdleConns int `toml:"backend_idle_conns"`
}

// L4 is the [l4] table: the L4 front door's engine.
type L4 struct {
	// Loops is how many event loops serve the listener on Linux, each
	// accepting from it and relaying its own connections; 0 means one per
	// core the Go runtime uses (GOMAXPROCS).
	Loops int `toml:"loops"`
}

// L7 is the [l7] table: the L7 front door's engine.
type L7 struct {
	// Engine is how plain HTTP/1.1 connections are served on Linux:
	// "loop" (the default) serves them from event loops (one per core),
	// handing a request whose body did not all come with its head, a
	// chunked body, an upgrade or an Expect to the goroutine engine;
	// "goroutine" gives each its own goroutine. TLS and PROXY protocol listeners, and backends named by
	// host name, keep the goroutine engine.
	Engine string `toml:"engine"`
}

// Admin is the [admin] table: the listener of the runtime API that the
// operator commands (lbctl reload, lbctl backend, lbctl pin) talk to.
type Admin struct {
	// Listen is where the admin API accepts: "" turns it off, a host:port
	// listens on TCP, "unix:" followed by a path on a unix socket.
	// ParseAdminListen splits it into a network and an address.
	Listen string `toml:"listen"`
	// Token, when set, is the bearer token every admin request must carry.
	// It is required when Listen is a TCP address other than loopback:
	// anyone who can reach the API can drain every backend.
	Token string `toml:"token"`
}

// Log is the [log] table.
type Log struct {
	// Access is where the access log goes: "" (off), "stdout", or the
	// path of a file that lines are appended to. One JSON line per L7
	// request or L4 connection.
	Access string `toml:"access"`
}

// Cluster is the [cluster] table: instances that share their pins and
// admin states (see package cluster).
type Cluster struct {
	// Bind is the host:port (an IP address, or empty for every address)
	// this instance listens on for the other members, TCP and UDP; empty
	// turns the cluster off.
	Bind string `toml:"bind"`
	// Name is this member's name, unique in the cluster; empty means Bind.
	Name string `toml:"name"`
	// Join lists host:port addresses of other members, joined at start and
	// retried while they do not answer.
	Join []string `toml:"join"`
	// SecretKey is the base64 of a 16, 24 or 32 byte AES key that encrypts
	// and authenticates every message between members. It is required
	// unless Bind and every Join address are loopback.
	SecretKey string `toml:"secret_key"`
	// PushPullInterval is how often a member exchanges its whole state
	// with another, which repairs any lost broadcast and carries renewals.
	PushPullInterval Duration `toml:"push_pull_interval"`
	// GossipInterval is how often a member gossips, carrying the queued
	// broadcasts of pins and admin states.
	GossipInterval Duration `toml:"gossip_interval"`
	// QueueSize bounds the pins and re-pins waiting to be sent to the
	// other members; past it they are dropped and counted, and left to
	// the next push/pull.
	QueueSize int `toml:"queue_size"`
}

// Backend is one [[backend]] table.
type Backend struct {
	// ID names the backend in cookies and logs; unique, made of letters,
	// digits, '-', '_' and '.'.
	ID string `toml:"id"`
	// Address is the backend's host:port.
	Address string `toml:"address"`
	// Weight is the backend's share under roundrobin, 1..256. A file that
	// leaves it out gets 1.
	Weight int `toml:"weight"`
	// SendProxy, "v1" or "v2", makes every connection to the backend
	// start with a PROXY protocol header of that version naming the
	// client; empty sends none.
	SendProxy string `toml:"send_proxy"`
}

// Default returns the configuration that an empty file yields, apart from
// Backends, which has no default and is nil.
func Default() Config {
	return Config{
		Mode:        "l4",
		Listen:      "127.0.0.1:8080",
		ListenProxy: []string{},
		Balance: Balance{
			Policy:    "roundrobin",
			TableSize: defaultTableSize,
		},
		Affinity: Affinity{
			TTL:          Duration(time.Hour),
			Capacity:     65536,
			IPv4Prefix:   32,
			IPv6Prefix:   128,
			SaveInterval: Duration(30 * time.Second),
		},
		Cookie: Cookie{
			Name:     "SERVERID",
			Expires:  Duration(time.Hour),
			Path:     "/",
			HTTPOnly: true,
			SameSite: "lax",
		},
		Health: Health{
			Check:    "tcp",
			Path:     "/healthz",
			Interval: Duration(2 * time.Second),
			Timeout:  Duration(time.Second),
			Rise:     2,
			Fall:     3,
		},
		Timeouts: Timeouts{
			Connect: Duration(3 * time.Second),
			Idle:    Duration(60 * time.Second),
			Header:  Duration(10 * time.Second),
			Server:  Duration(60 * time.Second),
		},
		Limits: Limits{
			HeaderBytes:      65536,
			BackendIdleConns: DefaultBackendIdleConns,
		},
		L7: L7{Engine: "loop"},
		Cluster: Cluster{
			Join:             []string{},
			PushPullInterval: Duration(30 * time.Second),
			GossipInterval:   Duration(200 * time.Millisecond),
			QueueSize:        8192,
		},
		TLS: defaultTLS(),
	}
}

// defaultWeight is the weight of a [[backend]] that does not set one.
const defaultWeight = 1

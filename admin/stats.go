package admin

import (
	"net/http"
	"time"

	"github.com/lbctl/lbctl/backend"
)

// Stats is the answer of GET /api/stats: one snapshot of the running
// instance's counters, read from the atomics the data path keeps (no lock
// on the data path). Counters are totals since the start; a reader
// computes rates from two snapshots and their Time. It is also what
// /metrics is built from at each scrape.
type Stats struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Version is lbctl's version ("v1.2.3", or "(devel)").
	Version string `json:"version"`
	// Revision is the VCS revision lbctl was built from, "" when unknown.
	Revision string `json:"revision,omitempty"`
	// Mode is the front door: "l4" or "l7".
	Mode string `json:"mode"`
	// Listen is the address the front door accepts on.
	Listen string `json:"listen"`
	// Started is when the instance started, to the second.
	Started time.Time `json:"started"`
	// Front counts the front door's clients.
	Front FrontStats `json:"front"`
	// Backends are every configured backend, in config order.
	Backends []BackendStats `json:"backends"`
	// Affinity is the L4 affinity table; nil (omitted) in L7, where the
	// pins are cookies.
	Affinity *AffinityStats `json:"affinity,omitempty"`
	// Repins counts the clients moved off their pinned backend, by
	// reason: every name of backend.RepinReasons, zeros included.
	Repins map[string]uint64 `json:"repins"`
	// Reload counts the config reloads.
	Reload ReloadStats `json:"reload"`
	// StateSaveFailures counts the saves of the state file
	// ([affinity] state_file) that failed.
	StateSaveFailures uint64 `json:"state_save_failures"`
	// AccessLog is the access log's account; zeros when it is off.
	AccessLog AccessLogStats `json:"access_log"`
	// Cluster is this member's account of the cluster; nil (omitted)
	// without [cluster], and in the new process of an upgrade until it
	// has joined.
	Cluster *ClusterStats `json:"cluster,omitempty"`
}

// ClusterStats is this member's account of the cluster it shares pins and
// admin states with.
type ClusterStats struct {
	// Members is the number of live members, this one included.
	Members int `json:"members"`
	// PinsSent counts the local pins and re-pins sent to the others.
	PinsSent uint64 `json:"pins_sent"`
	// PinsDropped counts the local pins and re-pins not sent because the
	// outbox was full (the next push/pull carries them).
	PinsDropped uint64 `json:"pins_dropped"`
	// PinsReceived counts the pins received from the others, in their
	// messages and push/pulls.
	PinsReceived uint64 `json:"pins_received"`
	// PinsApplied counts the received pins that changed the table.
	PinsApplied uint64 `json:"pins_applied"`
	// AdminApplied counts the received admin states that changed a
	// backend.
	AdminApplied uint64 `json:"admin_applied"`
	// BadMessages counts the messages from the others that did not
	// decode.
	BadMessages uint64 `json:"bad_messages"`
}

// FrontStats counts the front door's clients.
type FrontStats struct {
	// ActiveConnections is the number of client connections open now.
	ActiveConnections int64 `json:"active_connections"`
	// ConnectionsTotal counts the client connections accepted.
	ConnectionsTotal uint64 `json:"connections_total"`
	// RequestsTotal counts the requests read (L7; 0 in L4).
	RequestsTotal uint64 `json:"requests_total"`
	// ProxyRefused counts the connections refused for their PROXY
	// protocol header (listen_proxy): from a peer not listed, or without
	// a valid header in time. They are counted in ConnectionsTotal too.
	ProxyRefused uint64 `json:"proxy_refused"`
	// LoopConnections counts the client connections each L4 event loop
	// accepted, by loop (l4.loops); omitted when no event loop serves
	// (L7, or L4's goroutine engine).
	LoopConnections []uint64 `json:"loop_connections,omitempty"`
}

// BackendStats is one backend: its status, and what the data path counted.
type BackendStats struct {
	BackendStatus
	// ConnectionsTotal counts the connections opened to the backend (in
	// L7, kept-alive connections carry many requests).
	ConnectionsTotal uint64 `json:"connections_total"`
	// RequestsTotal counts the L7 requests relayed by the backend (Served
	// in L7; 0 in L4).
	RequestsTotal uint64 `json:"requests_total"`
	// Responses counts the L7 requests sent to the backend by the class of
	// the status its client got.
	Responses ResponseClasses `json:"responses"`
	// ConnectFailuresTotal counts the failed attempts to connect.
	ConnectFailuresTotal uint64 `json:"connect_failures_total"`
	// ResponseHead is the histogram of the backend's response-head times
	// (L7); /metrics shows it, the JSON leaves it out.
	ResponseHead backend.Histogram `json:"-"`
}

// ResponseClasses counts responses by status class.
type ResponseClasses struct {
	C1xx uint64 `json:"1xx"`
	C2xx uint64 `json:"2xx"`
	C3xx uint64 `json:"3xx"`
	C4xx uint64 `json:"4xx"`
	C5xx uint64 `json:"5xx"`
}

// Classes returns the counts in class order, 1xx first.
func (r ResponseClasses) Classes() [5]uint64 {
	return [5]uint64{r.C1xx, r.C2xx, r.C3xx, r.C4xx, r.C5xx}
}

// ResponseClassesOf returns the counts c, 1xx first, as ResponseClasses.
func ResponseClassesOf(c [5]uint64) ResponseClasses {
	return ResponseClasses{C1xx: c[0], C2xx: c[1], C3xx: c[2], C4xx: c[3], C5xx: c[4]}
}

// AffinityStats is the L4 affinity table.
type AffinityStats struct {
	// Entries is the number of pins held now.
	Entries int `json:"entries"`
	// Capacity is the most pins the table holds.
	Capacity    int    `json:"capacity"`
	Hits        uint64 `json:"hits"`
	Misses      uint64 `json:"misses"`
	Repins      uint64 `json:"repins"`
	Evictions   uint64 `json:"evictions"`
	Expirations uint64 `json:"expirations"`
}

// ReloadStats counts the config reloads, through the API or SIGHUP.
type ReloadStats struct {
	ReloadsOK     uint64 `json:"reloads_ok"`
	ReloadsFailed uint64 `json:"reloads_failed"`
	// LastTime is when the last reload was tried; omitted before the
	// first.
	LastTime time.Time `json:"last_time,omitzero"`
	// LastOK reports whether the last reload was applied; true before the
	// first (the config the instance started with is in force).
	LastOK bool `json:"last_ok"`
	// LastSummary is the last reload's summary, or why it was refused.
	LastSummary string `json:"last_summary"`
}

// AccessLogStats is the access log's account.
type AccessLogStats struct {
	// Enabled reports whether [log] access is set.
	Enabled bool `json:"enabled"`
	// Written counts the lines handed to the output.
	Written uint64 `json:"written"`
	// Dropped counts the lines dropped because the log's buffer was full
	// (the output too slow) or the output failed.
	Dropped uint64 `json:"dropped"`
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	st := s.Instance.Stats()
	st.Backends = orEmpty(st.Backends)
	writeJSON(w, http.StatusOK, st)
}

package admin

import (
	"fmt"
	"net/http"
)

// The limits of GET /api/nat.
const (
	defaultNATLimit = 20
	maxNATLimit     = 256
)

// NATView is the answer of GET /api/nat: the client keys that carry the
// most users, as the front door counts them in bounded memory.
type NATView struct {
	// Mode is "l4" or "l7".
	Mode string `json:"mode"`
	// WindowSeconds is the stretch of time the counts cover.
	WindowSeconds float64 `json:"window_seconds"`
	// Sources are the busiest keys, biggest first: by sessions in L7, by
	// new connections in L4.
	Sources []NATSource `json:"sources"`
	// ByConnections are the keys with the most connections open now,
	// biggest first (L4; empty in L7).
	ByConnections []NATSource `json:"by_connections"`
	// TotalSessions estimates the distinct sessions (L7) or source ports
	// (L4) of every key in the window, followed or not.
	TotalSessions int `json:"total_sessions"`
	// IPAffinitySkew is the busiest backend's load over the mean if
	// clients were pinned by source key: an estimate in L7, what source
	// affinity does to the counted traffic in L4. 1 is even.
	IPAffinitySkew float64 `json:"ip_affinity_skew"`
	// IPAffinityShares is each available backend's share of the load
	// under that placement.
	IPAffinityShares []NATShare `json:"ip_affinity_shares"`
	// Followed is how many keys the sketch follows now, Capacity the most
	// it can.
	Followed int `json:"followed"`
	Capacity int `json:"capacity"`
	// ErrorBound says what the counts guarantee.
	ErrorBound string `json:"error_bound"`
}

// NATSource is one client key of the NAT view.
type NATSource struct {
	// Key is the source address masked with the affinity prefix
	// ("198.51.100.0/24", or "198.51.100.7" for a full address).
	Key string `json:"key"`
	// Sessions estimates the distinct sessions from the key in the window
	// (L7: connections that got a new persistence cookie; L4: source
	// ports), within SessionsError.
	Sessions      int `json:"sessions"`
	SessionsError int `json:"sessions_error"`
	// Share is Sessions over the view's TotalSessions.
	Share float64 `json:"share"`
	// Connections is how many connections from the key are open now (L4).
	Connections int64 `json:"connections"`
	// ConnRate is the key's new connections (L4) or new sessions (L7) per
	// second over the window.
	ConnRate float64 `json:"conn_rate"`
	// NAT says the key looks like many users: more sessions, open
	// connections or source ports than one browser makes.
	NAT bool `json:"nat"`
}

// NATShare is one backend's share of the load in the skew estimate.
type NATShare struct {
	Backend string  `json:"backend"`
	Share   float64 `json:"share"`
}

func (s *Server) nat(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "limit" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q: use limit", name))
			return
		}
	}
	limit, ok := queryLimit(w, q, defaultNATLimit, maxNATLimit)
	if !ok {
		return
	}
	v := s.Instance.NAT(limit)
	v.Sources = orEmpty(v.Sources)
	v.ByConnections = orEmpty(v.ByConnections)
	v.IPAffinityShares = orEmpty(v.IPAffinityShares)
	writeJSON(w, http.StatusOK, v)
}

package admin

import "net/http"

// ClusterStatus is the answer of GET /api/cluster: the cluster as the
// instance asked sees it.
type ClusterStatus struct {
	// Name is this member's name.
	Name    string          `json:"name"`
	Members []ClusterMember `json:"members"`
	// PinsSent counts local pins and re-pins queued for the others;
	// PinsDropped those dropped because a queue was full (the next
	// push/pull carries them); PinsApplied the pins from the others that
	// changed this instance's table.
	PinsSent    uint64 `json:"pins_sent"`
	PinsDropped uint64 `json:"pins_dropped"`
	PinsApplied uint64 `json:"pins_applied"`
}

// ClusterMember is one member as ClusterStatus lists it.
type ClusterMember struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is "alive" or "suspect" (of having failed); members found
	// dead, or that left, are not listed.
	State string `json:"state"`
}

// ClusterInstance is an Instance that can be a member of a cluster.
// GET /api/cluster answers 404 for an Instance that is not one.
type ClusterInstance interface {
	// ClusterStatus returns the cluster as this instance sees it; ok is
	// false when it is in none.
	ClusterStatus() (status ClusterStatus, ok bool)
}

func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) {
	ci, ok := s.Instance.(ClusterInstance)
	if !ok {
		writeError(w, http.StatusNotFound, "this instance is in no cluster: [cluster] bind is not set")
		return
	}
	st, ok := ci.ClusterStatus()
	if !ok {
		writeError(w, http.StatusNotFound, "this instance is in no cluster: [cluster] bind is not set")
		return
	}
	st.Members = orEmpty(st.Members)
	writeJSON(w, http.StatusOK, st)
}

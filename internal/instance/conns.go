package instance

// closeConns closes every open connection to backend id, in whichever
// front door runs.
func (in *Instance) closeConns(id string) {
	if in.l7 != nil {
		in.l7.CloseConns(id)
		return
	}
	in.l4.CloseConns(id)
}

// pinnedCounts returns how many clients each backend keeps: its pins in
// the affinity table (L4), or the distinct clients that came with a cookie
// it honours in the last minute or two (L7, see l7.Proxy.Pinned).
func (in *Instance) pinnedCounts() map[string]int {
	if in.table != nil {
		return in.table.CountByBackend()
	}
	all := in.parts.Backends.Registry().All()
	out := make(map[string]int, len(all))
	for _, b := range all {
		out[b.ID] = in.l7.Pinned(b.ID)
	}
	return out
}

// pinnedOf is pinnedCounts for one backend.
func (in *Instance) pinnedOf(id string) int {
	if in.table != nil {
		return in.table.CountByBackend()[id]
	}
	return in.l7.Pinned(id)
}

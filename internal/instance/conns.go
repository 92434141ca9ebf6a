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

//go:build !linux

package l7

// Read reads into p through the connection's own Read.
func (u *upIO) Read(p []byte) (int, error) { return u.conn.Read(p) }

// Write writes p through the connection's own Write, after the look at a
// connection from the pool (see check).
func (u *upIO) Write(p []byte) (int, error) {
	if u.stale() {
		return 0, errIdleStale
	}
	return u.conn.Write(p)
}

// send is Write: the read that follows waits for the answer as any read
// does.
func (u *upIO) send(p []byte) (int, error) { return u.Write(p) }

func (u *upIO) readOnce(uintptr) bool     { return true }
func (u *upIO) writeAll(uintptr) bool     { return true }
func (u *upIO) sendThenWait(uintptr) bool { return true }

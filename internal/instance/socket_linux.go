package instance

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// id returns the socket's inode number, which names it in /proc, or 0.
func (d socketDup) id() uint64 {
	if !d.ok {
		return 0
	}
	var st unix.Stat_t
	if unix.Fstat(d.fd, &st) != nil {
		return 0
	}
	return st.Ino
}

// waitSocketClosed waits, for up to timeout, until no descriptor of this
// process refers to the socket with inode id, as /proc/self/fd shows it.
func waitSocketClosed(id uint64, timeout time.Duration) {
	if id == 0 {
		return
	}
	name := "socket:[" + strconv.FormatUint(id, 10) + "]"
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && holdsSocket(name) {
		time.Sleep(time.Millisecond)
	}
}

// holdsSocket reports whether a descriptor of this process links to name.
func holdsSocket(name string) bool {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && link == name {
			return true
		}
	}
	return false
}

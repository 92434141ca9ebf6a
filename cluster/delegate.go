package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/memberlist"
)

// delegate is the Node as memberlist's Delegate.
type delegate Node

// NodeMeta is empty: members need to know nothing of each other beyond
// their address.
func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg applies a message from another member: pins it sent or an
// admin state it broadcast. A message holds a
// few dozen records at most, each merged under one short shard lock, so
// it is applied here rather than handed to another goroutine.
func (d *delegate) NotifyMsg(msg []byte) { (*Node)(d).receive(msg) }

// GetBroadcasts hands memberlist the queued broadcasts that fit a packet.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState is the whole state sent at a join or a push/pull.
func (d *delegate) LocalState(join bool) []byte { return (*Node)(d).localState() }

// MergeRemoteState applies another member's whole state.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	(*Node)(d).receive(buf)
}

// events is the Node as memberlist's EventDelegate: it logs membership
// changes.
type events Node

// NotifyJoin logs a member that joins, or comes back from the dead, and
// asks for a whole-state exchange with it (see rejoinEvery).
func (e *events) NotifyJoin(m *memberlist.Node) {
	e.log.Info("cluster member joined", "member", m.Name, "address", m.Address())
	if m.Name == e.name {
		return
	}
	select {
	case e.returned <- m.Address():
	default: // exchanges are queued already; the periodic one catches up
	}
}

func (e *events) NotifyLeave(m *memberlist.Node) {
	e.log.Info("cluster member left", "member", m.Name, "address", m.Address(), "state", stateName(m.State))
}

func (e *events) NotifyUpdate(m *memberlist.Node) {}

// adminChange is a queued admin state of one backend, named after it so
// that a newer state replaces an older one still queued.
type adminChange struct {
	msg []byte
	id  string
}

func (a *adminChange) Message() []byte { return a.msg }
func (a *adminChange) Finished()       {}
func (a *adminChange) Name() string    { return "admin/" + a.id }

// Invalidates reports whether a replaces other, an older state of the same
// backend.
func (a *adminChange) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*adminChange)
	return ok && o.id == a.id
}

var _ memberlist.NamedBroadcast = (*adminChange)(nil)

// newMemberlistLogger returns a logger for memberlist that passes its
// lines to log at the level each names ("[WARN] memberlist: ...").
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{l}, "", 0)
}

type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	for prefix, lv := range map[string]slog.Level{"[ERR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[INFO]": slog.LevelDebug} {
		if strings.HasPrefix(line, prefix) {
			level = lv
			line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	w.l.Log(context.Background(), level, line, "source", "memberlist")
	return len(p), nil
}

package l4

import (
	"time"

	"github.com/lbctl/lbctl/internal/accesslog"
)

// logSession writes the access log record of s, which is ending. The time
// is the loop's, read once per wake: no system call per connection.
func (l *eventLoop) logSession(s *session) {
	if l.p.AccessLog == nil {
		return
	}
	r := accesslog.Record{
		L4: true, Time: l.core.Time(), Client: s.addr,
		Duration: time.Duration(l.core.Now() - s.start),
		BytesIn:  s.up.written, BytesOut: s.down.written,
	}
	if s.b != nil && s.relaying {
		r.Backend = s.b.ID
	}
	l.p.AccessLog.Write(&r)
}

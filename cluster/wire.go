package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// The messages instances exchange, both the broadcasts of changes and the
// whole state sent at a push/pull, are one format, integers big endian:
//
//	message: version byte (1), then records until the end
//	pin:     kind byte 'p', key hi uint64, key lo uint64, stamp int64,
//	         last use int64 (unix nanoseconds), id length uint8, id
//	         (no id: the pin was forgotten)
//	admin:   kind byte 'a', id length uint8, id, state byte, drain
//	         deadline int64 (unix nanoseconds, 0 for none), stamp int64
//
// A message that does not decode is dropped from its first bad record on:
// the records before it were whole and are applied. Memberlist's
// encryption (secret_key) authenticates every message between instances,
// so a bad one is a bug or a version mismatch, not an attack to resist.
const (
	wireVersion = 1
	kindPin     = 'p'
	kindAdmin   = 'a'
	pinFixed    = 1 + 8 + 8 + 8 + 8 + 1 // a pin record without its id
	adminFixed  = 1 + 1 + 1 + 8 + 8     // an admin record without its id
)

// errBadMessage is wrapped by decode's errors.
var errBadMessage = errors.New("bad cluster message")

// adminState is one backend's replicated admin state.
type adminState struct {
	state backend.AdminState
	until int64 // unix nanoseconds, 0 for none
	stamp int64
}

// beats reports whether a beats b: the later stamp, then the greater state
// and deadline, so that every instance picks the same one.
func (a adminState) beats(b adminState) bool {
	switch {
	case a.stamp != b.stamp:
		return a.stamp > b.stamp
	case a.state != b.state:
		return a.state > b.state
	}
	return a.until > b.until
}

func (a adminState) deadline() time.Time {
	if a.until == 0 {
		return time.Time{}
	}
	return time.Unix(0, a.until)
}

func appendPin(b []byte, p affinity.Stamped) []byte {
	hi, lo := p.Key.Halves()
	b = append(b, kindPin)
	b = binary.BigEndian.AppendUint64(b, hi)
	b = binary.BigEndian.AppendUint64(b, lo)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Stamp))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Used))
	b = append(b, byte(len(p.ID)))
	return append(b, p.ID...)
}

func appendAdmin(b []byte, id string, a adminState) []byte {
	b = append(b, kindAdmin, byte(len(id)))
	b = append(b, id...)
	b = append(b, byte(a.state))
	b = binary.BigEndian.AppendUint64(b, uint64(a.until))
	return binary.BigEndian.AppendUint64(b, uint64(a.stamp))
}

// pinSize is the size of p's record.
func pinSize(p affinity.Stamped) int { return pinFixed + len(p.ID) }

// decode calls pin and admin for each record of msg in order. Ids are
// copied out of msg, which memberlist may reuse after the call.
func decode(msg []byte, pin func(affinity.Stamped), admin func(id string, a adminState)) error {
	if len(msg) == 0 {
		return fmt.Errorf("%w: empty", errBadMessage)
	}
	if msg[0] != wireVersion {
		return fmt.Errorf("%w: version %d, this lbctl speaks %d", errBadMessage, msg[0], wireVersion)
	}
	b := msg[1:]
	for len(b) > 0 {
		switch b[0] {
		case kindPin:
			if len(b) < pinFixed || len(b) < pinFixed+int(b[pinFixed-1]) {
				return fmt.Errorf("%w: truncated pin record", errBadMessage)
			}
			n := pinFixed + int(b[pinFixed-1])
			pin(affinity.Stamped{
				Key:   affinity.KeyFrom(binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:])),
				Stamp: int64(binary.BigEndian.Uint64(b[17:])),
				Used:  int64(binary.BigEndian.Uint64(b[25:])),
				ID:    string(b[pinFixed:n]),
			})
			b = b[n:]
		case kindAdmin:
			if len(b) < 2 || len(b) < adminFixed+int(b[1]) || b[1] == 0 {
				return fmt.Errorf("%w: truncated admin record", errBadMessage)
			}
			n := 2 + int(b[1])
			id := string(b[2:n])
			a := adminState{
				state: backend.AdminState(b[n]),
				until: int64(binary.BigEndian.Uint64(b[n+1:])),
				stamp: int64(binary.BigEndian.Uint64(b[n+9:])),
			}
			if a.state > backend.Maint {
				return fmt.Errorf("%w: backend %q in unknown admin state %d", errBadMessage, id, b[n])
			}
			admin(id, a)
			b = b[n+17:]
		default:
			return fmt.Errorf("%w: unknown record kind %d", errBadMessage, b[0])
		}
	}
	return nil
}

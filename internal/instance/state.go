package instance

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lbctl/lbctl/affinity"
	"github.com/lbctl/lbctl/backend"
)

// The state file ([affinity] state_file) keeps what a restart would
// otherwise lose: the backends' admin states and, in L4, the pins. It is
// two sections, each self-checking: the admin states (below), then the
// affinity table's snapshot (affinity.Table.Save), absent in L7. The admin
// section comes first and is small, so that a damaged table never costs the
// drains and maintenances an operator set.
//
// Admin section, integers big endian:
//
//	magic "LBADMIN\n" (8 bytes), version uint16 (1), count uint32,
//	count records of: id length uint8, id, state byte, drain deadline
//	int64 (unix nanoseconds, 0 for none),
//	CRC-32C uint32 of every byte before it
const (
	adminMagic   = "LBADMIN\n"
	adminVersion = 1
	// maxSavedStates bounds the count Load believes before reading the
	// records, so that a forged count allocates nothing large.
	maxSavedStates = 1 << 16
)

// errBadState is wrapped by the errors about a state file's content.
var errBadState = errors.New("bad state file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// savedState is one backend's admin state read from a state file.
type savedState struct {
	id    string
	state backend.AdminState
	until time.Time
}

// writeAdmin writes the admin section for backends to w.
func writeAdmin(w io.Writer, backends []*backend.Backend) error {
	buf := append([]byte(adminMagic), 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(buf[len(adminMagic):], adminVersion)
	binary.BigEndian.PutUint32(buf[len(adminMagic)+2:], uint32(len(backends)))
	for _, b := range backends {
		state, until := b.Admin()
		var nanos int64
		if !until.IsZero() {
			nanos = until.UnixNano()
		}
		buf = append(buf, byte(len(b.ID)))
		buf = append(buf, b.ID...)
		buf = append(buf, byte(state))
		buf = binary.BigEndian.AppendUint64(buf, uint64(nanos))
	}
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	_, err := w.Write(buf)
	return err
}

// readAdmin reads and checks an admin section from br, reading nothing
// past it.
func readAdmin(br *bufio.Reader) ([]savedState, error) {
	crc := crc32.New(castagnoli)
	r := io.TeeReader(br, crc)
	short := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated", errBadState)
		}
		return err
	}
	var head [len(adminMagic) + 6]byte
	n, err := io.ReadFull(r, head[:])
	if n < len(adminMagic) || string(head[:len(adminMagic)]) != adminMagic {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: not an lbctl state file", errBadState)
	}
	if err != nil {
		return nil, short(err)
	}
	if v := binary.BigEndian.Uint16(head[len(adminMagic):]); v != adminVersion {
		return nil, fmt.Errorf("%w: version %d, this lbctl reads version %d", errBadState, v, adminVersion)
	}
	count := binary.BigEndian.Uint32(head[len(adminMagic)+2:])
	if count > maxSavedStates {
		return nil, fmt.Errorf("%w: %d backends", errBadState, count)
	}
	var states []savedState
	var rec [9]byte
	for range count {
		if _, err := io.ReadFull(r, rec[:1]); err != nil {
			return nil, short(err)
		}
		id := make([]byte, rec[0])
		if _, err := io.ReadFull(r, id); err != nil {
			return nil, short(err)
		}
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return nil, short(err)
		}
		st := savedState{id: string(id), state: backend.AdminState(rec[0])}
		if st.state > backend.Maint {
			return nil, fmt.Errorf("%w: backend %q in unknown state %d", errBadState, st.id, rec[0])
		}
		if n := int64(binary.BigEndian.Uint64(rec[1:])); n != 0 {
			st.until = time.Unix(0, n)
		}
		states = append(states, st)
	}
	want := crc.Sum32()
	if _, err := io.ReadFull(br, rec[:4]); err != nil {
		return nil, short(err)
	}
	if binary.BigEndian.Uint32(rec[:4]) != want {
		return nil, fmt.Errorf("%w: checksum mismatch", errBadState)
	}
	return states, nil
}

// restoreState loads the state file, if one is configured, into the
// instance: the admin states of backends still configured, then in L4 the
// pins to backends still configured that have time left. A missing file
// is a first start; an unreadable, foreign or damaged one is logged and
// ignored, since a lost table must never keep lbctl from serving. A
// damaged table section still leaves the admin states restored.
func (in *Instance) restoreState(path string) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		in.log.Info("no state file yet; starting with no saved pins or admin states", "file", path)
		return
	}
	if err != nil {
		in.log.Warn("state file ignored", "file", path, "error", err)
		return
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	states, err := readAdmin(br)
	if err != nil {
		in.log.Warn("state file ignored", "file", path, "error", err)
		return
	}
	restored := in.applyStates(states)
	pins := 0
	if in.table != nil {
		if _, err := br.Peek(1); err == nil {
			pins, err = in.table.Load(br, in.configured)
			if err != nil {
				in.log.Warn("saved pins ignored", "file", path, "error", err)
			}
		}
	}
	in.log.Info("state restored", "file", path, "admin_states", restored, "pins", pins)
}

// configured reports whether backend id is in the live pool: pins to any
// other are dropped when restored.
func (in *Instance) configured(id string) bool {
	return in.parts.Backends.Registry().Get(id) != nil
}

// applyStates sets the saved admin states of the backends still
// configured, and returns how many it set.
func (in *Instance) applyStates(states []savedState) int {
	reg := in.parts.Backends.Registry()
	restored := 0
	for _, st := range states {
		b := reg.Get(st.id)
		if b == nil {
			continue
		}
		b.SetAdmin(st.state, st.until)
		in.watchDrain(b, st.until)
		restored++
	}
	return restored
}

// An upgrade hands the state over in two parts on one stream (see Run),
// each laid out as: a byte saying whether pins follow (1) or not (0), the
// instant the remaining TTLs are counted from (int64 unix nanoseconds, big
// endian), the admin section as the state file has it, and then, with 1,
// an affinity snapshot (affinity.Table.SaveSince). The byte lets the two
// processes differ in mode, which an upgrade may change as a restart may;
// the instant lets the new process give each pin the very expiry and last
// use it has in the old one (both read one clock), which the second part's
// merge compares.

// writeHandover writes one part of the hand-over to w: every admin state
// and the pins last used at or after since (every pin for the zero since).
func (in *Instance) writeHandover(w io.Writer, since time.Time) (pins int, err error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	hasPins := byte(0)
	if in.table != nil {
		hasPins = 1
	}
	now := time.Now()
	bw.WriteByte(hasPins)
	bw.Write(binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())))
	if err := writeAdmin(bw, in.parts.Backends.Registry().All()); err != nil {
		return 0, err
	}
	if in.table != nil {
		if pins, err = in.table.SaveSince(bw, since, now); err != nil {
			return 0, err
		}
	}
	return pins, bw.Flush()
}

// readHandover reads one part of the hand-over from br and applies it: the
// admin states of the backends still configured, and the pins to them,
// merged (affinity.Table.Merge: a pin replaces a live one used before it).
// Pins sent to a process without a table (L7) are read and dropped.
func (in *Instance) readHandover(br *bufio.Reader) (states, pins int, err error) {
	var head [9]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return 0, 0, fmt.Errorf("read hand-over: %w", err)
	}
	hasPins := head[0]
	if hasPins > 1 {
		return 0, 0, fmt.Errorf("%w: hand-over part begins with %d", errBadState, hasPins)
	}
	savedAt := time.Unix(0, int64(binary.BigEndian.Uint64(head[1:])))
	saved, err := readAdmin(br)
	if err != nil {
		return 0, 0, fmt.Errorf("read hand-over: %w", err)
	}
	states = in.applyStates(saved)
	if hasPins == 0 {
		return states, 0, nil
	}
	table := in.table
	if table == nil {
		table = affinity.New(affinity.Options{})
		defer table.Close()
	}
	if pins, err = table.MergeSnapshot(br, in.configured, savedAt); err != nil {
		return states, 0, fmt.Errorf("read hand-over: %w", err)
	}
	if in.table == nil {
		pins = 0
	}
	return states, pins, nil
}

// SaveState writes the admin states and, in L4, the pins to the state
// file, if one is configured: into a temporary file in the same folder,
// synced to disk, then renamed over the old one, so that a crash at any
// point leaves either the old file or the new one, never a part. Failures
// are logged and returned; serving goes on regardless. Saves are
// serialized.
func (in *Instance) SaveState() error {
	path := in.stateFile
	if path == "" {
		return nil
	}
	in.saving.Lock()
	defer in.saving.Unlock()
	pins, err := in.writeState(path)
	if err != nil {
		in.obs.saveFailures.Add(1)
		in.log.Warn("state file not saved; the previous one is kept", "file", path, "error", err)
		return err
	}
	in.log.Debug("state saved", "file", path, "pins", pins)
	return nil
}

func (in *Instance) writeState(path string) (pins int, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	if err = writeAdmin(bw, in.parts.Backends.Registry().All()); err != nil {
		return 0, err
	}
	if in.table != nil {
		if pins, err = in.table.Save(bw); err != nil {
			return 0, err
		}
	}
	if err = bw.Flush(); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return 0, err
	}
	// The rename itself is durable once the folder is synced; a failure
	// here loses at most this save, so it is not one.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return pins, nil
}

// saveEvery saves the state every interval until stop is closed.
func (in *Instance) saveEvery(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			in.SaveState()
		}
	}
}

// stopSaving stops the periodic saves and waits for one in progress.
func (in *Instance) stopSaving() {
	in.stopSaver.Do(func() { close(in.saverStop) })
	in.saver.Wait()
}

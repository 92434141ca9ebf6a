package l7

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2 to clients is lbctl's own server side of the protocol over
// golang.org/x/net/http2's Framer and hpack decoder (the header blocks
// lbctl sends need no encoder's state: see h2_hpack.go). One goroutine
// per connection (the one that accepted it) reads frames and keeps the
// protocol's state; each stream's exchange with a backend runs in a
// goroutine of its own (reused for the next stream waiting, if any). Frames
// are appended under one lock and a writing goroutine per connection sends
// all that have gathered in one write; there is no queue beyond
// h2MaxPending bytes, which writers wait for, so what a connection holds is
// bounded by its streams and their windows. A stream is in h2_stream.go,
// its header blocks and fields in h2_fields.go and h2_hpack.go, its
// exchange in h2.go.

// Limits of one HTTP/2 connection.
const (
	// h2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS: the streams one
	// client connection may have open at once, and the exchanges it may
	// have running (a stream the client reset may still be finishing its
	// exchange; streams beyond wait for one to end).
	h2MaxStreams = 100
	// h2MaxWaiting is how many opened streams may wait for an exchange to
	// end before the client is taken for one that resets streams to open
	// more (CVE-2023-44487) and the connection is closed.
	h2MaxWaiting = 4 * h2MaxStreams
	// h2StreamWindow is the receive window of a stream (our
	// SETTINGS_INITIAL_WINDOW_SIZE), and the size of the buffer its
	// request body flows through: a stream holds at most this much of a
	// body.
	h2StreamWindow = 128 << 10
	// h2ConnWindow is the connection's receive window. Every stream's
	// buffer bounds what it holds, so the connection's window is given
	// back as DATA arrives.
	h2ConnWindow = 1 << 20
	// h2FrameSize is the largest frame read (the default
	// SETTINGS_MAX_FRAME_SIZE, which lbctl does not raise).
	h2FrameSize = 16 << 10
	// h2ResetBurst and h2ResetRate bound the streams a client may have
	// reset, by RST_STREAM or by the stream errors it provokes: a burst
	// of h2ResetBurst, then h2ResetRate a second. A client beyond gets
	// GOAWAY ENHANCE_YOUR_CALM (the rapid reset attack, CVE-2023-44487,
	// and its MadeYouReset variant).
	h2ResetBurst = 200
	h2ResetRate  = 100
	// h2MaxBlockFrames bounds the frames of one header block, so that a
	// flood of empty CONTINUATION frames (CVE-2024-27316) ends too.
	h2MaxBlockFrames = 128
	// h2CloseLinger is how long a connection that sent GOAWAY keeps
	// reading after its last stream, so that the client reads the end
	// of its answers before the connection closes under it.
	h2CloseLinger = time.Second
	// h2GoAwayRound bounds the round trip a graceful close waits for
	// between its two GOAWAY frames (see goAway) when the client does
	// not acknowledge the PING that measures it.
	h2GoAwayRound = time.Second
)

// h2GoAwayPing is the payload of the PING that goAway sends after its
// first GOAWAY: its acknowledgement, and no other PING's, says that the
// client has read that GOAWAY.
var h2GoAwayPing = [8]byte{'l', 'b', 'c', 't', 'l', 'b', 'y', 'e'}

// errH2Gone is the error of a stream whose client reset it or whose
// connection ended.
var errH2Gone = errors.New("HTTP/2 stream reset or connection closed")

// h2conn is one HTTP/2 client connection.
type h2conn struct {
	cl  *h2client
	cfg *settings
	nc  net.Conn // the TLS connection
	fr  *http2.Framer
	dec *hpack.Decoder

	// Only the reading goroutine touches these.
	block       h2block   // the header block being decoded
	resetTokens float64   // see h2ResetBurst
	resetAt     time.Time // when resetTokens was last topped up
	recvUnacked int       // DATA bytes received and not yet given back to the connection's window
	lastID      uint32    // the highest stream id the client opened; written with mu held

	mu          sync.Mutex // guards what follows and every stream's state
	sendable    sync.Cond  // on mu: send windows grew, a stream was reset, or the connection ended
	streams     map[uint32]*h2stream
	workers     int            // goroutines running exchanges
	waiting     []*h2stream    // opened streams waiting for a worker
	sendWin     int64          // the connection's send window
	peerWin     int64          // the client's SETTINGS_INITIAL_WINDOW_SIZE; the reading goroutine writes it
	peerMax     int            // the client's SETTINGS_MAX_FRAME_SIZE; written with wmu held too, so read under either
	draining    bool           // the first GOAWAY of a graceful close sent (see goAway)
	goingAway   bool           // the GOAWAY naming goAwayID sent: no stream above it is served
	goAwayID    uint32         // the last stream id that GOAWAY named
	goAwayRound *time.Timer    // while draining, the bound on the wait for the PING's ACK
	roundDone   sync.WaitGroup // goAwayRound's function, from when it is set until it has run or been stopped
	closing     bool           // the connection ends: nothing is sent any more
	idleFired   bool           // the idle timer cut the read in progress
	idle        *time.Timer    // nil without an idle timeout; see stopIdle
	workersDone sync.WaitGroup

	wmu        sync.Mutex // guards the writing half of fr and what follows
	sizeUpdate bool       // a table size update is owed (see h2_hpack.go)
	pend       []byte     // frames written, for the writing goroutine to send
	spare      []byte     // the buffer it sent last, for reuse
	wake       sync.Cond  // on wmu: frames are pending, or the writer is to stop
	room       sync.Cond  // on wmu: the writing goroutine took the pending frames
	wstop      bool       // the connection ends: the writer sends what is pending and stops
	wfail      error      // the first write error: the connection is done
	wdone      chan struct{}
}

// h2MaxPending is how many bytes of frames may wait for the writing
// goroutine before those who write more wait for it.
const h2MaxPending = 64 << 10

// h2pending is the Framer's writer: frames are appended to c.pend, with
// c.wmu held, for the writing goroutine.
type h2pending struct{ c *h2conn }

func (w h2pending) Write(p []byte) (int, error) {
	c := w.c
	if c.wfail != nil {
		return 0, c.wfail
	}
	c.pend = append(c.pend, p...)
	return len(p), nil
}

// writeLoop is the connection's writing goroutine: it sends the frames
// pending, all that have gathered while it sent the last batch in one go,
// so that the responses of several streams share TLS records and system
// calls. It stops once told to and nothing is pending, or a write fails.
func (c *h2conn) writeLoop() {
	defer close(c.wdone)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for {
		for len(c.pend) == 0 && !c.wstop {
			c.wake.Wait()
		}
		if len(c.pend) == 0 {
			return
		}
		if !c.wstop {
			// The exchanges that are ready to run (their backends'
			// answers came together) add their frames first, so that
			// one write carries them all.
			c.wmu.Unlock()
			runtime.Gosched()
			c.wmu.Lock()
		}
		batch := c.pend
		c.pend = c.spare[:0]
		stopping := c.wstop
		c.wmu.Unlock()
		// A client that stops reading is cut off after timeouts.idle,
		// or a second once the connection ends.
		switch {
		case stopping:
			c.nc.SetWriteDeadline(time.Now().Add(h2CloseLinger))
		case c.cfg.idle > 0:
			c.nc.SetWriteDeadline(time.Now().Add(c.cfg.idle))
		}
		_, err := c.nc.Write(batch)
		c.wmu.Lock()
		c.spare = batch[:0]
		c.room.Broadcast()
		if err != nil {
			c.wfail = fmt.Errorf("writing frames: %w", err)
			// The reading goroutine learns of it from the closed
			// connection.
			c.nc.Close()
			return
		}
	}
}

// start readies the connection and queues lbctl's SETTINGS, its side of
// the connection preface (RFC 9113 3.4), which may go before the client's;
// from then on goAway may be called. serve must follow.
func (c *h2conn) start() {
	c.sendable.L = &c.mu
	c.streams = make(map[uint32]*h2stream)
	c.peerWin, c.peerMax, c.sendWin = 65535, 16384, 65535
	c.wake.L, c.room.L = &c.wmu, &c.wmu
	c.wdone = make(chan struct{})
	go c.writeLoop()
	c.fr = http2.NewFramer(h2pending{c}, c.nc)
	c.fr.SetMaxReadFrameSize(h2FrameSize)
	c.dec = hpack.NewDecoder(4096, c.emit)
	c.dec.SetMaxStringLength(c.cfg.maxHead)
	c.resetTokens, c.resetAt = h2ResetBurst, time.Now()
	if c.cfg.idle > 0 {
		// Without an idle timeout there is no timer at all: one made
		// for a zero duration may fire before it is stopped, and cut a
		// connection that has just begun.
		c.idle = time.AfterFunc(c.cfg.idle, c.idleTimeout)
	}
	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.cfg.maxHead)},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	c.flushLocked()
	c.wmu.Unlock()
}

// serve speaks HTTP/2 on the connection that start readied until it ends,
// and returns once every stream's exchange and the writing goroutine have.
func (c *h2conn) serve() {
	defer c.teardown()
	// The client's preface first, within the header timeout.
	if c.cfg.header > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.cfg.header))
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.nc, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	c.nc.SetReadDeadline(time.Time{})

	first := true
	for {
		f, err := c.fr.ReadFrame()
		var se http2.StreamError
		if err != nil && errors.As(err, &se) {
			// A frame that breaks a stream's rules alone (RFC 9113
			// 5.4.2).
			if err := c.streamError(se.StreamID, se.Code); err != nil {
				c.fail(http2.ErrCodeEnhanceYourCalm, err.Error())
				return
			}
			continue
		}
		if err != nil {
			if c.readFailed(err) {
				continue
			}
			return
		}
		if first {
			// The preface ends with the client's SETTINGS (RFC 9113 3.4).
			if s, ok := f.(*http2.SettingsFrame); !ok || s.IsAck() {
				c.fail(http2.ErrCodeProtocol, "the preface's SETTINGS missing")
				return
			}
			first = false
		}
		if err := c.handle(f); err != nil {
			var ce h2ConnError
			if errors.As(err, &ce) {
				c.fail(ce.code, ce.reason)
			}
			return
		}
	}
}

// h2ConnError is a connection error (RFC 9113 5.4.1): the connection
// gets GOAWAY with code and closes.
type h2ConnError struct {
	code   http2.ErrCode
	reason string
}

func (e h2ConnError) Error() string {
	return "HTTP/2 connection error " + e.code.String() + ": " + e.reason
}

func connErr(code http2.ErrCode, reason string) error { return h2ConnError{code, reason} }

// readFailed acts on ReadFrame's failure with err, and reports whether
// the connection reads on: it does after the idle timeout cut the read,
// which says GOAWAY and then lingers like any connection that did, so
// that a request the client sent meanwhile is refused in a frame it reads
// rather than lost to a reset of the connection.
func (c *h2conn) readFailed(err error) bool {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		c.fail(http2.ErrCode(ce), "frame: "+c.frameDetail())
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.mu.Lock()
		idle := c.idleFired
		c.idleFired = false
		if idle && !c.goingAway {
			// The deadline that cut the read is lifted: goAway sets
			// the linger's, or the end of the last stream does.
			c.nc.SetReadDeadline(time.Time{})
		}
		c.mu.Unlock()
		if idle {
			c.goAway()
			return true
		}
	}
	return false
}

func (c *h2conn) frameDetail() string {
	if d := c.fr.ErrorDetail(); d != nil {
		return d.Error()
	}
	return "malformed"
}

// fail answers a connection error: GOAWAY with code, at once and in one
// step, then the end.
func (c *h2conn) fail(code http2.ErrCode, reason string) {
	c.cl.p.logger().Debug("HTTP/2 connection error", "client", c.cl.addr, "code", code.String(), "reason", reason)
	c.mu.Lock()
	last := c.lastID
	c.goingAway, c.goAwayID = true, last
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
}

// teardown ends every stream, waits for their exchanges, and closes the
// connection.
func (c *h2conn) teardown() {
	c.stopIdle()
	c.mu.Lock()
	c.closing = true
	c.stopRoundLocked()
	for _, s := range c.streams {
		s.resetLocked()
	}
	for _, s := range c.waiting {
		s.resetLocked()
	}
	c.sendable.Broadcast()
	c.mu.Unlock()
	// The writer sends what is pending (a GOAWAY, say) and stops; an
	// exchange waiting for room is let go.
	c.wmu.Lock()
	c.wstop = true
	c.wake.Signal()
	c.room.Broadcast()
	c.wmu.Unlock()
	c.workersDone.Wait()
	c.roundDone.Wait()
	<-c.wdone
	for _, s := range c.waiting {
		s.recycle()
	}
	c.waiting = nil
	c.nc.Close()
}

// idleTimeout runs when the connection has been without streams for
// timeouts.idle: it cuts the read in progress, which then says goodbye.
func (c *h2conn) idleTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.streams) == 0 && c.workers == 0 && !c.closing && !c.draining && !c.goingAway {
		c.idleFired = true
		c.nc.SetReadDeadline(time.Now())
	}
}

// goAway closes the connection gracefully, in the two steps of RFC 9113
// 6.8. The first GOAWAY names stream 2^31-1, so that a request the client
// sends as it goes is still served, and a PING follows it. Once the
// client has acknowledged that PING, or h2GoAwayRound (h2front.roundOf)
// later when it does not, secondGoAway names the last stream opened: the
// client has read the first GOAWAY by then, so no request of its is in
// flight that would be lost to the second. Streams opened run to their end; then the
// connection closes (see quietLocked).
func (c *h2conn) goAway() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.draining || c.goingAway || c.closing {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	c.fr.WritePing(false, h2GoAwayPing)
	c.flushLocked()
	// The bound is set once the frames are written (and before they
	// can go out, wmu being held): the second GOAWAY never precedes the
	// first.
	c.mu.Lock()
	if !c.goingAway && !c.closing {
		c.roundDone.Add(1)
		c.goAwayRound = time.AfterFunc(c.cl.p.h2.roundOf(), func() {
			defer c.roundDone.Done()
			c.secondGoAway()
		})
	}
	c.mu.Unlock()
}

// secondGoAway is goAway's second step: GOAWAY naming the last stream
// opened, after which no stream above it is served.
func (c *h2conn) secondGoAway() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if !c.draining || c.goingAway || c.closing {
		c.mu.Unlock()
		return
	}
	c.stopRoundLocked()
	c.goingAway, c.goAwayID = true, c.lastID
	last := c.lastID
	c.mu.Unlock()
	c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	c.flushLocked()
	c.mu.Lock()
	c.quietLocked()
	c.mu.Unlock()
}

// stopRoundLocked stops goAway's bound on the round trip, if it is set
// and has not fired. With c.mu held.
func (c *h2conn) stopRoundLocked() {
	if c.goAwayRound != nil && c.goAwayRound.Stop() {
		c.roundDone.Done()
	}
	c.goAwayRound = nil
}

// linger ends a connection that has nothing left to serve: the reading
// goroutine reads for h2CloseLinger (see h2front.lingerOf) more, then
// stops.
func (c *h2conn) linger() {
	c.nc.SetReadDeadline(time.Now().Add(c.cl.p.h2.lingerOf()))
}

// flushLocked hands the frames written to the writing goroutine, and
// waits while more than h2MaxPending bytes of them wait to be sent. It is
// called with wmu held, and returns the error that ended the connection's
// writing, if one did.
func (c *h2conn) flushLocked() error {
	if len(c.pend) > 0 {
		c.wake.Signal()
	}
	for len(c.pend) > h2MaxPending && c.wfail == nil && !c.wstop {
		c.room.Wait()
	}
	switch {
	case c.wfail != nil:
		return c.wfail
	case c.wstop:
		return errH2Gone
	}
	return nil
}

// chargeReset counts a stream reset by or because of the client against
// its allowance; false means the client is over it.
func (c *h2conn) chargeReset() bool {
	now := time.Now()
	c.resetTokens = min(h2ResetBurst, c.resetTokens+now.Sub(c.resetAt).Seconds()*h2ResetRate)
	c.resetAt = now
	if c.resetTokens < 1 {
		return false
	}
	c.resetTokens--
	return true
}

// handle acts on one frame from the client.
func (c *h2conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		return c.readHeaders(f)
	case *http2.DataFrame:
		return c.readData(f)
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.rstStream(f)
	case *http2.SettingsFrame:
		return c.settings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			// Another payload acknowledges no PING of lbctl's.
			if f.Data == h2GoAwayPing {
				c.secondGoAway()
			}
			return nil
		}
		c.wmu.Lock()
		c.fr.WritePing(true, f.Data)
		c.flushLocked()
		c.wmu.Unlock()
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open run on.
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			return c.streamError(f.StreamID, http2.ErrCodeProtocol)
		}
	}
	// Unknown frame types are ignored (RFC 9113 5.5).
	return nil
}

// settings applies the client's SETTINGS and acknowledges them.
func (c *h2conn) settings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if err := f.ForeachSetting(checkSetting); err != nil {
		return err
	}
	var err error
	c.wmu.Lock()
	f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingHeaderTableSize:
			// Owed from the first block after the ACK below.
			c.sizeUpdate = true
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.peerWin
			c.peerWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					err = connErr(http2.ErrCodeFlowControl, "a stream's window past 2^31-1")
				}
			}
			c.sendable.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerMax = int(s.Val)
			c.mu.Unlock()
		}
		return nil
	})
	c.fr.WriteSettingsAck()
	c.flushLocked()
	c.wmu.Unlock()
	return err
}

// checkSetting checks the value of a client's setting (RFC 9113 6.5.2).
func checkSetting(s http2.Setting) error {
	switch s.ID {
	case http2.SettingEnablePush:
		if s.Val > 1 {
			return connErr(http2.ErrCodeProtocol, "SETTINGS_ENABLE_PUSH not 0 or 1")
		}
	case http2.SettingInitialWindowSize:
		if s.Val > 1<<31-1 {
			return connErr(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1")
		}
	case http2.SettingMaxFrameSize:
		if s.Val < 1<<14 || s.Val > 1<<24-1 {
			return connErr(http2.ErrCodeProtocol, "SETTINGS_MAX_FRAME_SIZE out of range")
		}
	}
	return nil
}

// windowUpdate grows a send window.
func (c *h2conn) windowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWin += int64(f.Increment)
		if c.sendWin > 1<<31-1 {
			return connErr(http2.ErrCodeFlowControl, "the connection's window past 2^31-1")
		}
		c.sendable.Broadcast()
		return nil
	}
	s := c.streams[f.StreamID]
	if s == nil {
		if f.StreamID > c.lastID {
			return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
		}
		return nil // a stream that ended
	}
	s.sendWin += int64(f.Increment)
	if s.sendWin > 1<<31-1 {
		c.mu.Unlock()
		err := c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		c.mu.Lock()
		return err
	}
	c.sendable.Broadcast()
	return nil
}

// rstStream ends a stream the client reset.
func (c *h2conn) rstStream(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	if f.StreamID > c.lastID {
		c.mu.Unlock()
		return connErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
	}
	s := c.streams[f.StreamID]
	if s != nil {
		s.resetLocked()
		c.forgetLocked(s)
	}
	c.mu.Unlock()
	if s != nil && !c.chargeReset() {
		return connErr(http2.ErrCodeEnhanceYourCalm, "too many streams reset")
	}
	return nil
}

// streamError resets stream id for a fault of the client's (RFC 9113
// 5.4.2), which counts against its allowance of resets.
func (c *h2conn) streamError(id uint32, code http2.ErrCode) error {
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		s.resetLocked()
		c.forgetLocked(s)
	}
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteRSTStream(id, code)
	c.flushLocked()
	c.wmu.Unlock()
	if !c.chargeReset() {
		return connErr(http2.ErrCodeEnhanceYourCalm, "too many stream errors")
	}
	return nil
}

// forgetLocked takes s out of the open streams. Its exchange, if it runs,
// ends on its own. With c.mu held.
func (c *h2conn) forgetLocked(s *h2stream) {
	if c.streams[s.id] != s {
		return
	}
	delete(c.streams, s.id)
	c.quietLocked()
}

// quietLocked starts the idle timer, or ends a connection that said
// GOAWAY, once the connection has no stream left. With c.mu held.
func (c *h2conn) quietLocked() {
	if len(c.streams) > 0 || c.workers > 0 || c.closing {
		return
	}
	if c.goingAway {
		c.linger()
		return
	}
	if c.draining {
		return // secondGoAway comes
	}
	if c.idle != nil {
		c.idle.Reset(c.cfg.idle)
	}
}

// stopIdle stops the idle timer, if the connection has one.
func (c *h2conn) stopIdle() {
	if c.idle != nil {
		c.idle.Stop()
	}
}

// readData takes a DATA frame into its stream's body buffer.
func (c *h2conn) readData(f *http2.DataFrame) error {
	// Padding and all count against the windows (RFC 9113 6.9.1).
	size := int(f.Header().Length)
	c.recvUnacked += size
	if c.recvUnacked >= h2ConnWindow/4 {
		c.wmu.Lock()
		c.fr.WriteWindowUpdate(0, uint32(c.recvUnacked))
		c.flushLocked()
		c.wmu.Unlock()
		c.recvUnacked = 0
	}
	c.mu.Lock()
	s := c.streams[f.StreamID]
	switch {
	case s == nil && f.StreamID > c.lastID:
		c.mu.Unlock()
		return connErr(http2.ErrCodeProtocol, "DATA on an idle stream")
	case s == nil:
		// A stream that lbctl closed or reset, whose client may have
		// sent more of its body before it learnt of that: ignored
		// (RFC 9113 5.1), its bytes counted against the connection's
		// window above.
		c.mu.Unlock()
		return nil
	case s.remoteDone:
		c.mu.Unlock()
		return c.streamError(f.StreamID, http2.ErrCodeStreamClosed)
	}
	pad := size - len(f.Data())
	code := s.takeData(f.Data(), pad, f.StreamEnded())
	c.mu.Unlock()
	if code != http2.ErrCodeNo {
		return c.streamError(f.StreamID, code)
	}
	if pad > 0 && !f.StreamEnded() {
		// Padding is never buffered: its share of the window comes
		// back at once.
		c.wmu.Lock()
		c.fr.WriteWindowUpdate(f.StreamID, uint32(pad))
		c.flushLocked()
		c.wmu.Unlock()
	}
	return nil
}

// open starts serving a stream whose request head has been read.
func (c *h2conn) open(s *h2stream, ended bool) error {
	b := &c.block
	c.mu.Lock()
	refuse := (c.goingAway && s.id > c.goAwayID) || len(c.streams) >= h2MaxStreams
	c.mu.Unlock()
	switch {
	case refuse:
		// Over SETTINGS_MAX_CONCURRENT_STREAMS, or after GOAWAY: the
		// client may try again (RFC 9113 5.1.2, 8.7).
		id := s.id
		s.recycle()
		return c.streamError(id, http2.ErrCodeRefusedStream)
	case b.bad != nil || b.tooLarge:
	case ended && s.contentLength > 0:
		b.bad = errH2Length // a body announced, and none to come
	default:
		b.bad = s.checkHead()
	}
	if b.bad != nil {
		id := s.id
		c.cl.p.logger().Debug("malformed HTTP/2 request", "client", c.cl.addr, "stream", id, "error", b.bad)
		s.recycle()
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	if b.tooLarge {
		// Answered at once, by the reading goroutine: no exchange, and
		// the stream is done with.
		c.answerTooLarge(s.id, ended)
		s.recycle()
		if !c.chargeReset() {
			return connErr(http2.ErrCodeEnhanceYourCalm, "too many refused streams")
		}
		return nil
	}
	s.remoteDone = ended
	if ended {
		s.contentLength = 0
	}
	c.mu.Lock()
	c.streams[s.id] = s
	c.stopIdle()
	if c.goingAway {
		// A stream that the second GOAWAY named as it opened, which
		// may have found the connection without streams and set the
		// linger's deadline: lifted until the last stream ends.
		c.nc.SetReadDeadline(time.Time{})
	}
	if c.workers >= h2MaxStreams {
		if len(c.waiting) >= h2MaxWaiting {
			c.mu.Unlock()
			return connErr(http2.ErrCodeEnhanceYourCalm, "too many streams waiting")
		}
		c.waiting = append(c.waiting, s)
		c.mu.Unlock()
		return nil
	}
	c.workers++
	c.workersDone.Add(1)
	c.mu.Unlock()
	go c.work(s)
	return nil
}

// work runs the exchange of s, then of the streams waiting, one after
// another, until none waits.
func (c *h2conn) work(s *h2stream) {
	defer c.workersDone.Done()
	for s != nil {
		s.serve()
		c.mu.Lock()
		c.forgetLocked(s)
		s.recycle()
		s = nil
		for len(c.waiting) > 0 && s == nil {
			s = c.waiting[0]
			c.waiting = c.waiting[1:]
			if s.gone {
				c.forgetLocked(s)
				s.recycle()
				s = nil
			}
		}
		quiet := false
		if s == nil {
			c.workers--
			c.quietLocked()
			quiet = c.workers == 0 && len(c.streams) == 0
		}
		c.mu.Unlock()
		if quiet {
			c.shrink()
		}
	}
}

// shrink lets the writer's buffers go once the connection has no stream
// left, so that a connection kept open between a client's page loads
// does not hold the frames of its last large answer.
func (c *h2conn) shrink() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.pend) == 0 && cap(c.pend)+cap(c.spare) > 8<<10 {
		c.pend, c.spare = nil, nil
	}
}

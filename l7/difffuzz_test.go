package l7

import (
	"bytes"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
)

// FuzzProxyDifferential sends fuzzed bytes as a client, through a real
// lbctl on loopback, to a corpusBackend, and compares what the two ends
// saw. lbctl's parser decides what the client's bytes mean; the backend's
// strict parser (corpus_backend_test.go), written separately, reads what
// lbctl made of them. Where the two disagree about where one request ends
// and the next begins, the backend sees a request nobody answered for.
//
// For every input, once the client has read until lbctl closed and lbctl
// has shut down (so that everything it ever sends the backend has been
// sent):
//   - every byte the backend received parses as HTTP/1.1 requests (at most
//     the last one cut short, when lbctl stopped forwarding a body), each in
//     the form lbctl must write (see checkForwarded);
//   - every byte the client received parses as responses;
//   - the responses the backend gave (numbered by X-Recorder-Seq) reached
//     the client, each once, in the order of the requests: so the backend
//     never saw more complete requests than the client was answered for,
//     and no answer went missing or out of turn;
//   - at most one request reached the backend cut short;
//   - nothing counted against the backend's health: it never misbehaved.
//
// The seeds are the corpus's requests.
func FuzzProxyDifferential(f *testing.F) {
	for _, raw := range corpusRequests() {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cb := startCorpusBackend(t, nil)
		addr, p := startCorpusProxy(t, cb.addr)
		c := dialProxy(t, addr).(*net.TCPConn)
		// The client writes and reads at once: lbctl may answer and close
		// before it has read everything.
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			c.Write(in)
			c.CloseWrite()
		}()
		answer, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Errorf("lbctl neither answered nor closed: %v", err)
		}
		c.Close()
		<-wrote
		endCorpusProxy(t, p)
		seen, faults := cb.finish(t)

		for _, fault := range faults {
			t.Errorf("the backend could not parse what lbctl sent: %s", fault)
		}
		checkForwarded(t, seen)

		var relayed []int // the X-Recorder-Seq of each answer that came from the backend
		answered := 0
		for rest := answer; len(rest) > 0; {
			m, n, err := parseLbctlAnswer(rest)
			if err != nil {
				t.Errorf("lbctl's answer is malformed at byte %d: %v", len(answer)-len(rest), err)
				break
			}
			rest = rest[n:]
			if m.status < 200 {
				continue
			}
			answered++
			if vs := m.get("X-Recorder-Seq"); len(vs) > 0 {
				seq, _ := strconv.Atoi(vs[0])
				relayed = append(relayed, seq)
			}
		}

		var complete []int
		partial := 0
		for _, r := range seen {
			if r.partial {
				partial++
				continue
			}
			complete = append(complete, r.seq)
		}
		if len(complete) > answered {
			t.Errorf("the backend parsed %d complete requests, the client got %d answers", len(complete), answered)
		}
		if !slices.Equal(relayed, complete) {
			t.Errorf("the client got the answers to backend requests %v, want %v (the backend parsed %v)", relayed, complete, seen)
		}
		if partial > 1 {
			t.Errorf("%d requests reached the backend cut short, want at most 1: %v", partial, seen)
		}
		if n := p.Pool.Registry().All()[0].ConsecutiveFailures(); n != 0 {
			t.Errorf("the backend behaved, yet %d failures counted against its health", n)
		}
		if t.Failed() {
			t.Logf("the client sent %q and got %q", clip(in, 600), clip(answer, 600))
		}
	})
}

// parseLbctlAnswer reads one response from the start of b, all of which
// the client has received, without knowing the method of its request. The
// backend answers HEAD with Content-Length: 0, so its answers read the same
// either way; an answer lbctl makes up itself (it has no X-Recorder-Seq)
// is read as one to HEAD, without the body its Content-Length announces,
// when what follows its head is another response or nothing: lbctl's own
// bodies begin with their status code, never with "HTTP/1.".
func parseLbctlAnswer(b []byte) (*strictMessage, int, error) {
	if m, n, err := parseStrict(b, strictOpts{response: true, method: "HEAD", atEOF: true}); err == nil && m.length > 0 && len(m.get("X-Recorder-Seq")) == 0 {
		if rest := b[n:]; len(rest) == 0 || bytes.HasPrefix(rest, []byte("HTTP/1.")) {
			return m, n, nil
		}
	}
	return parseStrict(b, strictOpts{response: true, atEOF: true})
}

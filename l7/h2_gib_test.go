package l7

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// patternReader yields n bytes of a seeded pseudo-random stream and hashes
// what it yields, so that a gigabyte can be sent and checked without being
// held anywhere.
type patternReader struct {
	n   int64
	rng *rand.ChaCha8
	sum hash.Hash
}

func newPatternReader(n int64, seed byte) *patternReader {
	return &patternReader{n: n, rng: rand.NewChaCha8([32]byte{seed}), sum: sha256.New()}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n)]
	p.rng.Read(b)
	p.sum.Write(b)
	p.n -= int64(len(b))
	return len(b), nil
}

// heapSampler records the largest live heap (as of each collection) and
// the largest heap in use (objects, collected or not) while it runs.
type heapSampler struct {
	stop, done chan struct{}
	maxLive    uint64
	maxInUse   uint64
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			s.maxLive = max(s.maxLive, samples[0].Value.Uint64())
			s.maxInUse = max(s.maxInUse, samples[1].Value.Uint64())
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the largest live heap and heap in use
// seen.
func (s *heapSampler) Stop() (live, inUse uint64) {
	close(s.stop)
	<-s.done
	return s.maxLive, s.maxInUse
}

// liveHeap returns the live heap after two collections, the second of
// which also frees what sync.Pools kept through the first.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestH2StreamsAGibibyteEachWayInFlatMemory: 1 GiB uploaded over HTTP/2 of
// unknown length, echoed by the backend as it arrives and so downloaded
// at the same time, arrives whole, while the heap in use of the process
// (proxy, client and backend together) grows by less than 64 MiB: the
// proxy streams both ways rather than buffering.
func TestH2StreamsAGibibyteEachWayInFlatMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("streams 1 GiB each way: not under -short or -race")
	}
	const size = 1 << 30
	const bound = 64 << 20
	f, _ := tlsFixture(t, 1, h2Options(t), nil)
	c, _ := h2Client(t)
	c.Timeout = 5 * time.Minute
	get(t, c, "https://"+f.addr+"/") // the connection is up before the baseline
	base := liveHeap()
	up := newPatternReader(size, 1)
	req, err := http.NewRequest("POST", "https://"+f.addr+"/echo", io.NopCloser(up))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sampler := startHeapSampler()
	resp, err := c.Do(req)
	if err != nil {
		sampler.Stop()
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("answered over %s, want HTTP/2", resp.Proto)
	}
	down := sha256.New()
	n, err := io.Copy(down, resp.Body)
	resp.Body.Close()
	live, inUse := sampler.Stop()
	took := time.Since(start)
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes, %v; want %d", n, err, size)
	}
	if !bytes.Equal(down.Sum(nil), up.sum.Sum(nil)) {
		t.Error("the echoed gibibyte differs from the one sent")
	}
	t.Logf("1 GiB each way in %v; live heap %d KiB before, at most %d KiB during (%d KiB in use at most)",
		took.Round(time.Millisecond), base>>10, live>>10, inUse>>10)
	// Heap in use counts garbage not yet collected too, so it bounds the
	// live heap even between collections.
	if inUse > base+bound {
		t.Errorf("heap in use grew from %d KiB to %d KiB while streaming (live at most %d KiB), want under %d MiB of growth",
			base>>10, inUse>>10, live>>10, bound>>20)
	}
}

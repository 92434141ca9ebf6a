package accesslog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/leakcheck"
	"github.com/lbctl/lbctl/internal/logtest"
)

func l7Record(path string, status int) *Record {
	r := &Record{
		Time:     time.Date(2026, 11, 30, 14, 5, 39, 123456789, time.UTC),
		Client:   netip.MustParseAddrPort("198.51.100.7:40000"),
		Backend:  "app-01",
		Duration: 1500 * time.Microsecond,
		Status:   status, Bytes: 123, Head: 1234 * time.Microsecond, Cookie: CookieValid,
	}
	r.SetRequest([]byte("GET"), []byte(path))
	return r
}

func TestRecordLines(t *testing.T) {
	long := "/" + strings.Repeat("a", MaxPath+10)
	tests := []struct {
		name string
		rec  *Record
		want string
	}{
		{"l7", l7Record("/index.html?q=1", 200),
			`{"time":"2026-11-30T14:05:39.123456Z","mode":"l7","client":"198.51.100.7:40000","backend":"app-01","method":"GET","path":"/index.html?q=1","status":200,"bytes":123,"head_ms":1.234,"cookie":"valid","duration_ms":1.500}`},
		{"escapes", l7Record("/a\"b\\c\x01\xff", 404),
			`{"time":"2026-11-30T14:05:39.123456Z","mode":"l7","client":"198.51.100.7:40000","backend":"app-01","method":"GET","path":"/a\"b\\c\u0001\u00ff","status":404,"bytes":123,"head_ms":1.234,"cookie":"valid","duration_ms":1.500}`},
		{"cut path", l7Record(long, 200),
			`{"time":"2026-11-30T14:05:39.123456Z","mode":"l7","client":"198.51.100.7:40000","backend":"app-01","method":"GET","path":"` + long[:MaxPath] + `","path_cut":true,"status":200,"bytes":123,"head_ms":1.234,"cookie":"valid","duration_ms":1.500}`},
		{"l4", &Record{L4: true, Time: time.Date(2026, 11, 30, 14, 5, 39, 0, time.UTC), Client: netip.MustParseAddrPort("[2001:db8::1]:443"),
			Backend: "db-2", BytesIn: 10, BytesOut: 2048, Duration: 3 * time.Second},
			`{"time":"2026-11-30T14:05:39.000000Z","mode":"l4","client":"[2001:db8::1]:443","backend":"db-2","bytes_in":10,"bytes_out":2048,"duration_ms":3000.000}`},
		{"no backend", &Record{L4: true, Time: time.Date(2026, 11, 30, 14, 5, 39, 0, time.UTC), Client: netip.MustParseAddrPort("10.0.0.1:1")},
			`{"time":"2026-11-30T14:05:39.000000Z","mode":"l4","client":"10.0.0.1:1","backend":null,"bytes_in":0,"bytes_out":0,"duration_ms":0.000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendRecord(nil, tt.rec))
			if got != tt.want+"\n" {
				t.Errorf("line\n%s\nwant\n%s", got, tt.want)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(got), &v); err != nil {
				t.Errorf("not JSON: %v", err)
			}
		})
	}
}

// Records written from many goroutines each come out once, and Close
// writes what was queued before it returns.
func TestEveryRecordOnce(t *testing.T) {
	base := leakcheck.Take(t)
	var out logtest.Buffer
	// The ring holds every record, so that none is dropped whatever the
	// writer's pace.
	l := New(&out, 4096)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Write(l7Record(fmt.Sprintf("/%d/%d", w, i), 200))
			}
		})
	}
	wg.Wait()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range out.Lines() {
		var v struct{ Path string }
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[v.Path]++
	}
	for w := range writers {
		for i := range each {
			if n := seen[fmt.Sprintf("/%d/%d", w, i)]; n != 1 {
				t.Fatalf("/%d/%d written %d times, want 1", w, i, n)
			}
		}
	}
	if l.Written() != writers*each || l.Dropped() != 0 {
		t.Errorf("Written = %d, Dropped = %d; want %d and 0", l.Written(), l.Dropped(), writers*each)
	}
	base.Wait(t, 10*time.Second)
}

// With an output that nobody reads, Write never waits: the ring fills,
// and every record past it is dropped and counted. Closing the output
// lets the writer go.
func TestBlockedOutputDrops(t *testing.T) {
	base := leakcheck.Take(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	// Fill the pipe, so that the writer's first write blocks.
	pw.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := pw.Write(make([]byte, 4<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("filling the pipe: %v", err)
	}
	pw.SetWriteDeadline(time.Time{})
	const size, n = 16, 20000 // far more than the writer's buffer holds
	l := New(pw, size)
	r := l7Record("/x", 200)
	start := time.Now()
	for range n {
		l.Write(r)
	}
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("%d writes took %v with a blocked output", n, took)
	}
	eventually.True(t, "the writer stuck on the full pipe", func() bool {
		// Each record is dropped, written (into the pipe or the
		// writer's buffer), waiting in the ring, or the one whose write
		// blocks.
		return l.Dropped()+l.Written() >= n-size-1
	})
	if l.Dropped() == 0 || l.Dropped()+l.Written() > n {
		t.Errorf("dropped %d, written %d of %d", l.Dropped(), l.Written(), n)
	}
	t.Logf("%d writes in %v with the output blocked: %d dropped, %d written", n, took, l.Dropped(), l.Written())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); err == nil {
		t.Error("Close returned nil while the output was blocked")
	}
	pr.Close() // the writer's write fails, and it exits
	eventually.True(t, "the writer gone", func() bool {
		select {
		case <-l.done:
			return true
		default:
			return false
		}
	})
	pw.Close()
	base.Wait(t, 10*time.Second)
}

// Write allocates nothing, and a nil Log is off.
func TestWriteAllocatesNothing(t *testing.T) {
	l := New(discard{}, 1024)
	defer l.Close(context.Background())
	r := l7Record("/x", 200)
	if n := testing.AllocsPerRun(1000, func() { l.Write(r) }); n != 0 {
		t.Errorf("Write allocates %v times", n)
	}
	var off *Log
	off.Write(r)
	if off.Dropped() != 0 || off.Written() != 0 || off.Close(context.Background()) != nil {
		t.Error("a nil Log is not off")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Open appends to a file, and "" is off.
func TestOpen(t *testing.T) {
	if l, err := Open("", 0); l != nil || err != nil {
		t.Fatalf(`Open("") = %v, %v; want nil, nil`, l, err)
	}
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(l7Record("/x", 200))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	for s := bufio.NewScanner(f); s.Scan(); {
		lines = append(lines, s.Text())
	}
	if len(lines) != 2 || lines[0] != "earlier" || !strings.Contains(lines[1], `"path":"/x"`) {
		t.Errorf("file holds %q", lines)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir"), 0); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func BenchmarkWrite(b *testing.B) {
	l := New(discard{}, DefaultSize)
	defer l.Close(context.Background())
	r := l7Record("/index.html", 200)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Write(r)
		}
	})
}

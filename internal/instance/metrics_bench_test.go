package instance

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/config"
)

// BenchmarkScrape measures one GET /metrics of an instance of 100
// backends, with the Go and process collectors: in L7, where each backend
// also has its requests by status class and its response-head histogram,
// and in L4 with 10,000 pins in the affinity table (counted per backend
// at each scrape). Each backend has served traffic, so every series has a
// value. The data path pays nothing for it: the scrape reads its atomics.
func BenchmarkScrape(b *testing.B) {
	for _, mode := range []string{"l7", "l4"} {
		b.Run(mode+"-100backends", func(b *testing.B) {
			cfg := config.Default()
			cfg.Mode = mode
			cfg.Health.Check = "none"
			for i := range 100 {
				cfg.Backends = append(cfg.Backends, config.Backend{ID: fmt.Sprintf("app-%03d", i), Address: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1), Weight: 1})
			}
			if err := cfg.Validate(); err != nil {
				b.Fatal(err)
			}
			in, err := New(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			for i, be := range in.Pool().Registry().All() {
				for j := range 50 {
					be.CountConnected()
					be.CountResponse(200 + 100*(j%4))
					be.ObserveResponseHead(time.Duration(i*j) * time.Microsecond)
				}
			}
			if t := in.Table(); t != nil {
				ids := in.Pool().Registry().All()
				for i := range 10000 {
					addr := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
					t.PinIf(t.Key(addr), "", ids[i%len(ids)].ID)
				}
			}
			h := (&admin.Server{Instance: in, Logger: slog.New(slog.DiscardHandler)}).Handler()
			var size int
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/metrics", nil)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

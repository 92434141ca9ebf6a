package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/testbackend"
)

// demoBackends are small HTTP backends on loopback (see
// internal/testbackend) that answer every request with their id, so that
// `serve --demo` can be tried with curl and no config.
type demoBackends struct {
	backends []*testbackend.Backend
	cfg      config.Config
}

// startDemo starts n demo backends on ephemeral loopback ports and returns a
// config that points at them, with health checks on their /healthz.
func startDemo(n int, listen string) (*demoBackends, error) {
	d := &demoBackends{cfg: config.Default()}
	d.cfg.Health.Check = "http"
	d.cfg.Health.Path = testbackend.HealthPath
	d.cfg.Health.Interval = config.Duration(time.Second)
	if listen != "" {
		d.cfg.Listen = listen
	}
	for i := range n {
		id := fmt.Sprintf("app-%02d", i+1)
		b, err := testbackend.StartHTTP(id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", id)
			fmt.Fprintf(w, "%s: %s %s from %s\n", id, r.Method, r.URL.Path, r.RemoteAddr)
		}))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("demo backend: %w", err)
		}
		d.backends = append(d.backends, b)
		d.cfg.Backends = append(d.cfg.Backends, config.Backend{ID: id, Address: b.Addr(), Weight: 1})
	}
	return d, nil
}

// Close stops every demo backend.
func (d *demoBackends) Close() {
	for _, b := range d.backends {
		b.Kill()
	}
}

package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lbctl/lbctl/config"
)

// demoBackends are small HTTP servers on loopback that answer every request
// with their id, so that `serve --demo` can be tried with curl and no config.
type demoBackends struct {
	servers []*http.Server
	cfg     config.Config
}

// startDemo starts n demo backends on ephemeral loopback ports and returns a
// config that points at them, with health checks on their /healthz.
func startDemo(n int, listen string) (*demoBackends, error) {
	d := &demoBackends{cfg: config.Default()}
	d.cfg.Health.Check = "http"
	d.cfg.Health.Interval = config.Duration(time.Second)
	if listen != "" {
		d.cfg.Listen = listen
	}
	for i := range n {
		id := fmt.Sprintf("app-%02d", i+1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("demo backend %s: %w", id, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("ok\n"))
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", id)
			fmt.Fprintf(w, "%s: %s %s from %s\n", id, r.Method, r.URL.Path, r.RemoteAddr)
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		d.servers = append(d.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Printf("demo backend %s: %v\n", id, err)
			}
		}()
		d.cfg.Backends = append(d.cfg.Backends, config.Backend{ID: id, Address: ln.Addr().String(), Weight: 1})
	}
	return d, nil
}

// Close stops every demo backend.
func (d *demoBackends) Close() {
	for _, s := range d.servers {
		s.Close()
	}
}

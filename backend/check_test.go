package backend

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lbctl/lbctl/internal/logtest"
)

// listening returns the address of a loopback listener that stays open for
// the test. The kernel completes handshakes without Accept.
func listening(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// closedPort returns a loopback address that refuses connections.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestNewChecker(t *testing.T) {
	tests := []struct {
		kind    string
		want    Checker
		wantErr bool
	}{
		{"tcp", &TCPCheck{}, false},
		{"http", &HTTPCheck{Path: "/healthz"}, false},
		{"none", nil, false},
		{"", nil, true},
		{"icmp", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			got, err := NewChecker(tt.kind, "/healthz")
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("NewChecker(%q) error = %v, want error: %v", tt.kind, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), `"`+tt.kind+`"`) {
				t.Errorf("error %q does not name the kind %q", err, tt.kind)
			}
			switch want := tt.want.(type) {
			case nil:
				if got != nil {
					t.Errorf("NewChecker(%q) = %#v, want nil", tt.kind, got)
				}
			case *TCPCheck:
				if _, ok := got.(*TCPCheck); !ok {
					t.Errorf("NewChecker(%q) = %T, want *TCPCheck", tt.kind, got)
				}
			case *HTTPCheck:
				if h, ok := got.(*HTTPCheck); !ok || h.Path != want.Path || h.Client != nil {
					t.Errorf("NewChecker(%q) = %#v, want %#v", tt.kind, got, want)
				}
			}
		})
	}
}

func TestTCPCheck(t *testing.T) {
	tests := []struct {
		name    string
		address string
		wantUp  bool
	}{
		{"listening", listening(t), true},
		{"closed port", closedPort(t), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("app-01", tt.address, 1)
			err := new(TCPCheck).Check(t.Context(), b)
			if got := err == nil; got != tt.wantUp {
				t.Fatalf("Check(%s) = %v, want pass: %v", tt.address, err, tt.wantUp)
			}
			if err != nil && !strings.Contains(err.Error(), "app-01") {
				t.Errorf("error %q does not name the backend", err)
			}

			// Through the prober, with fall 1: one round decides.
			var logs logtest.Buffer
			reg := mustRegistry(t, b)
			p := &Prober{Pool: NewPool(reg), Checker: new(TCPCheck), Timeout: time.Second, Fall: 1, Logger: bufferLogger(&logs)}
			p.Round(t.Context())
			if got := b.Up(); got != tt.wantUp {
				t.Errorf("after one round Up() = %v, want %v (log %q)", got, tt.wantUp, logs.String())
			}
		})
	}
}

// healthServer is an httptest server whose handlers record the Host and path
// they were asked for.
type healthServer struct {
	*httptest.Server
	mu    sync.Mutex
	hosts []string
	paths []string
}

func newHealthServer(t *testing.T, handler http.HandlerFunc) *healthServer {
	t.Helper()
	s := &healthServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.paths = append(s.paths, r.URL.RequestURI())
		s.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *healthServer) address() string { return s.Listener.Addr().String() }

func TestHTTPCheck(t *testing.T) {
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				// The target of the redirect below: following it would fail.
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(code)
			w.Write([]byte(strings.Repeat("ok\n", 100)))
		}
	}
	tests := []struct {
		name      string
		handler   func(release <-chan struct{}) http.HandlerFunc
		wantUp    bool
		wantErr   string
		wantPaths string
	}{
		{"200", func(<-chan struct{}) http.HandlerFunc { return status(http.StatusOK) }, true, "", "/healthz"},
		{"204", func(<-chan struct{}) http.HandlerFunc { return status(http.StatusNoContent) }, true, "", "/healthz"},
		{"302 is healthy and not followed", func(<-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" {
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
					return
				}
				w.WriteHeader(http.StatusInternalServerError)
			}
		}, true, "", "/healthz"},
		{"404", func(<-chan struct{}) http.HandlerFunc { return status(http.StatusNotFound) }, false, "404 Not Found", "/healthz"},
		{"500", func(<-chan struct{}) http.HandlerFunc { return status(http.StatusInternalServerError) }, false, "500 Internal Server Error", "/healthz"},
		{"hangs past the timeout", func(release <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}
		}, false, "context deadline exceeded (timeout 200ms)", "/healthz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := newHealthServer(t, tt.handler(release))
			t.Cleanup(func() { close(release) }) // runs before srv.Close

			b := New("app-01", srv.address(), 1)
			var logs logtest.Buffer
			p := &Prober{
				Pool:    NewPool(mustRegistry(t, b)),
				Checker: &HTTPCheck{Path: "/healthz"},
				Timeout: 200 * time.Millisecond,
				Fall:    1,
				Logger:  bufferLogger(&logs),
			}
			begin := time.Now()
			p.Round(t.Context())
			if elapsed := time.Since(begin); elapsed > 5*time.Second {
				t.Errorf("Round took %v, want it bounded by the 200ms timeout", elapsed)
			}
			if got := b.Up(); got != tt.wantUp {
				t.Errorf("Up() = %v, want %v (log %q)", got, tt.wantUp, logs.String())
			}
			if tt.wantErr != "" && !strings.Contains(logs.String(), tt.wantErr) {
				t.Errorf("log %q does not give the reason %q", logs.String(), tt.wantErr)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if got := strings.Join(srv.paths, " "); got != tt.wantPaths {
				t.Errorf("server saw requests for %q, want %q (no redirect followed)", got, tt.wantPaths)
			}
			for _, h := range srv.hosts {
				if h != srv.address() {
					t.Errorf("Host = %q, want the backend address %q", h, srv.address())
				}
			}
		})
	}
}

func TestHTTPCheckOwnClientDoesNotFollowRedirects(t *testing.T) {
	srv := newHealthServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/down", http.StatusMovedPermanently)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	client := &http.Client{} // follows redirects on its own
	check := &HTTPCheck{Client: client}
	if err := check.Check(t.Context(), New("app-01", srv.address(), 1)); err != nil {
		t.Errorf("Check = %v, want pass on the 301", err)
	}
	if client.CheckRedirect != nil {
		t.Errorf("the caller's client was modified")
	}
	if got, want := strings.Join(srv.paths, " "), "/"; got != want {
		t.Errorf("server saw %q, want %q", got, want)
	}
}

func TestHTTPCheckRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	err := new(HTTPCheck).Check(ctx, New("app-01", closedPort(t), 1))
	if err == nil || !strings.Contains(err.Error(), "http check app-01") {
		t.Errorf("Check on a closed port = %v, want an error naming the backend", err)
	}
}

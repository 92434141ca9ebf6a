package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxBodyBytes is the largest request body the API reads; a larger one is
// answered 413 without being read to its end.
const MaxBodyBytes = 64 << 10

// The API's timeouts. A request head must arrive within readHeaderTimeout
// and the whole request within readTimeout; writeTimeout leaves room for a
// reload that waits for another one to finish.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = time.Minute
	maxHeaderBytes    = 16 << 10
)

// Server serves the runtime API of one Instance. Set its fields, then call
// Serve; Shutdown stops it.
type Server struct {
	// Instance is what the API reads and steers. It must not be nil.
	Instance Instance
	// Token, when not empty, must be sent by every request as
	// "Authorization: Bearer <Token>". When empty, the API answers anyone
	// who can reach it, which is why config allows an empty token only on
	// loopback and unix sockets, and why the API then answers only
	// requests addressed to an IP literal or "localhost" (a web page whose
	// name was made to resolve to 127.0.0.1 cannot reach it). It is read
	// once, by the first request or SetToken; change it later with
	// SetToken.
	Token string
	// Logger gets one line per state change and per reload; nil is
	// slog.Default().
	Logger *slog.Logger

	once  sync.Once
	srv   *http.Server
	token atomic.Pointer[bearer] // nil until the first request or SetToken

	secretOnce sync.Once // makes secret, the key of the stats page's tokens
	secret     []byte
}

// bearer is the token a Server asks for, kept hashed so that each check
// compares in constant time.
type bearer struct {
	set  bool // false: no token, the API answers local names only
	hash [sha256.Size]byte
}

func newBearer(token string) *bearer {
	if token == "" {
		return &bearer{}
	}
	return &bearer{set: true, hash: sha256.Sum256([]byte(token))}
}

// SetToken makes token the one every request must send from now on, as
// Token says; requests already past the check finish. It is safe to call
// while the server serves.
func (s *Server) SetToken(token string) {
	s.token.Store(newBearer(token))
}

// bearer returns the token in force: the last SetToken's, or Token's.
func (s *Server) bearer() *bearer {
	if b := s.token.Load(); b != nil {
		return b
	}
	s.token.CompareAndSwap(nil, newBearer(s.Token))
	return s.token.Load()
}

// init builds the http.Server once, so that Serve and Shutdown may be
// called in either order and from different goroutines.
func (s *Server) init() {
	s.once.Do(func() {
		s.srv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn),
		}
	})
}

// Serve answers API requests on ln until Shutdown, and then returns nil.
// It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown closes the listener, waits for requests in progress to finish
// (or ctx to end, then closes them) and returns when every connection
// goroutine is gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Handler returns the API as an http.Handler: the token check and the
// cross-site request checks in front of the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/backends", only(http.MethodGet, s.backends))
	mux.Handle("/api/backends/{id}/state", only(http.MethodPost, s.setState))
	mux.Handle("/api/pins", only(http.MethodGet, s.pins))
	mux.Handle("/api/pins/{key}", only(http.MethodDelete, s.forgetPin))
	mux.Handle("/api/reload", only(http.MethodPost, s.reload))
	mux.Handle("/api/nat", only(http.MethodGet, s.nat))
	mux.Handle("/{$}", only(http.MethodGet, s.page(mux)))
	mux.Handle("/api/stats", only(http.MethodGet, s.stats))
	mux.Handle("/metrics", only(http.MethodGet, s.metricsHandler().ServeHTTP))
	mux.Handle("/api/upgrade", only(http.MethodPost, s.upgrade))
	mux.Handle("/api/cluster", only(http.MethodGet, s.cluster))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no API call at "+r.URL.Path)
	})

	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	guarded := csrf.Handler(mux)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := s.bearer(); b.set && !isPage(r) {
			if msg := checkToken(r, b.hash); msg != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lbctl"`)
				writeError(w, http.StatusUnauthorized, msg)
				return
			}
		} else if !localHost(r.Host) {
			writeError(w, http.StatusForbidden, "host "+r.Host+" refused: without admin.token the API answers only requests to an IP address or localhost")
			return
		}
		if !s.pageTokenOK(r) {
			writeError(w, http.StatusForbidden, "a change from a browser must come from the stats page (send "+PageTokenHeader+")")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		guarded.ServeHTTP(w, r)
	})
}

// checkToken returns why r's bearer token is not want's, or "" when it is.
// Both sides are hashed first, so that the comparison takes the same time
// whatever the sent token's length and content.
func checkToken(r *http.Request, want [sha256.Size]byte) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "missing token: send Authorization: Bearer <admin.token>"
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "Authorization is not a Bearer token"
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "wrong token"
	}
	return ""
}

// localHost reports whether a request's Host names an IP address or
// localhost, so that a page served from another name that resolves to this
// machine cannot use the API from a browser.
func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	return net.ParseIP(host) != nil
}

// only answers requests with method by h and any other with 405 and the
// Allow header.
func only(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": use "+method)
			return
		}
		h(w, r)
	})
}

// readBody reads a request body up to MaxBodyBytes. A longer body is
// answered 413, and any read failure 400; either way ok is false and the
// answer has been written.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			writeError(w, http.StatusRequestEntityTooLarge, "request body over 64 KiB")
		} else {
			writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

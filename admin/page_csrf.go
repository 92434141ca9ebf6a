package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// PageTokenHeader carries the stats page's token on the API calls the
// page makes.
const PageTokenHeader = "X-Lbctl-Page"

// pageSecret returns the server's secret for page tokens, made at first
// use: a token is good for as long as the server runs, and for no other
// server.
func (s *Server) pageSecret() []byte {
	s.secretOnce.Do(func() {
		s.secret = make([]byte, 32)
		rand.Read(s.secret) // never fails (crypto/rand panics instead)
	})
	return s.secret
}

// pageToken is the token the stats page sends with its changes: an HMAC
// of a fixed label under the server's secret, so that only a page this
// server rendered knows it.
func (s *Server) pageToken() string {
	m := hmac.New(sha256.New, s.pageSecret())
	m.Write([]byte("lbctl stats page v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// fromBrowser reports whether r was sent by a web browser: browsers add
// Origin or Sec-Fetch-* to every POST and DELETE, and lbctl's own client
// and curl send neither.
func fromBrowser(r *http.Request) bool {
	h := r.Header
	return h.Get("Origin") != "" || h.Get("Sec-Fetch-Site") != "" || h.Get("Sec-Fetch-Mode") != ""
}

// pageTokenOK reports whether r may change something: requests that do
// not change state, and those that do not come from a browser, need no
// page token; a browser's change needs the token of a page this server
// rendered. It adds to the cross-origin checks a proof that the request
// came from the stats page itself.
func (s *Server) pageTokenOK(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	if !fromBrowser(r) {
		return true
	}
	got := r.Header.Get(PageTokenHeader)
	return got != "" && hmac.Equal([]byte(got), []byte(s.pageToken()))
}

// isPage reports whether r asks for the stats page itself, which a browser
// loads without the admin token: with a token set, the page shows nothing
// until the operator types it (and then sends it as Bearer).
func isPage(r *http.Request) bool {
	return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead)
}

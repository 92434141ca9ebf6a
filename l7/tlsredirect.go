package l7

import (
	"net"
	"net/http"
	"strings"
)

// HTTPSRedirect answers every request with 308 Permanent Redirect to the
// same host, path and query over https, at the port httpsPort returns
// (left out when it is 443). 308 keeps the method and body, unlike 301.
// A request without a usable Host gets 400: there is nowhere to send it.
func HTTPSRedirect(httpsPort func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
		if host == "" || strings.ContainsAny(host, "/\\@ ") {
			http.Error(w, "400 Bad Request: no Host to redirect to", http.StatusBadRequest)
			return
		}
		if port := httpsPort(); port != "443" {
			host = net.JoinHostPort(host, port)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

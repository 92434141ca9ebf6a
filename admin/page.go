package admin

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The stats page: one HTML document with its style and script inline, so
// that it needs nothing but the admin listener. The server renders it
// whole from the same JSON its script then fetches every second, so it
// reads the same with JavaScript off.
//
//go:embed page.html
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"num":    func(n any) string { return formatCount(fmt.Sprint(n)) },
	"pct":    func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"barw":   func(f float64) string { return fmt.Sprintf("%.1f", math.Min(100, math.Max(0, 100*f))) },
	"fixed":  func(f float64) string { return fmt.Sprintf("%.2f", f) },
	"uptime": func(t time.Time) string { return formatUptime(time.Since(t)) },
	"clock":  func(t time.Time) string { return t.Local().Format("15:04:05") },
	"errors": func(b pageBackend) uint64 { return b.Responses["5xx"] + b.ConnectFailures },
}).Parse(pageSource))

// pageStats is what the page shows of GET /api/stats. It is decoded from
// that answer's JSON, leniently, so that the page shows whatever fields
// the running version has: the backends' response counts as a map, and
// the reload counts absent (nil) from a version that has none.
type pageStats struct {
	Stats
	Backends []pageBackend `json:"backends"`
	Reload   *ReloadStats  `json:"reload"`
}

// pageBackend is one backend of pageStats.
type pageBackend struct {
	BackendStatus
	ConnectionsTotal uint64            `json:"connections_total"`
	RequestsTotal    uint64            `json:"requests_total"`
	Responses        map[string]uint64 `json:"responses"`
	ConnectFailures  uint64            `json:"connect_failures_total"`
}

// pageData is what the template renders.
type pageData struct {
	Stats     pageStats
	NAT       NATView
	HaveStats bool   // false: this version has no /api/stats (or it failed); backends come from /api/backends
	Locked    bool   // admin.token is set: the page asks for it and shows nothing before
	Token     string // the page token, see pageTokenOK
	Nonce     string // of the inline script, for the Content-Security-Policy
	Repins    uint64 // of every reason
	Taking    int    // backends up and ready
	Down      int    // backends down
}

// page answers GET / with the stats page. api serves the JSON the page is
// rendered from.
func (s *Server) page(api *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var nonce [16]byte
		rand.Read(nonce[:])
		d := pageData{Token: s.pageToken(), Nonce: base64.RawStdEncoding.EncodeToString(nonce[:]), Locked: s.bearer().set}
		// The script asks for /api/stats only where it is served.
		_, pattern := api.Handler(&http.Request{Method: http.MethodGet, Host: r.Host, URL: &url.URL{Path: "/api/stats"}})
		d.HaveStats = pattern != "/"
		if !d.Locked {
			d.Stats, d.HaveStats = s.pageStats(api, r)
			d.NAT = s.Instance.NAT(defaultNATLimit)
			if d.Stats.Mode == "" {
				d.Stats.Mode = d.NAT.Mode
			}
			for _, n := range d.Stats.Repins {
				d.Repins += n
			}
			for _, b := range d.Stats.Backends {
				switch {
				case b.Health == "down":
					d.Down++
				case b.State == "ready":
					d.Taking++
				}
			}
		}
		var buf bytes.Buffer
		if err := pageTemplate.Execute(&buf, d); err != nil {
			writeError(w, http.StatusInternalServerError, "rendering the page: "+err.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; script-src 'nonce-%[1]s'; style-src 'unsafe-inline'; "+
			"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", d.Nonce))
		w.Write(buf.Bytes())
	}
}

// pageStats reads GET /api/stats through api, as the page's script will.
// Without that call (ok false) the backends come from Backends alone.
func (s *Server) pageStats(api http.Handler, r *http.Request) (st pageStats, ok bool) {
	req := r.Clone(r.Context())
	req.Method, req.Body, req.ContentLength = http.MethodGet, http.NoBody, 0
	req.URL = &url.URL{Path: "/api/stats"}
	req.RequestURI = "/api/stats"
	var rec recorder
	api.ServeHTTP(&rec, req)
	if rec.status == http.StatusOK && json.Unmarshal(rec.body.Bytes(), &st) == nil {
		return st, true
	}
	st = pageStats{Stats: Stats{Time: time.Now()}}
	for _, b := range s.Instance.Backends() {
		st.Backends = append(st.Backends, pageBackend{BackendStatus: b})
	}
	return st, false
}

// recorder keeps an in-process answer of the API for the page.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *recorder) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *recorder) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *recorder) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(b)
}

// formatCount writes the decimal number s with thin spaces between
// thousands: 12 345 678.
func formatCount(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u2009")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatUptime writes d in its two largest units: 3d 4h, 5h 12m, 42s.
func formatUptime(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", max(d/time.Second, 0))
}

package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lbctl/lbctl/admin"
	"github.com/lbctl/lbctl/admin/admintest"
	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/eventually"
)

// metricsToken is the admin token of the instances these tests scrape.
const metricsToken = "scrape-token"

// serveAdmin serves the runtime API of in on loopback, with metricsToken,
// until the test ends, and returns its base URL.
func serveAdmin(t *testing.T, in *Instance) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admintest.Serve(t, &admin.Server{Instance: in, Token: metricsToken, Logger: slog.New(slog.DiscardHandler)}, ln, nil)
	return "http://" + ln.Addr().String()
}

// scrape GETs base/metrics with the token and parses the answer with the
// Prometheus text parser.
func scrape(t *testing.T, base string) metrics {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return metrics(fams)
}

// metrics is one parsed scrape, by family name.
type metrics map[string]*dto.MetricFamily

// value returns the value of the counter, gauge or (its count) histogram
// of family name whose labels include want ("k=v" pairs); it fails the
// test when there is not exactly one such series.
func (m metrics) value(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	var found []float64
	for _, mt := range m.series(t, name) {
		if hasLabels(mt, want) {
			switch {
			case mt.Counter != nil:
				found = append(found, mt.Counter.GetValue())
			case mt.Gauge != nil:
				found = append(found, mt.Gauge.GetValue())
			case mt.Histogram != nil:
				found = append(found, float64(mt.Histogram.GetSampleCount()))
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	return found[0]
}

// sum returns the sum of the values of family name over the series whose
// labels include want.
func (m metrics) sum(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	total := 0.0
	for _, mt := range m.series(t, name) {
		if !hasLabels(mt, want) {
			continue
		}
		switch {
		case mt.Counter != nil:
			total += mt.Counter.GetValue()
		case mt.Gauge != nil:
			total += mt.Gauge.GetValue()
		case mt.Histogram != nil:
			total += float64(mt.Histogram.GetSampleCount())
		}
	}
	return total
}

func (m metrics) series(t *testing.T, name string) []*dto.Metric {
	t.Helper()
	f, ok := m[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape", name)
	}
	return f.GetMetric()
}

func hasLabels(mt *dto.Metric, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		ok := false
		for _, l := range mt.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// checkFamilies checks that every family of want is in m with its type
// and exactly its label names on every series, and that every family in
// absent is not.
func checkFamilies(t *testing.T, m metrics, want map[string]familySpec, absent []string) {
	t.Helper()
	for name, spec := range want {
		f, ok := m[name]
		if !ok {
			t.Errorf("no metric %s", name)
			continue
		}
		if f.GetType() != spec.typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), spec.typ)
		}
		if len(f.GetMetric()) == 0 {
			t.Errorf("%s has no series", name)
		}
		for _, mt := range f.GetMetric() {
			var names []string
			for _, l := range mt.GetLabel() {
				names = append(names, l.GetName())
			}
			if strings.Join(names, ",") != spec.labels {
				t.Errorf("%s has labels %v, want %s", name, names, spec.labels)
				break
			}
		}
	}
	for _, name := range absent {
		if _, ok := m[name]; ok {
			t.Errorf("metric %s present, want it absent in this mode", name)
		}
	}
}

// familySpec is a metric family's type and its label names, sorted and
// joined with commas.
type familySpec struct {
	typ    dto.MetricType
	labels string
}

var (
	counter   = dto.MetricType_COUNTER
	gauge     = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
)

// commonFamilies are the families of both modes.
var commonFamilies = map[string]familySpec{
	"lbctl_backend_up":                     {gauge, "backend"},
	"lbctl_backend_admin_state":            {gauge, "backend,state"},
	"lbctl_backend_active_connections":     {gauge, "backend"},
	"lbctl_backend_connections_total":      {counter, "backend"},
	"lbctl_backend_connect_failures_total": {counter, "backend"},
	"lbctl_backend_pinned_clients":         {gauge, "backend"},
	"lbctl_repins_total":                   {counter, "reason"},
	"lbctl_config_reloads_total":           {counter, "result"},
	"lbctl_config_last_reload_success":     {gauge, ""},
	"lbctl_build_info":                     {gauge, "goversion,mode,revision,version"},
	"lbctl_state_save_failures_total":      {counter, ""},
	"lbctl_access_log_lines_total":         {counter, ""},
	"lbctl_access_log_dropped_total":       {counter, ""},
	"lbctl_front_active_connections":       {gauge, ""},
	"lbctl_front_connections_total":        {counter, ""},
	"go_goroutines":                        {gauge, ""},
	"process_open_fds":                     {gauge, ""},
}

var l4Families = map[string]familySpec{
	"lbctl_affinity_entries":           {gauge, ""},
	"lbctl_affinity_capacity":          {gauge, ""},
	"lbctl_affinity_lookups_total":     {counter, "result"},
	"lbctl_affinity_evictions_total":   {counter, ""},
	"lbctl_affinity_expirations_total": {counter, ""},
}

var l7Families = map[string]familySpec{
	"lbctl_backend_requests_total":        {counter, "backend,code"},
	"lbctl_backend_response_head_seconds": {histogram, "backend"},
	"lbctl_front_requests_total":          {counter, ""},
}

func merge(ms ...map[string]familySpec) map[string]familySpec {
	out := map[string]familySpec{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func familyNames(m map[string]familySpec) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// dialFrom connects to addr from the loopback address src, one client of
// its own.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// echoOnce sends a line on c and reads it back.
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

// L4: the scrape has every metric with its type and labels, while a
// connection is open and after traffic; the connection counters move by
// exactly the connections made, a drain shows in the admin state, a
// maintenance re-pin in the re-pins by reason, and reloads in the reload
// counters.
func TestMetricsL4(t *testing.T) {
	b1, b2 := startEchoBackend(t), startEchoBackend(t)
	cfg := testConfig(t, b1.ln.Addr().String())
	cfg.Health.Check = "none"
	cfg.Backends = append(cfg.Backends,
		config.Backend{ID: "app-02", Address: b2.ln.Addr().String(), Weight: 1},
		config.Backend{ID: "app-03", Address: refusedAddress(t), Weight: 1})
	next := cfg
	in, addr := startInstance(t, cfg, &next)
	base := serveAdmin(t, in)

	before := scrape(t, base)
	checkFamilies(t, before, merge(commonFamilies, l4Families), familyNames(l7Families))

	// One connection held open while the scrape runs.
	held := dialFrom(t, "127.0.0.2", addr)
	defer held.Close()
	echoOnce(t, held)
	during := scrape(t, base)
	if got := during.sum(t, "lbctl_backend_active_connections"); got != 1 {
		t.Errorf("active connections to backends = %v during a held connection, want 1", got)
	}
	if got := during.value(t, "lbctl_front_active_connections"); got != 1 {
		t.Errorf("front active connections = %v, want 1", got)
	}

	const clients = 10
	for i := range clients {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), addr)
		echoOnce(t, c)
		c.Close()
	}
	held.Close()
	eventually.True(t, "no connection left open", func() bool { return in.Stats().Front.ActiveConnections == 0 })
	after := scrape(t, base)
	checkFamilies(t, after, merge(commonFamilies, l4Families), familyNames(l7Families))
	const conns = clients + 1
	if got := after.sum(t, "lbctl_backend_connections_total") - before.sum(t, "lbctl_backend_connections_total"); got != conns {
		t.Errorf("backend connections moved by %v, want %d", got, conns)
	}
	if got := after.value(t, "lbctl_front_connections_total") - before.value(t, "lbctl_front_connections_total"); got != conns {
		t.Errorf("front connections moved by %v, want %d", got, conns)
	}
	lookups := after.sum(t, "lbctl_affinity_lookups_total") - before.sum(t, "lbctl_affinity_lookups_total")
	if lookups != conns {
		t.Errorf("affinity lookups moved by %v, want %d", lookups, conns)
	}
	if got := after.value(t, "lbctl_affinity_entries"); got != conns {
		t.Errorf("affinity entries = %v, want %d (one per client)", got, conns)
	}
	if got := after.sum(t, "lbctl_backend_pinned_clients"); got != conns {
		t.Errorf("pinned clients = %v, want %d", got, conns)
	}
	// app-03 refuses: each client the policy sent there failed over, and
	// none is pinned to it.
	if got := after.value(t, "lbctl_backend_connect_failures_total", "backend=app-03"); got == 0 {
		t.Error("no connect failure counted for app-03, which refuses")
	}
	if got := after.value(t, "lbctl_backend_connections_total", "backend=app-03"); got != 0 {
		t.Errorf("app-03 connections = %v, want 0", got)
	}
	if got := after.value(t, "lbctl_backend_active_connections", "backend=app-01"); got != 0 {
		t.Errorf("app-01 active = %v after the clients left, want 0", got)
	}

	// A drain shows in the admin state; a client of a backend put in
	// maintenance moves and is counted as a re-pin for that reason.
	pin, ok, err := in.Pin("127.0.0.10")
	if err != nil || !ok {
		t.Fatalf("pin of 127.0.0.10: %v, %v", ok, err)
	}
	// app-03 drains (it has no clients), the client's backend goes into
	// maintenance, and the client moves to the third.
	other := "app-03"
	if _, err := in.SetAdminState(other, backend.Drain, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := in.SetAdminState(pin.Backend, backend.Maint, admin.StateOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, "127.0.0.10", addr)
	echoOnce(t, c)
	c.Close()
	m := scrape(t, base)
	for _, st := range []string{"ready", "drain", "maint"} {
		want := map[string]float64{"ready": 0, "drain": 1, "maint": 0}[st]
		if got := m.value(t, "lbctl_backend_admin_state", "backend="+other, "state="+st); got != want {
			t.Errorf("admin_state{%s,%s} = %v, want %v", other, st, got, want)
		}
	}
	if got := m.value(t, "lbctl_backend_admin_state", "backend="+pin.Backend, "state=maint"); got != 1 {
		t.Errorf("admin_state{%s,maint} = %v, want 1", pin.Backend, got)
	}
	if got := m.value(t, "lbctl_repins_total", "reason=maint"); got != 1 {
		t.Errorf("repins{maint} = %v, want 1", got)
	}
	// A client placed on app-03 was pinned there and moved when the dial
	// failed: one re-pin for each failure, as the table counts them.
	if got, want := m.value(t, "lbctl_repins_total", "reason=failed"), m.value(t, "lbctl_backend_connect_failures_total", "backend=app-03"); got != want {
		t.Errorf("repins{failed} = %v, want %v (the failed dials)", got, want)
	}
	if got, want := m.sum(t, "lbctl_repins_total"), float64(in.Stats().Affinity.Repins); got != want {
		t.Errorf("repins of every reason = %v, the table counts %v", got, want)
	}

	checkReloadMetrics(t, in, base, &next)
}

// checkReloadMetrics reloads in twice, once applied and once refused, and
// checks the reload metrics after each. *next is what in.Load returns.
func checkReloadMetrics(t *testing.T, in *Instance, base string, next **config.Config) {
	t.Helper()
	m := scrape(t, base)
	if m.value(t, "lbctl_config_reloads_total", "result=success") != 0 || m.value(t, "lbctl_config_last_reload_success") != 1 {
		t.Errorf("before any reload: reloads %v, last success %v; want 0 and 1",
			m.value(t, "lbctl_config_reloads_total", "result=success"), m.value(t, "lbctl_config_last_reload_success"))
	}
	if _, err := in.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	m = scrape(t, base)
	if got := m.value(t, "lbctl_config_reloads_total", "result=success"); got != 1 {
		t.Errorf("reloads{success} = %v, want 1", got)
	}
	bad := **next
	bad.Mode = map[string]string{"l4": "l7", "l7": "l4"}[bad.Mode]
	*next = &bad
	var rerr *admin.ReloadError
	if _, err := in.Reload(context.Background()); !errors.As(err, &rerr) {
		t.Fatalf("reload changing the mode: %v, want a refusal", err)
	}
	m = scrape(t, base)
	if got := m.value(t, "lbctl_config_reloads_total", "result=failure"); got != 1 {
		t.Errorf("reloads{failure} = %v, want 1", got)
	}
	if got := m.value(t, "lbctl_config_last_reload_success"); got != 0 {
		t.Errorf("last_reload_success = %v after a refusal, want 0", got)
	}
	st := in.Stats().Reload
	if st.ReloadsOK != 1 || st.ReloadsFailed != 1 || st.LastOK || !strings.Contains(st.LastSummary, "mode") {
		t.Errorf("Stats().Reload = %+v", st)
	}
}

// startStatusBackend serves HTTP on loopback until the test ends: "/404"
// answers 404, anything else 200 with the body id.
func startStatusBackend(t *testing.T, id string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/404" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, id)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// l7TestConfig returns an L7 config over backends app-01, app-02, ... at
// addrs, without health checks.
func l7TestConfig(t *testing.T, addrs ...string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Mode = "l7"
	cfg.Health.Check = "none"
	for i, a := range addrs {
		cfg.Backends = append(cfg.Backends, config.Backend{ID: fmt.Sprintf("app-%02d", i+1), Address: a, Weight: 1})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return &cfg
}

// httpClient is one kept-alive client connection to the L7 proxy.
type httpClient struct {
	c net.Conn
	r *bufio.Reader
}

func newHTTPClient(t *testing.T, src, addr string) *httpClient {
	t.Helper()
	c := dialFrom(t, src, addr)
	t.Cleanup(func() { c.Close() })
	return &httpClient{c: c, r: bufio.NewReader(c)}
}

// get sends GET path with the Cookie field cookie (none when empty) and
// returns the status, the body and the persistence cookie set, if any.
func (h *httpClient) get(t *testing.T, path, cookie string) (status int, body, setCookie string) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	if cookie != "" {
		req += "Cookie: " + cookie + "\r\n"
	}
	if _, err := io.WriteString(h.c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(h.r, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sc, _, _ := strings.Cut(resp.Header.Get("Set-Cookie"), ";")
	return resp.StatusCode, string(b), sc
}

// L7: the scrape has every metric with its type and labels; requests by
// status class, the response-head histogram and the front door's request
// count move by exactly the requests sent; reloads are counted.
func TestMetricsL7(t *testing.T) {
	cfg := l7TestConfig(t, startStatusBackend(t, "app-01"), startStatusBackend(t, "app-02"))
	next := cfg
	in, addr := startInstance(t, cfg, &next)
	base := serveAdmin(t, in)

	before := scrape(t, base)
	checkFamilies(t, before, merge(commonFamilies, l7Families), familyNames(l4Families))

	h := newHTTPClient(t, "127.0.0.2", addr)
	_, _, cookie := h.get(t, "/", "")
	if cookie == "" {
		t.Fatal("no persistence cookie on the first response")
	}
	const ok, notFound = 8, 3
	for range ok - 1 {
		if st, _, _ := h.get(t, "/", cookie); st != 200 {
			t.Fatalf("status %d, want 200", st)
		}
	}
	for range notFound {
		if st, _, _ := h.get(t, "/404", cookie); st != 404 {
			t.Fatalf("status %d, want 404", st)
		}
	}
	// A request is counted once its response has gone out.
	base0 := uint64(before.value(t, "lbctl_front_requests_total"))
	eventually.True(t, "every request counted", func() bool { return in.Stats().Front.RequestsTotal == base0+ok+notFound })
	during := scrape(t, base) // the client's connection is still open
	checkFamilies(t, during, merge(commonFamilies, l7Families), familyNames(l4Families))
	if got := during.value(t, "lbctl_front_active_connections"); got != 1 {
		t.Errorf("front active connections = %v, want 1", got)
	}
	delta := func(name string, labels ...string) float64 {
		return during.sum(t, name, labels...) - before.sum(t, name, labels...)
	}
	if got := delta("lbctl_backend_requests_total", "code=2xx"); got != ok {
		t.Errorf("2xx requests moved by %v, want %d", got, ok)
	}
	if got := delta("lbctl_backend_requests_total", "code=4xx"); got != notFound {
		t.Errorf("4xx requests moved by %v, want %d", got, notFound)
	}
	for _, code := range []string{"1xx", "3xx", "5xx"} {
		if got := delta("lbctl_backend_requests_total", "code="+code); got != 0 {
			t.Errorf("%s requests moved by %v, want 0", code, got)
		}
	}
	if got := delta("lbctl_backend_response_head_seconds"); got != ok+notFound {
		t.Errorf("response-head observations moved by %v, want %d", got, ok+notFound)
	}
	if got := delta("lbctl_front_requests_total"); got != ok+notFound {
		t.Errorf("front requests moved by %v, want %d", got, ok+notFound)
	}
	// All of them went to the pinned backend, over one kept-alive
	// connection.
	pinned := strings.TrimPrefix(cookie, "SERVERID=")
	if got := during.sum(t, "lbctl_backend_requests_total", "backend="+pinned) - before.sum(t, "lbctl_backend_requests_total", "backend="+pinned); got != ok+notFound {
		t.Errorf("requests to %s moved by %v, want %d", pinned, got, ok+notFound)
	}
	if got := delta("lbctl_backend_connections_total"); got != 1 {
		t.Errorf("backend connections moved by %v, want 1 (kept alive)", got)
	}
	if got := during.value(t, "lbctl_backend_pinned_clients", "backend="+pinned); got != 1 {
		t.Errorf("pinned clients of %s = %v, want 1", pinned, got)
	}
	// The histogram's buckets are cumulative and end at its count.
	for _, mt := range during.series(t, "lbctl_backend_response_head_seconds") {
		h := mt.GetHistogram()
		var last uint64
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() < last {
				t.Errorf("bucket le=%v count %d below the one before (%d)", b.GetUpperBound(), b.GetCumulativeCount(), last)
			}
			last = b.GetCumulativeCount()
		}
		if last > h.GetSampleCount() {
			t.Errorf("last bucket %d above the count %d", last, h.GetSampleCount())
		}
	}

	// /api/stats shows the same counts.
	st := in.Stats()
	var reqs, twoxx uint64
	for _, b := range st.Backends {
		reqs += b.RequestsTotal
		twoxx += b.Responses.C2xx
	}
	if reqs != ok+notFound || twoxx != ok || st.Affinity != nil || st.Mode != "l7" || st.Front.RequestsTotal != ok+notFound {
		t.Errorf("Stats: requests %d, 2xx %d, affinity %v, mode %q, front %+v", reqs, twoxx, st.Affinity, st.Mode, st.Front)
	}

	checkReloadMetrics(t, in, base, &next)
}

// /metrics answers only with the admin token, like the API.
func TestMetricsNeedTheToken(t *testing.T) {
	b := startEchoBackend(t)
	cfg := testConfig(t, b.ln.Addr().String())
	next := cfg
	in, _ := startInstance(t, cfg, &next)
	base := serveAdmin(t, in)
	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /metrics with %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	m := scrape(t, base)
	if got := m.value(t, "lbctl_build_info", "mode=l4"); got != 1 {
		t.Errorf("build_info = %v, want 1", got)
	}
}

// A failed save of the state file is counted, so that saving on a full or
// read-only filesystem shows in a metric; a good save is not counted.
func TestStateSaveFailuresCounted(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "missing-folder", "pins")
	var out lockedBuffer
	in := newStateInstance(t, "l4", file, "1h", &out, "app-01")
	defer in.Close()
	base := serveAdmin(t, in)
	for range 2 {
		if err := in.SaveState(); err == nil {
			t.Fatal("SaveState into a missing folder succeeded")
		}
	}
	if got := scrape(t, base).value(t, "lbctl_state_save_failures_total"); got != 2 {
		t.Errorf("state_save_failures_total = %v after two failed saves, want 2", got)
	}
	if err := os.Mkdir(filepath.Join(dir, "missing-folder"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := in.SaveState(); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	if got := in.Stats().StateSaveFailures; got != 2 {
		t.Errorf("StateSaveFailures = %d after a good save, want still 2", got)
	}
}

// scrapeWhile scrapes base again and again while traffic runs in a
// goroutine of its own, and checks that no counter of the lbctl families
// ever goes down between two scrapes. It returns traffic's error.
func scrapeWhile(t *testing.T, base string, traffic func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- traffic() }()
	last := map[string]float64{}
	for scrapes := 0; ; scrapes++ {
		m := scrape(t, base)
		for name, f := range m {
			if !strings.HasPrefix(name, "lbctl_") || f.GetType() != counter {
				continue
			}
			for _, mt := range f.GetMetric() {
				key := name + fmt.Sprint(mt.GetLabel())
				if v := mt.GetCounter().GetValue(); v < last[key] {
					t.Errorf("%s went down from %v to %v", key, last[key], v)
				} else {
					last[key] = v
				}
			}
		}
		select {
		case err := <-done:
			t.Logf("%d scrapes while the traffic ran", scrapes+1)
			return err
		default:
		}
	}
}

// Scrapes taken while clients keep coming in both modes see counters that
// only go up, and the totals end exactly at what was sent.
func TestScrapeUnderTraffic(t *testing.T) {
	t.Run("l4", func(t *testing.T) {
		b := startEchoBackend(t)
		cfg := testConfig(t, b.ln.Addr().String())
		next := cfg
		in, addr := startInstance(t, cfg, &next)
		base := serveAdmin(t, in)
		const conns = 300
		err := scrapeWhile(t, base, func() error {
			for i := range conns {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}, Timeout: 10 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					return err
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				buf := make([]byte, 5)
				_, err = io.WriteString(c, "ping\n")
				if err == nil {
					_, err = io.ReadFull(c, buf)
				}
				c.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually.True(t, "every connection ended", func() bool { return in.Stats().Front.ActiveConnections == 0 })
		m := scrape(t, base)
		if got := m.value(t, "lbctl_backend_connections_total", "backend=app-01"); got != conns {
			t.Errorf("connections = %v, want %d", got, conns)
		}
		if got := m.value(t, "lbctl_front_connections_total"); got != conns {
			t.Errorf("front connections = %v, want %d", got, conns)
		}
	})
	t.Run("l7", func(t *testing.T) {
		cfg := l7TestConfig(t, startStatusBackend(t, "app-01"))
		next := cfg
		in, addr := startInstance(t, cfg, &next)
		base := serveAdmin(t, in)
		const requests = 1000
		h := newHTTPClient(t, "127.0.0.2", addr)
		err := scrapeWhile(t, base, func() error {
			for range requests {
				if _, err := io.WriteString(h.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					return err
				}
				resp, err := http.ReadResponse(h.r, &http.Request{Method: "GET"})
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					return fmt.Errorf("status %d, %v", resp.StatusCode, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually.True(t, "every request counted", func() bool { return in.Stats().Front.RequestsTotal == requests })
		m := scrape(t, base)
		if got := m.value(t, "lbctl_backend_requests_total", "backend=app-01", "code=2xx"); got != requests {
			t.Errorf("2xx requests = %v, want %d", got, requests)
		}
		if got := m.value(t, "lbctl_backend_response_head_seconds", "backend=app-01"); got != requests {
			t.Errorf("response-head observations = %v, want %d", got, requests)
		}
	})
}

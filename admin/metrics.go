package admin

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lbctl/lbctl/backend"
)

// The metrics of GET /metrics. Each is read at scrape time from one Stats
// snapshot, which reads the atomics the data path keeps: a scrape adds no
// lock and no work to a request or connection. Labels are bounded: backend
// ids from the config, status classes, admin states, re-pin reasons,
// never a client address.
var (
	descBackendUp = prometheus.NewDesc("lbctl_backend_up",
		"Whether health checks consider the backend up (1) or down (0).", []string{"backend"}, nil)
	descBackendAdminState = prometheus.NewDesc("lbctl_backend_admin_state",
		"The backend's admin state: 1 for the state it is in, 0 for the others.", []string{"backend", "state"}, nil)
	descBackendActive = prometheus.NewDesc("lbctl_backend_active_connections",
		"Connections open to the backend.", []string{"backend"}, nil)
	descBackendConns = prometheus.NewDesc("lbctl_backend_connections_total",
		"Connections opened to the backend.", []string{"backend"}, nil)
	descBackendRequests = prometheus.NewDesc("lbctl_backend_requests_total",
		"L7 requests sent to the backend, by the class of the status the client got.", []string{"backend", "code"}, nil)
	descBackendConnectFailures = prometheus.NewDesc("lbctl_backend_connect_failures_total",
		"Failed attempts to connect to the backend.", []string{"backend"}, nil)
	descBackendPinned = prometheus.NewDesc("lbctl_backend_pinned_clients",
		"Clients pinned to the backend: pins in the affinity table (L4), or distinct clients whose cookie it honoured in the last minute or two (L7, an estimate).", []string{"backend"}, nil)
	descBackendHead = prometheus.NewDesc("lbctl_backend_response_head_seconds",
		"Time from the request sent to the backend to its response head read (L7).", []string{"backend"}, nil)
	descRepins = prometheus.NewDesc("lbctl_repins_total",
		"Clients moved off their pinned backend, by reason.", []string{"reason"}, nil)
	descAffinityEntries = prometheus.NewDesc("lbctl_affinity_entries",
		"Pins held in the L4 affinity table.", nil, nil)
	descAffinityCapacity = prometheus.NewDesc("lbctl_affinity_capacity",
		"The most pins the L4 affinity table holds.", nil, nil)
	descAffinityLookups = prometheus.NewDesc("lbctl_affinity_lookups_total",
		"Lookups of the L4 affinity table, by result (hit or miss).", []string{"result"}, nil)
	descAffinityEvictions = prometheus.NewDesc("lbctl_affinity_evictions_total",
		"Pins evicted from the L4 affinity table to stay within its capacity.", nil, nil)
	descAffinityExpirations = prometheus.NewDesc("lbctl_affinity_expirations_total",
		"Pins dropped from the L4 affinity table because their TTL ran out.", nil, nil)
	descReloads = prometheus.NewDesc("lbctl_config_reloads_total",
		"Config reloads, by result (success or failure).", []string{"result"}, nil)
	descLastReload = prometheus.NewDesc("lbctl_config_last_reload_success",
		"Whether the last config reload was applied (1) or refused (0); 1 before the first.", nil, nil)
	descBuildInfo = prometheus.NewDesc("lbctl_build_info",
		"Always 1; the labels say which lbctl runs.", []string{"version", "revision", "goversion", "mode"}, nil)
	descStateSaveFailures = prometheus.NewDesc("lbctl_state_save_failures_total",
		"Saves of the state file that failed.", nil, nil)
	descAccessLogWritten = prometheus.NewDesc("lbctl_access_log_lines_total",
		"Access log lines handed to the output.", nil, nil)
	descAccessLogDropped = prometheus.NewDesc("lbctl_access_log_dropped_total",
		"Access log lines dropped because the output was too slow or failed.", nil, nil)
	descFrontActive = prometheus.NewDesc("lbctl_front_active_connections",
		"Client connections open.", nil, nil)
	descFrontConns = prometheus.NewDesc("lbctl_front_connections_total",
		"Client connections accepted.", nil, nil)
	descFrontRequests = prometheus.NewDesc("lbctl_front_requests_total",
		"Requests read from clients (L7).", nil, nil)
	descFrontProxyRefused = prometheus.NewDesc("lbctl_front_proxy_refused_total",
		"Client connections refused for their PROXY protocol header: from a peer not in listen_proxy, or without a valid header in time.", nil, nil)
	descFrontLoopConns = prometheus.NewDesc("lbctl_front_loop_connections_total",
		"Client connections accepted by each L4 event loop.", []string{"loop"}, nil)
	descClusterMembers = prometheus.NewDesc("lbctl_cluster_members",
		"Live members of the cluster, this one included.", nil, nil)
	descClusterPinsSent = prometheus.NewDesc("lbctl_cluster_pins_sent_total",
		"Local pins and re-pins sent to the other members.", nil, nil)
	descClusterPinsDropped = prometheus.NewDesc("lbctl_cluster_pins_dropped_total",
		"Local pins and re-pins not sent because the outbox was full; the next push/pull carries them.", nil, nil)
	descClusterPinsReceived = prometheus.NewDesc("lbctl_cluster_pins_received_total",
		"Pins received from the other members.", nil, nil)
	descClusterPinsApplied = prometheus.NewDesc("lbctl_cluster_pins_applied_total",
		"Pins received from the other members that changed the affinity table.", nil, nil)
	descClusterAdminApplied = prometheus.NewDesc("lbctl_cluster_admin_states_applied_total",
		"Admin states received from the other members that changed a backend.", nil, nil)
	descClusterBadMessages = prometheus.NewDesc("lbctl_cluster_bad_messages_total",
		"Messages from the other members that did not decode.", nil, nil)
)

// statusClasses are the code label's values, in the order of
// ResponseClasses.Classes.
var statusClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// adminStates are the state label's values.
var adminStates = [...]backend.AdminState{backend.Ready, backend.Drain, backend.Maint}

// headBounds are the histogram's bucket bounds in seconds.
var headBounds = func() [len(backend.HeadBuckets)]float64 {
	var out [len(backend.HeadBuckets)]float64
	for i, d := range backend.HeadBuckets {
		out[i] = d.Seconds()
	}
	return out
}()

// collector is the prometheus.Collector of one Instance.
type collector struct {
	in Instance
}

// Describe sends every metric's description.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descBackendUp, descBackendAdminState, descBackendActive, descBackendConns,
		descBackendRequests, descBackendConnectFailures, descBackendPinned, descBackendHead,
		descRepins, descAffinityEntries, descAffinityCapacity, descAffinityLookups,
		descAffinityEvictions, descAffinityExpirations, descReloads, descLastReload,
		descBuildInfo, descStateSaveFailures, descAccessLogWritten, descAccessLogDropped,
		descFrontActive, descFrontConns, descFrontRequests, descFrontProxyRefused, descFrontLoopConns,
		descClusterMembers, descClusterPinsSent, descClusterPinsDropped, descClusterPinsReceived,
		descClusterPinsApplied, descClusterAdminApplied, descClusterBadMessages,
	} {
		ch <- d
	}
}

// Collect reads one Stats snapshot and sends it as metrics. The metrics
// of L7 requests (requests by code, the response-head histogram, front
// requests) appear in L7 only, those of the affinity table in L4 only,
// those of the cluster with [cluster] only.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.in.Stats()
	l7 := st.Mode == "l7"
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for i := range st.Backends {
		b := &st.Backends[i]
		gauge(descBackendUp, boolFloat(b.Health == "up"), b.ID)
		for _, s := range adminStates {
			gauge(descBackendAdminState, boolFloat(b.State == s.String()), b.ID, s.String())
		}
		gauge(descBackendActive, float64(b.Active), b.ID)
		counter(descBackendConns, b.ConnectionsTotal, b.ID)
		counter(descBackendConnectFailures, b.ConnectFailuresTotal, b.ID)
		gauge(descBackendPinned, float64(b.Pinned), b.ID)
		if !l7 {
			continue
		}
		for j, n := range b.Responses.Classes() {
			counter(descBackendRequests, n, b.ID, statusClasses[j])
		}
		ch <- headHistogram(b.ID, b.ResponseHead)
	}
	for _, r := range backend.RepinReasons {
		counter(descRepins, st.Repins[r.String()], r.String())
	}
	if a := st.Affinity; a != nil {
		gauge(descAffinityEntries, float64(a.Entries))
		gauge(descAffinityCapacity, float64(a.Capacity))
		counter(descAffinityLookups, a.Hits, "hit")
		counter(descAffinityLookups, a.Misses, "miss")
		counter(descAffinityEvictions, a.Evictions)
		counter(descAffinityExpirations, a.Expirations)
	}
	counter(descReloads, st.Reload.ReloadsOK, "success")
	counter(descReloads, st.Reload.ReloadsFailed, "failure")
	gauge(descLastReload, boolFloat(st.Reload.LastOK))
	gauge(descBuildInfo, 1, st.Version, st.Revision, runtime.Version(), st.Mode)
	counter(descStateSaveFailures, st.StateSaveFailures)
	counter(descAccessLogWritten, st.AccessLog.Written)
	counter(descAccessLogDropped, st.AccessLog.Dropped)
	gauge(descFrontActive, float64(st.Front.ActiveConnections))
	counter(descFrontConns, st.Front.ConnectionsTotal)
	if l7 {
		counter(descFrontRequests, st.Front.RequestsTotal)
	}
	counter(descFrontProxyRefused, st.Front.ProxyRefused)
	for i, n := range st.Front.LoopConnections {
		counter(descFrontLoopConns, n, strconv.Itoa(i))
	}
	if cl := st.Cluster; cl != nil {
		gauge(descClusterMembers, float64(cl.Members))
		counter(descClusterPinsSent, cl.PinsSent)
		counter(descClusterPinsDropped, cl.PinsDropped)
		counter(descClusterPinsReceived, cl.PinsReceived)
		counter(descClusterPinsApplied, cl.PinsApplied)
		counter(descClusterAdminApplied, cl.AdminApplied)
		counter(descClusterBadMessages, cl.BadMessages)
	}
}

// headHistogram returns the response-head histogram of backend id. The
// count is the sum of the buckets, so that the two always agree; the sum
// is read on its own and may run a request ahead.
func headHistogram(id string, h backend.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(headBounds))
	var cum uint64
	for i, le := range headBounds {
		cum += h.Buckets[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(descBackendHead, h.Count(), h.Sum.Seconds(), buckets, id)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler returns the handler of GET /metrics: the instance's
// metrics with the Go runtime's and the process's, in the Prometheus text
// format (or another format the scraper asks for).
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{in: s.Instance},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.logger()},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// promLogger passes promhttp's errors to the server's logger.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}

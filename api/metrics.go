package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgwarden/pgwarden/dcs"
)

// Metrics holds pgwarden's own metrics, which the HA loop records and
// GET /metrics exposes next to Patroni's. Safe for concurrent use.
type Metrics struct {
	// Decisions counts HA decisions by reason (the decision message).
	Decisions *prometheus.CounterVec
	// Failovers and Switchovers count completed manual and automatic
	// leader changes this node observed or drove.
	Failovers   prometheus.Counter
	Switchovers prometheus.Counter
	// DCSCalls measures DCS call latency by operation.
	DCSCalls *prometheus.HistogramVec
	// LoopDuration measures one HA loop iteration.
	LoopDuration prometheus.Histogram
}

// NewMetrics creates the metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgwarden_decisions_total", Help: "HA loop decisions by reason."}, []string{"reason"}),
		Failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgwarden_failovers_total", Help: "Failovers completed."}),
		Switchovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgwarden_switchovers_total", Help: "Switchovers completed."}),
		DCSCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pgwarden_dcs_call_duration_seconds", Help: "Latency of DCS calls by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"op"}),
		LoopDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pgwarden_loop_duration_seconds", Help: "Duration of one HA loop iteration.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
}

// ObserveDecision counts one decision.
func (m *Metrics) ObserveDecision(reason string) { m.Decisions.WithLabelValues(reason).Inc() }

// ObserveDCSCall records the latency of one DCS call.
func (m *Metrics) ObserveDCSCall(op string, d time.Duration) {
	m.DCSCalls.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveLoop records one loop iteration.
func (m *Metrics) ObserveLoop(d time.Duration) { m.LoopDuration.Observe(d.Seconds()) }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.Decisions.Describe(ch)
	m.Failovers.Describe(ch)
	m.Switchovers.Describe(ch)
	m.DCSCalls.Describe(ch)
	m.LoopDuration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.Decisions.Collect(ch)
	m.Failovers.Collect(ch)
	m.Switchovers.Collect(ch)
	m.DCSCalls.Collect(ch)
	m.LoopDuration.Collect(ch)
}

// postgresStates numbers the PostgreSQL states for patroni_postgres_state.
var postgresStates = map[string]float64{
	"initdb": 0, "initdb_failed": 1, "custom_bootstrap": 2, "custom_bootstrap_failed": 3,
	"creating_replica": 4, "running": 5, "starting": 6, "bootstrap_starting": 7, "start_failed": 8,
	"restarting": 9, "restart_failed": 10, "stopping": 11, "stopped": 12, "stop_failed": 13, "crashed": 14,
}

// statusCollector renders the published status as Patroni's metrics
// (spec/rest-api.md §5 GET /metrics).
type statusCollector struct{ h *Handler }

func (statusCollector) Describe(chan<- *prometheus.Desc) {} // unchecked

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	st := h.status()
	now := h.clock.Now()
	v := newView(st, now)
	doc := v.document(h.cfg.Version)
	labels := prometheus.Labels{"scope": st.Scope, "name": st.Name}
	emit := func(name, help string, typ prometheus.ValueType, val float64) {
		d := prometheus.NewDesc(name, help, nil, labels)
		ch <- prometheus.MustNewConstMetric(d, typ, val)
	}
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	emit("patroni_version", "Patroni semver without periods.", gauge, versionNumber(h.cfg.Version))
	emit("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.", gauge, b(st.State == "running"))
	pst := 0.0
	if st.QueryOK && !st.PostmasterStartTime.IsZero() {
		pst = float64(st.PostmasterStartTime.UnixMicro()) / 1e6
	}
	emit("patroni_postmaster_start_time", "Epoch seconds since Postgres started.", gauge, pst)
	emit("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.", gauge, b(doc.Role == "primary"))
	loc, rec, rep := 0.0, 0.0, 0.0
	if st.QueryOK && doc.Role == "primary" {
		loc = float64(st.XLogLocation)
	} else if st.QueryOK {
		rec, rep = float64(st.ReceivedLocation), float64(st.ReplayedLocation)
	}
	emit("patroni_xlog_location", "Current location of the Postgres transaction log, 0 if this node is not the leader.", counter, loc)
	emit("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.", gauge, b(doc.Role == "standby_leader"))
	emit("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.", gauge, b(doc.Role == "replica"))
	emit("patroni_sync_standby", "Value is 1 if this node is a sync standby, 0 otherwise.", gauge, b(v.sync))
	emit("patroni_quorum_standby", "Value is 1 if this node is a quorum standby, 0 otherwise.", gauge, b(v.quorum))
	emit("patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if this node is not a replica.", counter, rec)
	emit("patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.", counter, rep)
	ts := 0.0
	if st.ReplayedTimestamp != nil {
		ts = float64(st.ReplayedTimestamp.UnixMicro()) / 1e6
	}
	emit("patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres transaction log, 0 if null.", gauge, ts)
	emit("patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise.", gauge, b(st.ReplayPaused))
	if doc.ServerVersion >= 90600 {
		emit("patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise.", gauge, b(doc.ReplicationState == "streaming"))
		emit("patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from archive, 0 otherwise.", gauge, b(doc.ReplicationState == "in archive recovery"))
	}
	emit("patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise.", gauge, float64(doc.ServerVersion))
	emit("patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked.", gauge, b(doc.ClusterUnlocked))
	emit("patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if inactive.", gauge, b(st.FailsafeActive))
	emit("patroni_failsafe_mode_enabled", "Value is 1 if failsafe mode is enabled in the configuration, 0 otherwise.", gauge, b(st.Global.FailsafeMode))
	member := false
	if st.Cluster != nil {
		_, member = st.Cluster.Failsafe[st.Name]
	}
	emit("patroni_failsafe_member", "Value is 1 if this node is a failsafe member, 0 otherwise.", gauge, b(member))
	emit("patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 otherwise.", gauge, float64(doc.Timeline))
	emit("patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted successfully by Patroni.", gauge, float64(doc.DCSLastSeen))
	emit("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.", gauge, b(st.PendingRestart))
	emit("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.", gauge, b(v.paused))
	state, ok := postgresStates[st.State]
	if !ok {
		state = -1
	}
	emit("patroni_postgres_state", "Numeric representation of Postgres state. Values: 0=initdb, 1=initdb_failed, "+
		"2=custom_bootstrap, 3=custom_bootstrap_failed, 4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, "+
		"8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed", gauge, state)
	tm := &dcs.Member{Tags: st.Tags}
	prio := 0.0
	if !tm.NoFailover() {
		prio = float64(tm.FailoverPriority())
	}
	emit("patroni_failover_priority", "Value is 0 or the failover priority.", gauge, prio)
	if !st.LeaseRenewed.IsZero() {
		emit("pgwarden_lease_renewal_age_seconds", "Seconds since this node last renewed its lease or leader key.", gauge, now.Sub(st.LeaseRenewed).Seconds())
	}
}

// versionNumber turns "4.1.4" into 040104.
func versionNumber(v string) float64 {
	var b strings.Builder
	for p := range strings.SplitSeq(v, ".") {
		n, _ := strconv.Atoi(p)
		if n < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(n))
	}
	f, _ := strconv.ParseFloat(b.String(), 64)
	return f
}

func (h *Handler) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(statusCollector{h}, h.metrics)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func (h *Handler) getMetrics(w http.ResponseWriter, r *http.Request) {
	h.promOnce.Do(func() { h.prom = h.metricsHandler() })
	h.prom.ServeHTTP(w, r)
}

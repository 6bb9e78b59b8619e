package delivery

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// metrics are process-wide so counters survive config reloads; the Caddy app registers them
// on each config's registry (Collectors).
var metrics = struct {
	attempts, failures, retries, deadLettered *prometheus.CounterVec
	deadLetters, queueDepth, oldestAge        *prometheus.GaugeVec
	circuitOpen, targetPaused, lanesParked    *prometheus.GaugeVec
	storeBytes, queueReady                    prometheus.Gauge
	diskFree, storeWriteFailed                prometheus.Gauge
	deliveryDuration, lag                     *prometheus.HistogramVec
}{
	attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_delivery_attempts_total", Help: "Delivery attempts by result (success, retry, failure).",
	}, []string{"target", "result"}),
	retries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_delivery_retries_total", Help: "Delivery attempts scheduled again after a failure.",
	}, []string{"target"}),
	failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_delivery_failures_total", Help: "Failed delivery attempts by reason (timeout, connection, http_4xx, http_5xx, mapping).",
	}, []string{"target", "reason"}),
	deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_dead_lettered_total", Help: "Events moved to the dead-letter stream.",
	}, []string{"target"}),
	deadLetters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_dead_letters", Help: "Dead letters currently kept.",
	}, []string{"target"}),
	queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_queue_depth", Help: "Events queued for a target and not yet delivered or dead-lettered.",
	}, []string{"target"}),
	oldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_queue_oldest_age_seconds", Help: "Age of the oldest event not yet settled for a target.",
	}, []string{"target"}),
	circuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_circuit_open", Help: "1 while a target's circuit is open (target unreachable).",
	}, []string{"target"}),
	targetPaused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_target_paused", Help: "1 while a target is paused.",
	}, []string{"target"}),
	lanesParked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_lanes_parked", Help: "Events held behind an earlier event of the same call.",
	}, []string{"target"}),
	storeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pbxbridge_store_bytes", Help: "Bytes in the events stream.",
	}),
	queueReady: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pbxbridge_queue_ready", Help: "1 while the queue takes webhooks: streams and consumers exist, NATS JetStream answers and the store writes.",
	}),
	diskFree: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pbxbridge_store_disk_free_bytes", Help: "Free bytes on the file system of data_dir; webhooks are refused below the reserve (16 MiB or an eighth of the file system). NaN with a NATS cluster.",
	}),
	storeWriteFailed: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pbxbridge_store_write_failed", Help: "1 from a write error of the store (no space left, I/O error, read-only file system) until it heals by itself.",
	}),
	deliveryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_delivery_duration_seconds", Help: "Duration of one delivery attempt.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"target"}),
	lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_delivery_lag_seconds", Help: "Time from acceptance of an event to its delivery.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
	}, []string{"target"}),
}

// Collectors are the delivery metrics, for registration on Caddy's metrics registry.
func Collectors() []prometheus.Collector {
	m := &metrics
	return []prometheus.Collector{
		m.attempts, m.failures, m.retries, m.deadLettered, m.deadLetters, m.queueDepth,
		m.oldestAge, m.circuitOpen, m.targetPaused, m.lanesParked, m.storeBytes, m.queueReady,
		m.diskFree, m.storeWriteFailed,
		m.deliveryDuration, m.lag,
	}
}

// targetSeries are the children a dispatcher updates for every attempt, looked up once: the
// target's counters and histograms are never deleted (deleteSeries drops gauges only).
type targetSeries struct {
	duration, lag           prometheus.Observer
	success, retry, failure prometheus.Counter
	retries                 prometheus.Counter
}

func seriesOf(target string) targetSeries {
	return targetSeries{
		duration: metrics.deliveryDuration.WithLabelValues(target),
		lag:      metrics.lag.WithLabelValues(target),
		success:  metrics.attempts.WithLabelValues(target, "success"),
		retry:    metrics.attempts.WithLabelValues(target, "retry"),
		failure:  metrics.attempts.WithLabelValues(target, "failure"),
		retries:  metrics.retries.WithLabelValues(target),
	}
}

// ZeroSeries creates a target's series at 0.
func ZeroSeries(target string) {
	for _, g := range targetGauges() {
		g.WithLabelValues(target)
	}
	seriesOf(target)
	for _, reason := range []string{"timeout", "connection", "http_4xx", "http_5xx", "mapping"} {
		metrics.failures.WithLabelValues(target, reason)
	}
	metrics.deadLettered.WithLabelValues(target)
}

// targetGauges are the per-target gauges.
func targetGauges() []*prometheus.GaugeVec {
	return []*prometheus.GaugeVec{metrics.deadLetters, metrics.queueDepth, metrics.oldestAge, metrics.circuitOpen, metrics.targetPaused, metrics.lanesParked}
}

// deleteSeries drops a removed target's gauges, so that no alert keeps firing on the last
// value of a target that no longer exists. Its counters stay: they are history.
func deleteSeries(target string) {
	for _, g := range targetGauges() {
		g.DeleteLabelValues(target)
	}
}

func zapErr(err error) zap.Field          { return zap.Error(err) }
func zapTarget(name string) zap.Field     { return zap.String("target", name) }
func zapEvent(id string) zap.Field        { return zap.String("event_id", id) }
func zapString(key, val string) zap.Field { return zap.String(key, val) }

// A cluster's disks are its servers' own: no measurement.
func init() { metrics.diskFree.Set(math.NaN()) }

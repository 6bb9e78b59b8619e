package bitrix24

import "github.com/prometheus/client_golang/prometheus"

// metrics are process-wide (Kind.Metrics); the gateway registers them on each config's
// registry. Labels carry no call ids, numbers or tokens.
var metrics = connectorMetrics{
	calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_bitrix24_calls_total", Help: "Calls reported to Bitrix24, by step (registered, finished, recorded).",
	}, []string{"target", "step"}),
	requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_bitrix24_requests_total", Help: "Bitrix24 REST methods called, by method and outcome (ok, the portal's error code, http_<status>, connection).",
	}, []string{"target", "method", "outcome"}),
	limitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_bitrix24_limit_waits_total", Help: "Methods that waited for the portal's request limit.",
	}, []string{"target"}),
	refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_bitrix24_token_refreshes_total", Help: "OAuth token refreshes, by outcome (ok, failed).",
	}, []string{"target", "outcome"}),
	batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_bitrix24_batch_commands", Help: "Methods carried by one batch request.",
		Buckets: []float64{2, 5, 10, 20, 35, 50},
	}, []string{"target"}),
}

type connectorMetrics struct {
	calls, requests, limitWaits, refreshes *prometheus.CounterVec
	batchSize                              *prometheus.HistogramVec
}

func (m *connectorMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.calls, m.requests, m.limitWaits, m.refreshes, m.batchSize}
}

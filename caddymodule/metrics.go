package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// metrics are process-wide so counters survive config reloads; every config load registers
// them on its own registry (Caddy makes one per config).
var metrics = struct {
	received, rejected, events, lookups, commands *prometheus.CounterVec
	recordingFetches, recordingBytes              *prometheus.CounterVec
	ingestDuration, lookupDuration                *prometheus.HistogramVec
	recordingDuration                             *prometheus.HistogramVec
	buildInfo                                     *prometheus.GaugeVec
	commandDuration                               *prometheus.HistogramVec
}{
	received: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_webhooks_received_total", Help: "Webhooks received, by outcome (accepted, duplicate, rejected).",
	}, []string{"pbx", "account", "outcome"}),
	rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_webhooks_rejected_total", Help: "Webhooks rejected, by reason (source, auth, replay, malformed, too_large, unavailable).",
	}, []string{"pbx", "account", "reason"}),
	events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_events_total", Help: "Canonical events produced from accepted webhooks, by type.",
	}, []string{"pbx", "type"}),
	lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_contact_lookups_total", Help: "Synchronous contact lookups, by outcome (found, not_found, cached, timeout, error, disabled).",
	}, []string{"account", "outcome"}),
	commands: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_commands_total", Help: "Commands the CRM asked the PBX for, by outcome (accepted, duplicate, refused, rejected, rate_limited, locked_out, timeout, error, canceled).",
	}, []string{"account", "command", "outcome"}),
	recordingFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_recording_fetches_total", Help: "Recordings fetched from the PBX for pbx_recordings, by outcome (ok, not_found, unavailable, timeout, refused, too_large, error, canceled).",
	}, []string{"account", "outcome"}),
	recordingBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_recording_bytes_total", Help: "Bytes of recordings fetched from the PBX for pbx_recordings.",
	}, []string{"account"}),
	ingestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_ingest_duration_seconds", Help: "Time from a webhook's arrival to its answer.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"pbx", "account"}),
	lookupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_contact_lookup_duration_seconds", Help: "Duration of a synchronous contact lookup.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
	}, []string{"account"}),
	recordingDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_recording_fetch_duration_seconds", Help: "Time to fetch a recording from the PBX (query and file), before it is served.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"account"}),
	commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pbxbridge_command_duration_seconds", Help: "Time from a CRM's command to its answer, including the wait for the PBX's rate limit.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"account", "command"}),
	buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pbxbridge_build_info", Help: "Always 1; the version label says which pbxbridge runs.",
	}, []string{"version"}),
}

// zeroSeries creates the series of the configured accounts and targets at 0, so that
// increase(), alerts and dashboards see them before their first event.
func zeroSeries(accounts map[string]pbx.Account, targets []delivery.Target) {
	for _, acc := range accounts {
		o := acc.Origin()
		seriesOf(o) // accepted, duplicate and the ingest duration
		metrics.received.WithLabelValues(o.PBX, o.Account, "rejected")
		for _, reason := range []string{"source", "auth", "replay", "malformed", "too_large", "unavailable"} {
			metrics.rejected.WithLabelValues(o.PBX, o.Account, reason)
		}
		if l, ok := acc.(pbx.Looker); ok && l.Looks() {
			for _, outcome := range []string{"found", "not_found", "cached", "timeout", "error"} {
				metrics.lookups.WithLabelValues(o.Account, outcome)
			}
			metrics.lookupDuration.WithLabelValues(o.Account)
		}
	}
	for _, t := range targets {
		delivery.ZeroSeries(t.Name)
	}
}

// registerMetrics puts pbxbridge's collectors on a config's registry.
func registerMetrics(reg *prometheus.Registry) {
	m := &metrics
	m.buildInfo.WithLabelValues(outbound.Version()).Set(1)
	collectors := append([]prometheus.Collector{
		m.received, m.rejected, m.events, m.lookups, m.commands, m.ingestDuration, m.lookupDuration, m.buildInfo,
		m.recordingFetches, m.recordingBytes, m.recordingDuration,
		m.commandDuration,
	}, delivery.Collectors()...)
	for _, k := range crmKinds {
		collectors = append(collectors, k.Metrics...)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			// Several apps or handlers of one config may register the same collector.
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				panic(err)
			}
		}
	}
}

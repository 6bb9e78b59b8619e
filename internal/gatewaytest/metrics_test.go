package gatewaytest

import "testing"

func TestMetric(t *testing.T) {
	const text = `# TYPE pbxbridge_events_total counter
pbxbridge_events_total{pbx="xvb",type="call.ringing"} 3
pbxbridge_events_total{pbx="mango",type="call.ringing"} 4
# TYPE pbxbridge_queue_ready gauge
pbxbridge_queue_ready 1
# TYPE pbxbridge_contact_lookup_duration_seconds histogram
pbxbridge_contact_lookup_duration_seconds_bucket{account="main",le="0.1"} 2
pbxbridge_contact_lookup_duration_seconds_bucket{account="main",le="+Inf"} 3
pbxbridge_contact_lookup_duration_seconds_sum{account="main"} 0.5
pbxbridge_contact_lookup_duration_seconds_count{account="main"} 3
`
	for _, tt := range []struct {
		series string
		want   float64
		ok     bool
	}{
		{`pbxbridge_events_total{type="call.ringing",pbx="xvb"}`, 3, true},
		{`pbxbridge_events_total{pbx="xvb"}`, 0, false}, // not all labels
		{`pbxbridge_queue_ready`, 1, true},
		{`pbxbridge_nothing`, 0, false},
		{`pbxbridge_contact_lookup_duration_seconds_count{account="main"}`, 3, true},
		{`pbxbridge_contact_lookup_duration_seconds_sum{account="main"}`, 0.5, true},
	} {
		if v, ok := Metric(text, tt.series); v != tt.want || ok != tt.ok {
			t.Errorf("%s = %v %v, want %v %v", tt.series, v, ok, tt.want, tt.ok)
		}
	}
	if sum := MetricSum(text, "pbxbridge_events_total", `type="call.ringing"`); sum != 7 {
		t.Errorf("sum %v, want 7", sum)
	}
	if sum := MetricSum(text, "pbxbridge_events_total"); sum != 7 {
		t.Errorf("sum of all %v, want 7", sum)
	}
}

package gatewaytest

import (
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric is the value of one series in Prometheus text, the series written as exposed
// (`name` or `name{label="value",…}`, labels in any order, all of them); ok is false when the
// text has no such series.
// A histogram's name_count and name_sum are series of it too.
func Metric(text, series string) (value float64, ok bool) {
	name, labels := splitSeries(series)
	fams := families(text)
	part := ""
	if fams[name] == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, found := strings.CutSuffix(name, suffix); found && fams[base].GetType() == dto.MetricType_HISTOGRAM {
				name, part = base, suffix
			}
		}
	}
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel()) != len(labels) || !hasLabels(m, labels) {
			continue
		}
		switch part {
		case "_count":
			return float64(m.GetHistogram().GetSampleCount()), true
		case "_sum":
			return m.GetHistogram().GetSampleSum(), true
		}
		return sampleValue(m), true
	}
	return 0, false
}

// MetricSum adds up the series of a family whose labels include all of labels (`name="value"`).
func MetricSum(text, family string, labels ...string) float64 {
	_, want := splitSeries(family + "{" + strings.Join(labels, ",") + "}")
	var sum float64
	for _, m := range families(text)[family].GetMetric() {
		if hasLabels(m, want) {
			sum += sampleValue(m)
		}
	}
	return sum
}

func families(text string) map[string]*dto.MetricFamily {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, _ := parser.TextToMetricFamilies(strings.NewReader(text))
	return fams // what parsed before any error
}

// splitSeries reads `name{a="x",b="y"}`; label values in tests hold no `",`.
func splitSeries(series string) (string, map[string]string) {
	name, rest, _ := strings.Cut(series, "{")
	labels := map[string]string{}
	for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), `",`) {
		if k, v, ok := strings.Cut(pair, `="`); ok {
			labels[k] = strings.TrimSuffix(v, `"`)
		}
	}
	return name, labels
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

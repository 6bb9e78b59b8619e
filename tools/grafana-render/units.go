package main

import (
	"math"
	"strconv"
	"strings"
)

// formatValue writes v in a Grafana unit as Grafana does: scaled to a readable prefix (ms,
// KiB, K) with about three significant digits, or with the panel's fixed decimals.
func formatValue(v float64, unit string, decimals *int) string {
	switch unit {
	case "", "none":
		return number(v, decimals)
	case "short":
		return scaled(v, 1000, []string{"", " K", " Mil", " Bil", " Tri"}, decimals)
	case "percent":
		return number(v, decimals) + "%"
	case "percentunit":
		return number(v*100, decimals) + "%"
	case "bytes":
		return scaled(v, 1024, []string{" B", " KiB", " MiB", " GiB", " TiB", " PiB"}, decimals)
	case "s":
		return seconds(v, decimals)
	case "reqps":
		return scaled(v, 1000, []string{"", "K", "M", "B", "T"}, decimals) + " req/s"
	case "ops":
		return scaled(v, 1000, []string{"", "K", "M", "B", "T"}, decimals) + " ops/s"
	case "opm":
		return scaled(v, 1000, []string{"", "K", "M", "B", "T"}, decimals) + " ops/min"
	}
	return number(v, decimals) + " " + unit
}

// number writes v with the given decimals, or with three significant digits and no trailing
// zeros.
func number(v float64, decimals *int) string {
	if decimals != nil {
		return strconv.FormatFloat(v, 'f', *decimals, 64)
	}
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	d := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	s := strconv.FormatFloat(v, 'f', d, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// scaled divides v by factor until it is below it, and names the step with suffixes.
func scaled(v, factor float64, suffixes []string, decimals *int) string {
	i := 0
	for i < len(suffixes)-1 && math.Abs(v) >= factor {
		v /= factor
		i++
	}
	return number(v, decimals) + suffixes[i]
}

// seconds is Grafana's "s" unit: ns to years, whichever reads best.
func seconds(v float64, decimals *int) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0 s"
	case a < 1e-6:
		return number(v*1e9, decimals) + " ns"
	case a < 1e-3:
		return number(v*1e6, decimals) + " µs"
	case a < 1:
		return number(v*1e3, decimals) + " ms"
	case a < 60:
		return number(v, decimals) + " s"
	case a < 3600:
		return number(v/60, decimals) + " min"
	case a < 86400:
		return number(v/3600, decimals) + " hour"
	case a < 7*86400:
		return number(v/86400, decimals) + " day"
	}
	return number(v/(7*86400), decimals) + " week"
}

// labelScale is the step of formatValue's prefixes that v is written in when it is not a
// power of ten (KiB, MiB…; min, hour, day), so that axis ticks fall on round labels.
func labelScale(unit string, v float64) float64 {
	switch unit {
	case "bytes":
		scale := 1.0
		for scale*1024 <= v {
			scale *= 1024
		}
		return scale
	case "s":
		for _, scale := range []float64{86400, 3600, 60} {
			if v >= scale {
				return scale
			}
		}
	}
	return 1
}

// reduce is one of Grafana's reducers (legend calcs, stat and gauge values) over the finite
// points; false when there is none, or the reducer is not one of these.
func reduce(points []point, calc string) (float64, bool) {
	var sum, n float64
	lo, hi, last := math.Inf(1), math.Inf(-1), math.NaN()
	for _, p := range points {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
			continue
		}
		sum, n = sum+p.V, n+1
		lo, hi, last = math.Min(lo, p.V), math.Max(hi, p.V), p.V
	}
	if n == 0 {
		return 0, false
	}
	switch calc {
	case "mean":
		return sum / n, true
	case "max":
		return hi, true
	case "min":
		return lo, true
	case "lastNotNull":
		return last, true
	}
	return 0, false
}

// calcTitles head the legend's columns, as in Grafana.
var calcTitles = map[string]string{"mean": "Mean", "max": "Max", "min": "Min", "lastNotNull": "Last *"}

// grafanaColors are the named colours of Grafana's dark theme that dashboards use; other
// names and #hex pass through to SVG as they are.
var grafanaColors = map[string]string{
	"green":  "#73BF69",
	"red":    "#F2495C",
	"orange": "#FF9830",
	"yellow": "#FADE2A",
	"blue":   "#5794F2",
	"purple": "#B877D9",
	"text":   textColor,
}

func colorOf(name string) string {
	if c, ok := grafanaColors[name]; ok {
		return c
	}
	return name
}

// classicPalette is Grafana's palette-classic, given to a panel's series in order.
var classicPalette = []string{
	"#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A6", "#705DA0",
	"#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477",
}

// thresholdColor is the colour of the highest step at or below v.
func thresholdColor(steps []thresholdStep, v float64) string {
	c := textColor
	for _, s := range steps {
		if s.Value == nil || v >= *s.Value {
			c = colorOf(s.Color)
		}
	}
	return c
}

// mapValue applies a value mapping ("0" → closed): the text and colour to show instead.
func mapValue(mappings []valueMapping, v float64) (text, color string, ok bool) {
	key := strconv.FormatFloat(v, 'f', -1, 64)
	for _, m := range mappings {
		if o, found := m.Options[key]; m.Type == "value" && found {
			return o.Text, o.Color, true
		}
	}
	return "", "", false
}

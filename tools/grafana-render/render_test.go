package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/tiny.svg")

func TestSubstitute(t *testing.T) {
	values := map[string]string{"account": ".*", "target": "crm", "__rate_interval": "1m", "max_store_bytes": "1024"}
	for _, tc := range []struct{ expr, want string }{
		{`rate(x_total{account=~"$account"}[$__rate_interval])`, `rate(x_total{account=~".*"}[1m])`},
		{`max(y{target=~"${target}"}) / $max_store_bytes`, `max(y{target=~"crm"}) / 1024`},
		{`a{account=~"$accounts"}`, `a{account=~"$accounts"}`}, // another variable, unknown: left for Prometheus to refuse
		{`sum(up)`, `sum(up)`},
	} {
		if got := substitute(tc.expr, values); got != tc.want {
			t.Errorf("substitute(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestVariableValues(t *testing.T) {
	vars := []variable{
		{Type: "datasource", Name: "datasource"},
		{Type: "query", Name: "account", IncludeAll: true, AllValue: ".+"},
		{Type: "query", Name: "target", IncludeAll: true},
		{Type: "query", Name: "pbx"},
		{Type: "textbox", Name: "max_store_bytes"},
	}
	vars[2].Current.Value = []any{"$__all"}
	vars[3].Current.Value = []any{"mango", "x.b"}
	vars[4].Current.Value = "21474836480"
	for _, tc := range []struct {
		name  string
		given map[string]string
		want  map[string]string
		err   string
	}{
		{name: "defaults", want: map[string]string{"account": ".+", "target": ".*", "pbx": `(mango|x\.b)`, "max_store_bytes": "21474836480"}},
		{name: "given", given: map[string]string{"account": "office", "max_store_bytes": "1"},
			want: map[string]string{"account": "office", "target": ".*", "pbx": `(mango|x\.b)`, "max_store_bytes": "1"}},
		{name: "unknown", given: map[string]string{"acount": "office"}, err: "--var acount: the dashboard has no such variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := variableValues(vars, tc.given)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// loadWithDefaults loads a dashboard and its variables' default values, rate interval 1m.
func loadWithDefaults(t *testing.T, path string) (dashboard, map[string]string) {
	t.Helper()
	d, err := loadDashboard(path)
	if err != nil {
		t.Fatal(err)
	}
	values, err := variableValues(d.Templating.List, nil)
	if err != nil {
		t.Fatal(err)
	}
	values["__rate_interval"] = "1m"
	return d, values
}

// TestDashboardQueriesResolve: every variable in the shipped dashboard's queries is one the
// renderer fills in.
func TestDashboardQueriesResolve(t *testing.T) {
	d, values := loadWithDefaults(t, "../../deploy/grafana/pbxbridge.json")
	queries := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries++
			if expr := substitute(tg.Expr, values); strings.Contains(expr, "$") {
				t.Errorf("panel %q: %s still has a variable", p.Title, expr)
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries in the dashboard", queries)
	}
}

func TestLegendName(t *testing.T) {
	labels := map[string]string{"pbx": "mango", "account": "office", "outcome": "accepted"}
	for _, tc := range []struct{ format, want string }{
		{"{{pbx}}/{{account}} {{outcome}}", "mango/office accepted"},
		{"p95 {{ account }}", "p95 office"},
		{"{{target}} retries", " retries"}, // a label the series lacks is empty, as in Grafana
		{"", `{account="office", outcome="accepted", pbx="mango"}`},
		{"__auto", `{account="office", outcome="accepted", pbx="mango"}`},
	} {
		if got := legendName(tc.format, labels); got != tc.want {
			t.Errorf("legendName(%q) = %q, want %q", tc.format, got, tc.want)
		}
	}
	if got := legendName("", map[string]string{"__name__": "up", "job": "pbxbridge"}); got != `up{job="pbxbridge"}` {
		t.Errorf("with a metric name: %q", got)
	}
}

func TestFormatValue(t *testing.T) {
	one := 1
	for _, tc := range []struct {
		v        float64
		unit     string
		decimals *int
		want     string
	}{
		{0, "reqps", nil, "0 req/s"},
		{0.552, "reqps", nil, "0.552 req/s"},
		{1234, "reqps", nil, "1.23K req/s"},
		{15.3, "ops", nil, "15.3 ops/s"},
		{82.8, "opm", nil, "82.8 ops/min"},
		{0, "s", nil, "0 s"},
		{0.0000005, "s", nil, "500 ns"},
		{0.000903, "s", nil, "903 µs"},
		{0.0123, "s", nil, "12.3 ms"},
		{2.5, "s", nil, "2.5 s"},
		{90, "s", nil, "1.5 min"},
		{7200, "s", nil, "2 hour"},
		{512, "bytes", nil, "512 B"},
		{1536, "bytes", nil, "1.5 KiB"},
		{16 << 20, "bytes", nil, "16 MiB"},
		{0.0137, "percentunit", &one, "1.4%"},
		{0.85, "percentunit", nil, "85%"},
		{42, "percent", nil, "42%"},
		{1500, "short", nil, "1.5 K"},
		{-3, "short", nil, "-3"},
		{417, "short", nil, "417"},
		{0.30000000000000004, "none", nil, "0.3"},
		{2, "", &one, "2.0"},
		{3, "widgets", nil, "3 widgets"},
	} {
		if got := formatValue(tc.v, tc.unit, tc.decimals); got != tc.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestLabelScale(t *testing.T) {
	for _, tc := range []struct {
		unit string
		v    float64
		want float64
	}{
		{"bytes", 1000, 1},
		{"bytes", 2 << 20, 1 << 20},
		{"s", 0.5, 1},
		{"s", 400, 60},
		{"s", 7200, 3600},
		{"short", 2000, 1},
	} {
		if got := labelScale(tc.unit, tc.v); got != tc.want {
			t.Errorf("labelScale(%s, %v) = %v, want %v", tc.unit, tc.v, got, tc.want)
		}
	}
}

func TestReduce(t *testing.T) {
	points := []point{{0, 1}, {1, math.NaN()}, {2, 5}, {3, 3}, {4, math.Inf(1)}}
	for _, tc := range []struct {
		calc string
		want float64
		ok   bool
	}{
		{"mean", 3, true},
		{"max", 5, true},
		{"min", 1, true},
		{"lastNotNull", 3, true},
		{"median", 0, false},
	} {
		got, ok := reduce(points, tc.calc)
		if got != tc.want || ok != tc.ok {
			t.Errorf("reduce(%s) = %v, %v; want %v, %v", tc.calc, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := reduce([]point{{0, math.NaN()}}, "lastNotNull"); ok {
		t.Error("a series of NaN has a last value")
	}
}

func TestSegments(t *testing.T) {
	nan := math.NaN()
	got := segments([]point{{0, 1}, {10, 2}, {20, nan}, {30, 3}, {40, 4}, {70, 5}, {80, 6}}, 10)
	want := [][]point{{{0, 1}, {10, 2}}, {{30, 3}, {40, 4}}, {{70, 5}, {80, 6}}}
	if len(got) != len(want) {
		t.Fatalf("segments = %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) || got[i][0] != want[i][0] || got[i][len(got[i])-1] != want[i][len(want[i])-1] {
			t.Errorf("segment %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestLegendRows(t *testing.T) {
	nan := math.NaN()
	zero, data, empty := []point{{0, 0}, {1, 0}}, []point{{0, 0}, {1, 2}}, []point{{0, nan}}
	for _, tc := range []struct {
		name   string
		series [][]point
		fit    int
		rows   []int
		more   string
	}{
		{"all fit", [][]point{zero, data, empty}, 3, []int{0, 1, 2}, ""},
		{"zeros give way, in order", [][]point{zero, data, zero, data}, 3, []int{1, 3}, "+ 2 more series, all 0"},
		{"series with data left out", [][]point{data, data, data, zero}, 3, []int{0, 1}, "+ 2 more series"},
		{"an empty series left out", [][]point{data, zero, empty}, 2, []int{0}, "+ 2 more series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			series := make([]series, len(tc.series))
			for i, p := range tc.series {
				series[i].Points = p
			}
			rows, more := legendRows(series, tc.fit)
			if !slices.Equal(rows, tc.rows) || more != tc.more {
				t.Errorf("legendRows = %v %q, want %v %q", rows, more, tc.rows, tc.more)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	panels := []panel{
		{Type: "row", GridPos: gridPos{X: 0, Y: 0, W: 24, H: 1}},
		{GridPos: gridPos{X: 12, Y: 1, W: 12, H: 8}},
		{GridPos: gridPos{X: 16, Y: 9, W: 8, H: 8}},
	}
	boxes, height := layout(panels, 1600)
	// 24 columns of (1600 - 2×16 padding - 23×8 gutters) / 24 px; rows of 30 px + 8 px.
	col := (1600.0 - 32 - 184) / 24
	want := []box{
		{x: 16, y: 64, w: 1568, h: 30},
		{x: 16 + 12*(col+8), y: 64 + 38, w: 12*col + 88, h: 296},
		{x: 16 + 16*(col+8), y: 64 + 9*38, w: 8*col + 56, h: 296},
	}
	for i, w := range want {
		b := boxes[i]
		if math.Abs(b.x-w.x) > 1e-9 || math.Abs(b.y-w.y) > 1e-9 || math.Abs(b.w-w.w) > 1e-9 || math.Abs(b.h-w.h) > 1e-9 {
			t.Errorf("panel %d at %+v, want %+v", i, b, w)
		}
	}
	if right := boxes[2].x + boxes[2].w; math.Abs(right-1584) > 1e-9 {
		t.Errorf("the last column ends at %v, want 1584 (the page's padding)", right)
	}
	if height != 64+9*38+296+16 {
		t.Errorf("page height %v", height)
	}
}

func TestColors(t *testing.T) {
	steps := []thresholdStep{{Color: "green"}, {Color: "orange", Value: ptr(0.8)}, {Color: "#123456", Value: ptr(0.9)}}
	for v, want := range map[float64]string{-1: "#73BF69", 0.5: "#73BF69", 0.8: "#FF9830", 0.95: "#123456"} {
		if got := thresholdColor(steps, v); got != want {
			t.Errorf("thresholdColor(%v) = %s, want %s", v, got, want)
		}
	}
	var p panel
	if err := json.Unmarshal([]byte(`{"fieldConfig":{"overrides":[{"matcher":{"id":"byRegexp","options":".* rejected"},
		"properties":[{"id":"color","value":{"mode":"fixed","fixedColor":"red"}}]}]}}`), &p); err != nil {
		t.Fatal(err)
	}
	got := seriesColors(p, []series{{Name: "office accepted"}, {Name: "office rejected"}, {Name: "main accepted"}})
	if want := []string{classicPalette[0], "#F2495C", classicPalette[2]}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("seriesColors = %v, want %v", got, want)
	}
}

func ptr(v float64) *float64 { return &v }

func TestParseMatrix(t *testing.T) {
	got, err := parseMatrix([]byte(`{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"target":"crm"},"values":[[1700000000,"1.5"],[1700000030.5,"NaN"]]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Labels["target"] != "crm" || len(got[0].Points) != 2 ||
		got[0].Points[0] != (point{1700000000, 1.5}) || got[0].Points[1].T != 1700000030.5 || !math.IsNaN(got[0].Points[1].V) {
		t.Errorf("parsed %+v", got)
	}
	for body, want := range map[string]string{
		`{"status":"error","errorType":"bad_data","error":"1:4: parse error: unclosed left parenthesis"}`: "prometheus: 1:4: parse error: unclosed left parenthesis",
		`{"status":"success","data":{"resultType":"vector","result":[]}}`:                                 `prometheus answered a "vector", not a matrix`,
		`<html>`: "not a Prometheus API answer: invalid character '<' looking for beginning of value",
	} {
		if _, err := parseMatrix([]byte(body)); err == nil || err.Error() != want {
			t.Errorf("parseMatrix(%s): %v, want %q", body, err, want)
		}
	}
}

// TestGolden renders testdata/tiny.json from fixed Prometheus answers: lines with a gap and an
// override colour, bars, "No data", a stat with value mappings, a query error, a gauge with
// thresholds. Look at the picture after -update: rsvg-convert testdata/tiny.svg > /tmp/tiny.png
func TestGolden(t *testing.T) {
	d, values := loadWithDefaults(t, "testdata/tiny.json")
	answers := map[string]string{
		`sum by (account, outcome) (rate(pbxbridge_webhooks_received_total{account=~".*"}[1m]))`: matrix(
			`{"metric":{"account":"office","outcome":"rejected"},"values":[[0,"0"],[60,"0.5"],[120,"NaN"],[180,"1"],[240,"0.5"],[300,"0"]]}`,
			`{"metric":{"account":"office","outcome":"accepted"},"values":[[0,"0"],[60,"2"],[120,"4"],[180,"4"],[240,"3"],[300,"5"]]}`),
		`sum by (target) (rate(pbxbridge_dead_lettered_total{target=~".*"}[1m])) * 60`: matrix(
			`{"metric":{"target":"flaky"},"values":[[0,"0"],[60,"6"],[120,"12"],[180,"0"],[240,"3"],[300,"0"]]}`),
		`sum by (command) (rate(pbxbridge_commands_total[1m]))`: matrix(),
		`max by (target) (pbxbridge_circuit_open{target=~".*"})`: matrix(
			`{"metric":{"target":"flaky"},"values":[[240,"0"],[300,"1"]]}`,
			`{"metric":{"target":"echo"},"values":[[240,"0"],[300,"0"]]}`),
		`sum(pbxbridge_store_bytes`: `{"status":"error","errorType":"bad_data","error":"1:25: parse error: unclosed left parenthesis"}`,
		`max by (instance) (pbxbridge_store_bytes) / 1000`: matrix(
			`{"metric":{"instance":"127.0.0.1:9180"},"values":[[240,"0.5"],[300,"0.85"]]}`),
	}
	data := panelsData(d.Panels, values, func(expr string) ([]labeledSeries, error) {
		answer, ok := answers[expr]
		if !ok {
			t.Errorf("unexpected query %s", expr)
		}
		return parseMatrix([]byte(answer))
	})
	got := renderSVG(page{
		title:    d.Title,
		subtitle: "a fixed picture",
		start:    time.Unix(0, 0),
		end:      time.Unix(300, 0),
		step:     time.Minute,
		width:    1200,
		panels:   d.Panels,
		data:     data,
	})
	for _, want := range []string{">office accepted<", ">No data<", ">OPEN<", ">closed<", ">85.0%<", "parse error: unclosed left parenthesis", `stroke="#F2495C"`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the picture lacks %s", want)
		}
	}
	if *update {
		if err := os.WriteFile("testdata/tiny.svg", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/tiny.svg")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the SVG differs from testdata/tiny.svg; if the change is meant, run go test -update and look at the picture")
	}
}

func matrix(series ...string) string {
	return `{"status":"success","data":{"resultType":"matrix","result":[` + strings.Join(series, ",") + `]}}`
}

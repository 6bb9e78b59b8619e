// Command grafana-render draws the panels of a Grafana dashboard from a running Prometheus
// into one SVG, for a picture of the dashboard where no Grafana runs. It is a module of its
// own, out of pbxbridge's; from the repository root (the default --dashboard is relative to it):
//
//	go -C tools/grafana-render build -o /tmp/grafana-render .
//	/tmp/grafana-render --prometheus http://127.0.0.1:9090 --range 10m --out dashboard.svg
//
// It substitutes the dashboard's variables ($account, $target: All unless given with --var;
// $__rate_interval: --rate-interval), asks Prometheus's query_range for every query of every
// panel, and lays the panels out on the dashboard's own grid in Grafana's dark theme: time
// series with their table legends, stat and gauge panels with their last value, unit,
// thresholds and value mappings. It draws exactly what the queries return; a panel without
// data says "No data", one whose query failed shows the error (and the exit status is 1).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

func main() {
	dashboardFile := flag.String("dashboard", "deploy/grafana/pbxbridge.json", "Grafana dashboard JSON")
	prometheus := flag.String("prometheus", "http://127.0.0.1:9090", "Prometheus base URL")
	window := flag.Duration("range", 10*time.Minute, "time range, ending now")
	rateInterval := flag.String("rate-interval", "1m", "value of $__rate_interval")
	step := flag.Duration("step", 0, "query resolution (default: the range / 200, at least 1s)")
	width := flag.Int("width", 1600, "picture width in px")
	out := flag.String("out", "dashboard.svg", "SVG file to write")
	given := map[string]string{}
	flag.Func("var", "`name=value` of a dashboard variable, e.g. account=office (repeatable; default: All, or the dashboard's current value)", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return fmt.Errorf("want name=value")
		}
		given[name] = value
		return nil
	})
	flag.Parse()

	if *step == 0 {
		*step = max(time.Second, (*window / 200).Round(time.Second))
	}
	failed, err := run(*dashboardFile, *prometheus, *out, *window, *step, *rateInterval, *width, given)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "render: %d panel(s) show a query error\n", failed)
		os.Exit(1)
	}
}

// run queries every panel and writes the SVG; it returns how many panels had a query error.
func run(dashboardFile, prometheus, out string, window, step time.Duration, rateInterval string, width int, given map[string]string) (int, error) {
	d, err := loadDashboard(dashboardFile)
	if err != nil {
		return 0, err
	}
	values, err := variableValues(d.Templating.List, given)
	if err != nil {
		return 0, err
	}
	values["__rate_interval"] = rateInterval

	end := time.Now().Truncate(step)
	start := end.Add(-window)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 30 * time.Second}
	data := panelsData(d.Panels, values, func(expr string) ([]labeledSeries, error) {
		return queryRange(ctx, client, strings.TrimSuffix(prometheus, "/"), expr, start, end, step)
	})
	failed := 0
	for i, pd := range data {
		if pd.err != nil {
			fmt.Fprintf(os.Stderr, "render: panel %q: %v\n", d.Panels[i].Title, pd.err)
			failed++
		}
	}
	svg := renderSVG(page{
		title:    d.Title,
		subtitle: subtitle(start, end, values, d.Templating.List, rateInterval),
		start:    start,
		end:      end,
		step:     step,
		width:    width,
		panels:   d.Panels,
		data:     data,
	})
	return failed, os.WriteFile(out, svg, 0o644)
}

// panelsData runs every query of every panel (with the variables' values) and names the
// series for the legend; a panel whose query fails keeps the error instead.
func panelsData(panels []panel, values map[string]string, query func(expr string) ([]labeledSeries, error)) []panelData {
	data := make([]panelData, len(panels))
	for i, p := range panels {
		for _, t := range p.Targets {
			expr := substitute(t.Expr, values)
			result, err := query(expr)
			if err != nil {
				data[i] = panelData{err: fmt.Errorf("%w (query %s: %s)", err, t.RefID, expr)}
				break
			}
			// Prometheus returns series in no particular order; by name they stay put between runs.
			named := make([]series, len(result))
			for k, r := range result {
				named[k] = series{Name: legendName(t.LegendFormat, r.Labels), Points: r.Points}
			}
			slices.SortStableFunc(named, func(a, b series) int { return strings.Compare(a.Name, b.Name) })
			data[i].series = append(data[i].series, named...)
		}
	}
	return data
}

// subtitle says what the picture shows: the window and the variables' values.
func subtitle(start, end time.Time, values map[string]string, vars []variable, rateInterval string) string {
	parts := []string{fmt.Sprintf("%s – %s UTC", start.UTC().Format("2006-01-02 15:04:05"), end.UTC().Format("15:04:05"))}
	for _, v := range vars {
		value, ok := values[v.Name]
		if !ok {
			continue
		}
		if value == ".*" {
			value = "All"
		}
		parts = append(parts, v.Name+" = "+value)
	}
	parts = append(parts, "rate interval "+rateInterval, "drawn from Prometheus by tools/grafana-render")
	return strings.Join(parts, "   ·   ")
}

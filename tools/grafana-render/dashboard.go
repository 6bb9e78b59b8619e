package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// dashboard is the part of Grafana's dashboard JSON model that the renderer draws.
type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

// panel is a panel or a row. A collapsed row keeps its panels inside it, and Grafana hides
// them; they are not drawn here either.
type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	GridPos     gridPos     `json:"gridPos"`
	FieldConfig fieldConfig `json:"fieldConfig"`
	Options     struct {
		Legend struct {
			ShowLegend bool     `json:"showLegend"`
			Calcs      []string `json:"calcs"`
		} `json:"legend"`
		ReduceOptions struct {
			Calcs []string `json:"calcs"`
		} `json:"reduceOptions"`
		ColorMode            string `json:"colorMode"` // stat: none | value | background
		ShowThresholdMarkers bool   `json:"showThresholdMarkers"`
	} `json:"options"`
	Targets []target `json:"targets"`
}

// gridPos places a panel on Grafana's grid: 24 columns, rows of a fixed height.
type gridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
}

type fieldConfig struct {
	Defaults struct {
		Unit       string   `json:"unit"`
		Min        *float64 `json:"min"`
		Max        *float64 `json:"max"`
		Decimals   *int     `json:"decimals"`
		Thresholds struct {
			Steps []thresholdStep `json:"steps"`
		} `json:"thresholds"`
		Mappings []valueMapping `json:"mappings"`
		Custom   struct {
			DrawStyle   string   `json:"drawStyle"` // line | bars
			LineWidth   float64  `json:"lineWidth"`
			FillOpacity float64  `json:"fillOpacity"`
			AxisSoftMin *float64 `json:"axisSoftMin"`
		} `json:"custom"`
	} `json:"defaults"`
	Overrides []override `json:"overrides"`
}

// thresholdStep colours values from Value up; the first step has no value (from -∞).
type thresholdStep struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// valueMapping of type "value" shows a value as text, in a colour.
type valueMapping struct {
	Type    string `json:"type"`
	Options map[string]struct {
		Text  string `json:"text"`
		Color string `json:"color"`
	} `json:"options"`
}

// override sets a series' colour when its name matches (byName, or byRegexp unanchored as
// in Grafana).
type override struct {
	Matcher struct {
		ID      string `json:"id"`
		Options string `json:"options"`
	} `json:"matcher"`
	Properties []struct {
		ID    string `json:"id"`
		Value struct {
			FixedColor string `json:"fixedColor"`
		} `json:"value"`
	} `json:"properties"`
}

// variable is a dashboard variable; Current.Value is a string or a list of strings.
type variable struct {
	Type       string `json:"type"`
	Name       string `json:"name"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

func loadDashboard(path string) (dashboard, error) {
	var d dashboard
	b, err := os.ReadFile(path)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// variableValues gives each dashboard variable the value a viewer of the dashboard would
// query with: the one given (--var), else "All" (the variable's allValue, or .*) for a query
// variable, else its current value. Data source variables do not appear in queries.
func variableValues(vars []variable, given map[string]string) (map[string]string, error) {
	values := map[string]string{}
	for _, v := range vars {
		if v.Type == "datasource" {
			continue
		}
		if g, ok := given[v.Name]; ok {
			values[v.Name] = g
			continue
		}
		var current []string
		switch c := v.Current.Value.(type) {
		case string:
			current = []string{c}
		case []any:
			for _, s := range c {
				if s, ok := s.(string); ok {
					current = append(current, s)
				}
			}
		}
		switch {
		case v.Type == "query" && (len(current) == 0 || slices.Contains(current, "$__all")):
			values[v.Name] = cmp.Or(v.AllValue, ".*")
		case len(current) == 1:
			values[v.Name] = current[0]
		case len(current) > 1:
			quoted := make([]string, len(current))
			for i, s := range current {
				quoted[i] = regexp.QuoteMeta(s)
			}
			values[v.Name] = "(" + strings.Join(quoted, "|") + ")"
		default:
			return nil, fmt.Errorf("variable %s has no value: give one with --var %s=<value>", v.Name, v.Name)
		}
	}
	for name := range given {
		if _, ok := values[name]; !ok {
			return nil, fmt.Errorf("--var %s: the dashboard has no such variable", name)
		}
	}
	return values, nil
}

var variableRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// substitute replaces $name and ${name} by the variable's value, leaving unknown names as
// they are (Prometheus then reports the query as broken, and the panel shows it).
func substitute(expr string, values map[string]string) string {
	return variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		if v, ok := values[m[1]+m[2]]; ok {
			return v
		}
		return ref
	})
}

var legendRef = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legendName is a series' name in the legend: legendFormat with {{label}} replaced by the
// label's value (empty when the series lacks it), or without a format the series' labels.
func legendName(format string, labels map[string]string) string {
	if format == "" || format == "__auto" {
		return labelString(labels)
	}
	return legendRef.ReplaceAllStringFunc(format, func(ref string) string {
		return labels[legendRef.FindStringSubmatch(ref)[1]]
	})
}

// labelString writes labels as Prometheus does: name{a="1", b="2"}.
func labelString(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	pairs := make([]string, len(names))
	for i, k := range names {
		pairs[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return labels["__name__"] + "{" + strings.Join(pairs, ", ") + "}"
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// series is one series of a range query, named for the legend.
type series struct {
	Name   string
	Points []point
}

// point is a sample: T in Unix seconds; V may be NaN or ±Inf (histogram_quantile of no
// observations), which is drawn as a gap.
type point struct {
	T, V float64
}

// queryRange asks Prometheus's HTTP API for expr over [start, end] every step.
func queryRange(ctx context.Context, client *http.Client, base, expr string, start, end time.Time, step time.Duration) ([]labeledSeries, error) {
	q := url.Values{
		"query": {expr},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	return parseMatrix(body)
}

// labeledSeries is a series as Prometheus returns it, before the legend names it.
type labeledSeries struct {
	Labels map[string]string
	Points []point
}

// parseMatrix reads a query_range answer; an error answer becomes Prometheus's message.
func parseMatrix(body []byte) ([]labeledSeries, error) {
	var answer struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("not a Prometheus API answer: %w", err)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", answer.Error)
	}
	if answer.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("prometheus answered a %q, not a matrix", answer.Data.ResultType)
	}
	out := make([]labeledSeries, 0, len(answer.Data.Result))
	for _, r := range answer.Data.Result {
		s := labeledSeries{Labels: r.Metric, Points: make([]point, 0, len(r.Values))}
		for _, v := range r.Values {
			t, okT := v[0].(float64)
			text, okV := v[1].(string)
			value, err := strconv.ParseFloat(text, 64)
			if !okT || !okV || err != nil {
				return nil, fmt.Errorf("prometheus: unexpected sample %v", v)
			}
			s.Points = append(s.Points, point{T: t, V: value})
		}
		out = append(out, s)
	}
	return out, nil
}

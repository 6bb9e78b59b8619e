package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one request of a phase.
type sample struct {
	n      int
	start  time.Duration // since the loader's base: when it was sent, or due at a fixed rate
	end    time.Duration // when its answer arrived
	status int           // 0: no answer
}

// loader sends a workload's requests to a gateway and times them on one clock (base), the
// same the sink stamps arrivals with.
type loader struct {
	wl     workload
	client *http.Client
	base   time.Time
}

func newLoader(wl workload, base time.Time, conns int) *loader {
	return &loader{wl: wl, base: base, client: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}}
}

func (l *loader) send(ctx context.Context, n int) int {
	r := l.wl.request(n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, strings.NewReader(r.body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", formType)
	req.Header.Set(seqHeader, strconv.Itoa(n))
	if r.xvbAC != "" {
		req.Header.Set("X-XVB-AC", r.xvbAC)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// concurrent runs conns workers, each sending the next request as soon as its previous one
// was answered, until `until` (or, when count > 0, until count requests were sent).
func (l *loader) concurrent(ctx context.Context, conns int, until time.Time, count int) []sample {
	var next atomic.Int64
	per := make([][]sample, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(until) {
				n := int(next.Add(1) - 1)
				if count > 0 && n >= count {
					return
				}
				start := time.Since(l.base)
				status := l.send(ctx, n)
				per[w] = append(per[w], sample{n: n, start: start, end: time.Since(l.base), status: status})
			}
		}()
	}
	wg.Wait()
	return slices.Concat(per...)
}

// fixedRate sends rate requests a second for duration, each when it is due whatever became of
// the earlier ones, and times it from when it was due: a stall shows as latency instead of
// hiding as fewer requests (no coordinated omission).
func (l *loader) fixedRate(ctx context.Context, rate int, duration time.Duration) []sample {
	total := int(duration.Seconds() * float64(rate))
	samples := make([]sample, total)
	interval := time.Second / time.Duration(rate)
	begin := time.Since(l.base)
	var wg sync.WaitGroup
	for n := 0; n < total && ctx.Err() == nil; n++ {
		due := begin + time.Duration(n)*interval
		if wait := due - time.Since(l.base); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := l.send(ctx, n)
			samples[n] = sample{n: n, start: due, end: time.Since(l.base), status: status}
		}()
	}
	wg.Wait()
	return samples
}

// loadStats summarise the answers of a phase.
type loadStats struct {
	Requests  int            `json:"requests"`
	Accepted  int            `json:"accepted"` // answered 2xx
	Refused   map[string]int `json:"refused,omitempty"`
	Seconds   float64        `json:"seconds"` // first request → last answer
	PerSecond float64        `json:"per_second"`
	P50ms     float64        `json:"p50_ms"` // of 2xx answers
	P99ms     float64        `json:"p99_ms"`
}

func summarise(samples []sample) loadStats {
	st := loadStats{Requests: len(samples), Refused: map[string]int{}}
	if len(samples) == 0 {
		return st
	}
	first, last := samples[0].start, samples[0].end
	var lat []time.Duration
	for _, s := range samples {
		first, last = min(first, s.start), max(last, s.end)
		if ok(s.status) {
			st.Accepted++
			lat = append(lat, s.end-s.start)
			continue
		}
		key := strconv.Itoa(s.status)
		if s.status == 0 {
			key = "no answer"
		}
		st.Refused[key]++
	}
	st.Seconds = (last - first).Seconds()
	st.PerSecond = float64(st.Accepted) / st.Seconds
	st.P50ms, st.P99ms = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
	return st
}

func ok(status int) bool { return status >= 200 && status < 300 }

// percentile is the nearest-rank percentile; it sorts ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(float64(len(ds))*p)) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

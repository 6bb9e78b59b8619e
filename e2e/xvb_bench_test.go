package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// benchClients is how many PBX connections post at once: a few calls answered together.
const benchClients = 4

// pacedRates are the request rates of the paced runs: 100/s, already more calls answered per
// second than a large call centre has, and issue 11's fixed rate of 1000/s. The unpaced runs
// send back to back and saturate the machine.
var pacedRates = []int{100, 1000}

// benchSeq makes every benchmarked message unique across the benchmark's runs, so each
// ANSWERED is a new event (not a duplicate) and each CRM lookup a new number (not cached).
var benchSeq atomic.Int64

// BenchmarkXVB measures the two handler paths on the live call path through the built binary
// over 127.0.0.1: ANSWERED (the agent's audio waits for the durable write) and cmd=contact
// (the caller waits), each against a plain `respond` route of the same gateway measured in the
// same run. Requests go from benchClients keep-alive clients; p50 and p99 are per request.
// XVB itself opens a connection per webhook (Connection: close); that adds the same loopback
// handshake to every route and is left out so the handler is what is measured.
//
// The -pacedN runs send N requests/s instead.
//
//	go test -run '^$' -bench BenchmarkXVB -benchtime 2000x ./e2e
func BenchmarkXVB(b *testing.B) {
	crm := gatewaytest.NewCRM(b, nil)
	lookup := newContactCRM(b)
	g := startXVB(b, crm, lookup)

	var baseline time.Duration
	b.Run("respond", func(b *testing.B) {
		baseline = measure(b, 0, 0, func(int64) *http.Request {
			return xvbRequest(g, "/baseline", "")
		})
	})
	answered := func(n int64) *http.Request {
		req := xvbRequest(g, "/hooks/xvb", xvbForm("cmd", "event", "callid", fmt.Sprintf("bench-%d", n),
			"type", "in", "event", "ANSWERED", "ext", "100", "phone", "79201119613"))
		req.Header.Set("X-XVB-AC", xvbAccessCode)
		return req
	}
	b.Run("answered", func(b *testing.B) {
		measure(b, baseline, 0, answered)
	})
	for _, rate := range pacedRates {
		var pacedBaseline time.Duration
		b.Run(fmt.Sprintf("respond-paced%d", rate), func(b *testing.B) {
			pacedBaseline = measure(b, 0, rate, func(int64) *http.Request {
				return xvbRequest(g, "/baseline", "")
			})
		})
		b.Run(fmt.Sprintf("answered-paced%d", rate), func(b *testing.B) {
			measure(b, pacedBaseline, rate, answered)
		})
	}
	b.Run("contact-cached", func(b *testing.B) {
		measure(b, baseline, 0, func(int64) *http.Request {
			return xvbRequest(g, "/hooks/xvb", xvbForm("cmd", "contact", "phone", "79201119613"))
		})
	})
	b.Run("contact-crm", func(b *testing.B) {
		measure(b, baseline, 0, func(n int64) *http.Request {
			return xvbRequest(g, "/hooks/xvb", xvbForm("cmd", "contact", "phone", fmt.Sprintf("7921%07d", n)))
		})
	})
}

func xvbRequest(g *gatewaytest.Gateway, path, body string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, g.URL+path+"?key="+xvbWebhookKey, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", formType)
	return req
}

// measure sends b.N requests made by request from benchClients clients, back to back, or
// with rate > 0 each at its time on a fixed schedule (a request sent late because every
// client was busy counts from its time, so queueing is not hidden). It fails on any answer but 200,
// reports p50 and p99 in ms, and p99 relative to baseline when one is given, and returns p99.
func measure(b *testing.B, baseline time.Duration, rate int, request func(n int64) *http.Request) time.Duration {
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for range benchClients {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				req := request(benchSeq.Add(1))
				start := time.Now()
				if rate > 0 {
					due := began.Add(time.Duration(i) * time.Second / time.Duration(rate))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
						start = time.Now() // the timer's lateness is this client's, not the gateway's
					} else {
						start = due // behind schedule: the wait for a free client counts
					}
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				latencies[i] = time.Since(start)
				if resp.StatusCode != http.StatusOK {
					b.Errorf("%d %s", resp.StatusCode, body)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(latencies)
	at := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p99 := at(0.99)
	b.ReportMetric(ms(at(0.50)), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	if baseline > 0 {
		b.ReportMetric(float64(p99)/float64(baseline), "p99/respond")
	}
	return p99
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
)

// report is the output of a run.
type report struct {
	Command     string         `json:"command"`
	CPUs        int            `json:"cpus"`
	LoadBefore  string         `json:"loadavg_before"` // /proc/loadavg: 1, 5, 15 minutes
	LoadAfter   string         `json:"loadavg_after"`
	Rows        []row          `json:"rows"`
	Saturated   []phaseResult  `json:"saturated"`       // respond, reverse_proxy, pbxbridge at opt.concurrency
	PerPBX      []phaseResult  `json:"per_pbx"`         // pbxbridge at opt.concurrency on Mango calls only, then XVB calls only
	FixedRate   []phaseResult  `json:"fixed_rate"`      // the same at opt.rate
	Peers       []phaseResult  `json:"peers,omitempty"` // pbxbridge and the peers on Mango calls only
	Backlog     *backlogResult `json:"backlog,omitempty"`
	concurrency int
	rate        int
	backlogN    int
}

// row is one line of the results table.
type row struct {
	Metric   string   `json:"metric"`
	PBX      string   `json:"pbxbridge"`
	Baseline string   `json:"baseline"`
	Ratio    *float64 `json:"ratio,omitempty"` // pbxbridge / baseline
	Target   string   `json:"target,omitempty"`
	Met      *bool    `json:"met,omitempty"`
}

// maxQueuedRSS is the memory target with a backlog queued, above the live heap the events
// received add (the dedupe window).
const maxQueuedRSS = 150e6

// maxRateP99ms is the ingest latency target at the fixed rate.
const maxRateP99ms = 5

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// byGateway finds a phase's result.
func byGateway(ps []phaseResult, kind gatewayKind) phaseResult {
	for _, p := range ps {
		if p.Gateway == kind {
			return p
		}
	}
	return phaseResult{}
}

// buildRows computes the table: pbxbridge against its baseline, as ratios, with the targets
// of issue 11.
func (r *report) buildRows() {
	sat := func(k gatewayKind) phaseResult { return byGateway(r.Saturated, k) }
	rate := func(k gatewayKind) phaseResult { return byGateway(r.FixedRate, k) }
	conns := fmt.Sprintf("%d connections", r.concurrency)
	pbx, respond, proxy := sat(kindPBXBridge), sat(kindRespond), sat(kindProxy)

	ingest := func(load string, p phaseResult) {
		tput := ratio(p.Ingest.PerSecond, respond.Ingest.PerSecond)
		r.add(row{Metric: "Durable ingest, 2xx/s (" + load + ")", PBX: num(p.Ingest.PerSecond), Baseline: num(respond.Ingest.PerSecond) + " `respond`",
			Ratio: tput, Target: "≥ 0.25 × `respond`", Met: met(*tput >= 0.25)})
	}
	ingest(conns, pbx)
	for _, p := range r.PerPBX {
		ingest(p.Load, p)
	}
	r.add(row{Metric: "Ingest latency p50 (" + conns + ")", PBX: msStr(pbx.Ingest.P50ms), Baseline: msStr(respond.Ingest.P50ms) + " `respond`",
		Ratio: ratio(pbx.Ingest.P50ms, respond.Ingest.P50ms)})
	r.add(row{Metric: "Ingest latency p99 (" + conns + ")", PBX: msStr(pbx.Ingest.P99ms), Baseline: msStr(respond.Ingest.P99ms) + " `respond`",
		Ratio: ratio(pbx.Ingest.P99ms, respond.Ingest.P99ms)})
	if pbx.Delivery != nil && proxy.Delivery != nil {
		e2e := ratio(pbx.Delivery.PerSecond, proxy.Delivery.PerSecond)
		r.add(row{Metric: "End-to-end delivered events/s (" + conns + ")", PBX: num(pbx.Delivery.PerSecond), Baseline: num(proxy.Delivery.PerSecond) + " `reverse_proxy`",
			Ratio: e2e, Target: "≥ 0.8 × `reverse_proxy`", Met: met(*e2e >= 0.8)})
		r.add(row{Metric: "Delivery lag p99 (" + conns + ")", PBX: msStr(pbx.Delivery.LagP99ms), Baseline: msStr(proxy.Delivery.LagP99ms) + " `reverse_proxy`",
			Ratio: ratio(pbx.Delivery.LagP99ms, proxy.Delivery.LagP99ms)})
	}
	if len(r.FixedRate) > 0 {
		pr, rr, xr := rate(kindPBXBridge), rate(kindRespond), rate(kindProxy)
		at := fmt.Sprintf(" at %d events/s", r.rate)
		r.add(row{Metric: "Ingest latency p99" + at, PBX: msStr(pr.Ingest.P99ms), Baseline: msStr(rr.Ingest.P99ms) + " `respond`",
			Ratio: ratio(pr.Ingest.P99ms, rr.Ingest.P99ms), Target: fmt.Sprintf("≤ %d ms, all 2xx", maxRateP99ms),
			Met: met(pr.Ingest.P99ms <= maxRateP99ms && pr.Ingest.Accepted == pr.Ingest.Requests)})
		if pr.Delivery != nil && xr.Delivery != nil {
			r.add(row{Metric: "Delivery lag p99" + at, PBX: msStr(pr.Delivery.LagP99ms), Baseline: msStr(xr.Delivery.LagP99ms) + " `reverse_proxy`",
				Ratio: ratio(pr.Delivery.LagP99ms, xr.Delivery.LagP99ms)})
		}
	}
	r.cpuRows(conns, pbx, respond, proxy)
	if len(r.FixedRate) > 0 {
		r.cpuRows(fmt.Sprintf("at %d events/s", r.rate), rate(kindPBXBridge), rate(kindRespond), rate(kindProxy))
	}
	r.add(row{Metric: "Peak RSS (" + conns + ")", PBX: mb(pbx.PeakRSS), Baseline: mb(respond.PeakRSS) + " `respond`",
		Ratio: ratio(float64(pbx.PeakRSS), float64(respond.PeakRSS))})

	var all deliveryStats
	delivered := []*deliveryStats{pbx.Delivery, rate(kindPBXBridge).Delivery, r.backlogDelivery()}
	for _, p := range r.PerPBX {
		delivered = append(delivered, p.Delivery)
	}
	for _, d := range delivered {
		if d != nil {
			all.Events += d.Events
			all.Once += d.Once
			all.Repeated += d.Repeated
			all.Missing += d.Missing
		}
	}
	r.add(row{Metric: "Accepted events delivered exactly once per `webhook-id`",
		PBX:    fmt.Sprintf("%d of %d (%d repeated, %d missing)", all.Once, all.Events, all.Repeated, all.Missing),
		Target: "all", Met: met(all.Once == all.Events)})

	if b := r.Backlog; b != nil {
		r.add(row{Metric: "Live heap per event received (dedupe window, XVB's open calls)", PBX: fmt.Sprintf("%.0f B", b.LivePerEvent)})
		window := int64(b.LivePerEvent * float64(b.Ingest.Accepted))
		r.add(row{Metric: fmt.Sprintf("Peak RSS, %d events queued, CRM down", b.Ingest.Accepted), PBX: mb(b.QueuedPeak),
			Baseline: mb(respond.PeakRSS) + " `respond`", Ratio: ratio(float64(b.QueuedPeak), float64(respond.PeakRSS)),
			Target: fmt.Sprintf("≤ %s + %s live", mb(maxQueuedRSS), mb(window)),
			Met:    met(b.QueuedPeak <= maxQueuedRSS+window && b.Ingest.Accepted == r.backlogN)})
		r.add(row{Metric: "Peak RSS after the drain", PBX: mb(b.DrainPeakRSS), Baseline: mb(b.QueuedPeak) + " queued",
			Ratio: ratio(float64(b.DrainPeakRSS), float64(b.QueuedPeak)), Target: "≤ 1 × queued", Met: met(b.DrainPeakRSS <= b.QueuedPeak)})
		if pbx.Delivery != nil {
			drain := ratio(b.DrainPerSecond, pbx.Delivery.PerSecond)
			r.add(row{Metric: "Backlog drain, delivered events/s", PBX: num(b.DrainPerSecond), Baseline: num(pbx.Delivery.PerSecond) + " pbxbridge end-to-end",
				Ratio: drain, Target: "≥ 1 × end-to-end", Met: met(*drain >= 1)})
		}
	}
}

// cpuRows compare pbxbridge's CPU and allocations per event with the baselines' in one load.
func (r *report) cpuRows(load string, pbx, respond, proxy phaseResult) {
	if pbx.CPU == nil || respond.CPU == nil || proxy.CPU == nil {
		return
	}
	for _, base := range []phaseResult{respond, proxy} {
		r.add(row{Metric: "CPU seconds per 1,000 events (" + load + ")", PBX: cpuStr(pbx.CPU), Baseline: cpuStr(base.CPU) + " `" + string(base.Gateway) + "`",
			Ratio: ratio(pbx.CPU.PerKEvents, base.CPU.PerKEvents)})
	}
	if pbx.CPU.AllocsPerEvent != nil && respond.CPU.AllocsPerEvent != nil {
		r.add(row{Metric: "Allocations per event (" + load + ")", PBX: allocStr(pbx.CPU), Baseline: allocStr(respond.CPU) + " `respond`",
			Ratio: ratio(*pbx.CPU.AllocsPerEvent, *respond.CPU.AllocsPerEvent)})
	}
}

func cpuStr(c *cpuStats) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%.3f s", c.PerKEvents)
}

func allocStr(c *cpuStats) string {
	if c == nil || c.AllocsPerEvent == nil {
		return ""
	}
	return fmt.Sprintf("%.0f", *c.AllocsPerEvent)
}

func (r *report) backlogDelivery() *deliveryStats {
	if r.Backlog == nil {
		return nil
	}
	return &r.Backlog.Delivery
}

func (r *report) add(x row) { r.Rows = append(r.Rows, x) }

func ratio(a, b float64) *float64 {
	v := 0.0
	if b != 0 {
		v = a / b
	}
	return &v
}

func met(b bool) *bool { return &b }

func num(v float64) string { return fmt.Sprintf("%.0f", v) }

func msStr(v float64) string { return fmt.Sprintf("%.2f ms", v) }

// markdown writes the table, the command and the phases' details.
func (r *report) markdown(w io.Writer) {
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", r.Command)
	fmt.Fprintf(w, "%d CPUs, Go %s; load average %s before, %s after. Every 2xx of pbxbridge follows the fsync of its group commit.\n\n",
		r.CPUs, runtime.Version(), r.LoadBefore, r.LoadAfter)
	fmt.Fprintln(w, "| metric | pbxbridge | baseline | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, x := range r.Rows {
		rat, m := "", ""
		if x.Ratio != nil {
			rat = fmt.Sprintf("%.2f", *x.Ratio)
		}
		if x.Met != nil {
			m = map[bool]string{true: "yes", false: "**no**"}[*x.Met]
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", x.Metric, x.PBX, x.Baseline, rat, x.Target, m)
	}
	fmt.Fprintln(w, "\nPhases (each a fresh process of the same binary; latency of 2xx answers):")
	fmt.Fprintln(w)
	phaseTable(w, slices.Concat(r.Saturated, r.PerPBX, r.FixedRate))
	if len(r.Peers) > 0 {
		r.peerTable(w)
	}
	if b := r.Backlog; b != nil {
		d := b.Delivery
		fmt.Fprintf(w, "\nBacklog: %d requests, %d accepted (%s refused) in %.0f s (%s/s) with the CRM answering 503; "+
			"then RSS %s, peak %s. CRM back: first delivery after %.1f s, drained at %s events/s, "+
			"%d once / %d repeated / %d missing / %d unexpected; peak RSS after the drain %s.\n",
			b.Ingest.Requests, b.Ingest.Accepted, refused(b.Ingest.Refused), b.Ingest.Seconds, num(b.Ingest.PerSecond),
			mb(b.QueuedRSS), mb(b.QueuedPeak), b.FirstDeliveryS, num(b.DrainPerSecond),
			d.Once, d.Repeated, d.Missing, d.Unexpected, mb(b.DrainPeakRSS))
		if b.IngestCPU != nil && b.DrainCPU != nil {
			fmt.Fprintf(w, "CPU seconds per 1,000 events: %s ingesting (%s allocations per event), %s draining (%s).\n",
				cpuStr(b.IngestCPU), allocStr(b.IngestCPU), cpuStr(b.DrainCPU), allocStr(b.DrainCPU))
		}
	}
}

// peerTable sets pbxbridge and the peers side by side on the same Mango job, as ratios to
// pbxbridge.
func (r *report) peerTable(w io.Writer) {
	pbx := byGateway(r.Peers, kindPBXBridge)
	fmt.Fprintf(w, "\nThe Mango job beside a peer (%s; ratios to pbxbridge in the same run):\n\n", pbx.Load)
	fmt.Fprintln(w, "| system | a 2xx means | 2xx/s | × | CPU s / 1k events | × | allocs / event | × | delivered once / repeated / missing | peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	means := map[gatewayKind]string{
		kindPBXBridge:  "stored, fsynced",
		kindPeerNone:   "the CRM took it",
		kindPeerMemory: "in memory",
	}
	x := func(a, b float64) string { return fmt.Sprintf("%.2f", *ratio(a, b)) }
	for _, p := range r.Peers {
		cpu, cpuX, alloc, allocX := "", "", "", ""
		if p.CPU != nil && pbx.CPU != nil {
			cpu, cpuX = cpuStr(p.CPU), x(p.CPU.PerKEvents, pbx.CPU.PerKEvents)
			if p.CPU.AllocsPerEvent != nil && pbx.CPU.AllocsPerEvent != nil {
				alloc, allocX = allocStr(p.CPU), x(*p.CPU.AllocsPerEvent, *pbx.CPU.AllocsPerEvent)
			}
		}
		counts := ""
		if d := p.Delivery; d != nil {
			counts = fmt.Sprintf("%d / %d / %d", d.Once, d.Repeated, d.Missing)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Gateway, means[p.Gateway],
			num(p.Ingest.PerSecond), x(p.Ingest.PerSecond, pbx.Ingest.PerSecond), cpu, cpuX, alloc, allocX, counts, mb(p.PeakRSS))
	}
}

// phaseTable lists phases in full.
func phaseTable(w io.Writer, phases []phaseResult) {
	fmt.Fprintln(w, "| gateway | load | requests | 2xx | refused | 2xx/s | p50 | p99 | delivered/s | lag p50 | lag p99 | once / repeated / missing / unexpected | peak RSS | CPU s / 1k events | allocs / event |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, p := range phases {
		d := p.Delivery
		del, lag50, lag99, counts := "", "", "", ""
		if d != nil {
			del, lag50, lag99 = num(d.PerSecond), msStr(d.LagP50ms), msStr(d.LagP99ms)
			counts = fmt.Sprintf("%d / %d / %d / %d", d.Once, d.Repeated, d.Missing, d.Unexpected)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p.Gateway, p.Load,
			p.Ingest.Requests, p.Ingest.Accepted, refused(p.Ingest.Refused), num(p.Ingest.PerSecond), msStr(p.Ingest.P50ms), msStr(p.Ingest.P99ms),
			del, lag50, lag99, counts, mb(p.PeakRSS), cpuStr(p.CPU), allocStr(p.CPU))
	}
}

func refused(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d×%s", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func (r *report) json(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

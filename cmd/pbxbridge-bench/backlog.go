package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// backlogResult is what the backlog phase measured: N events queued for a CRM that is down,
// then drained when it returns.
type backlogResult struct {
	Ingest loadStats `json:"ingest"`
	// Memory of the gateway once every event is queued: VmRSS then and VmHWM, the peak since
	// start (while ingesting).
	QueuedRSS  int64 `json:"queued_rss_bytes"`
	QueuedPeak int64 `json:"queued_peak_rss_bytes"`
	// FirstDeliveryS is from the CRM's return to the first delivery (the circuit's probe).
	FirstDeliveryS float64 `json:"first_delivery_s"`
	// DrainPerSecond is delivered events / (first → last delivery).
	DrainPerSecond float64 `json:"drain_per_second"`
	DrainPeakRSS   int64   `json:"drain_peak_rss_bytes"` // VmHWM after the drain
	// LivePerEvent is what the live heap (after a collection) grew by per accepted event
	// while they were queued: the ids of the dedupe window and XVB's open-call state.
	LivePerEvent float64       `json:"live_heap_per_event_bytes"`
	Delivery     deliveryStats `json:"delivery"`
	// CPU of the gateway while ingesting (per accepted event) and while draining (per
	// delivered event).
	IngestCPU *cpuStats `json:"ingest_cpu,omitempty"`
	DrainCPU  *cpuStats `json:"drain_cpu,omitempty"`
}

// backlog queues opt.backlog webhooks while the sink answers 503, then brings the sink back
// and measures the drain. Ingest and drain are each bounded by opt.backlogTimeout.
func (b *bench) backlog(ctx context.Context) (*backlogResult, error) {
	n := b.opt.backlog
	progress("backlog: %d events for a CRM that is down, then the drain", n)
	b.sink.down.Store(true)
	defer b.sink.down.Store(false)
	g, wl, err := b.newGateway(kindPBXBridge, max(defaultMaxStore, int64(n)*4<<10), bothCalls)
	if err != nil {
		return nil, err
	}
	defer g.Stop()
	live0, err := g.liveHeap(ctx)
	if err != nil {
		return nil, err
	}
	start, err := g.usage(ctx)
	if err != nil {
		return nil, err
	}
	samples := newLoader(wl, b.base, b.opt.concurrency).concurrent(ctx, b.opt.concurrency, time.Now().Add(b.opt.backlogTimeout), n)
	res := &backlogResult{Ingest: summarise(samples)}
	queued, err := g.usage(ctx)
	if err != nil {
		return nil, err
	}
	res.IngestCPU = queued.since(start, res.Ingest.Accepted)
	mem, err := g.memory()
	if err != nil {
		return nil, err
	}
	res.QueuedRSS, res.QueuedPeak = mem.RSS, mem.Peak
	live, err := g.liveHeap(ctx)
	if err != nil {
		return nil, err
	}
	if res.Ingest.Accepted > 0 {
		res.LivePerEvent = float64(live-live0) / float64(res.Ingest.Accepted)
	}
	progress("backlog: %d accepted in %.0fs; RSS %s, peak %s, live heap %s; CRM back up",
		res.Ingest.Accepted, res.Ingest.Seconds, mb(mem.RSS), mb(mem.Peak), mb(live))
	if b.opt.profileDir != "" {
		if err := g.profile(ctx, "heap", "gc=1", filepath.Join(b.opt.profileDir, "heap-backlog.pprof")); err != nil {
			progress("heap profile: %v", err)
		}
	}

	if queued, err = g.usage(ctx); err != nil { // the heap profile's CPU counts for neither
		return nil, err
	}
	up := time.Since(b.base)
	b.sink.down.Store(false)
	profiled := b.startProfile(ctx, g, "cpu-drain.pprof", b.opt.duration)
	hctx, stopHeap := context.WithCancel(ctx)
	defer stopHeap()
	halfway := b.heapHalfway(hctx, g, res.Ingest.Accepted)
	res.Delivery = b.checkDelivery(ctx, kindPBXBridge, wl, samples, b.opt.backlogTimeout)
	<-profiled
	if b.sink.distinct() < res.Ingest.Accepted/2 {
		stopHeap() // never halfway
	}
	<-halfway
	drained, err := g.usage(ctx)
	if err != nil {
		return nil, err
	}
	d := res.Delivery
	res.DrainCPU = drained.since(queued, d.Once+d.Repeated)
	if delivered := d.Once + d.Repeated; delivered > 0 {
		res.FirstDeliveryS = (d.firstAt - up).Seconds()
		res.DrainPerSecond = float64(delivered) / (d.lastAt - d.firstAt).Seconds()
	}
	if mem, err = g.memory(); err != nil {
		return nil, err
	}
	res.DrainPeakRSS = mem.Peak
	return res, nil
}

// heapHalfway saves a heap profile (heap-drain.pprof) once half of the n events reached the
// sink, with --profile: what the drain holds. The channel closes when it is saved, or when ctx
// ends first.
func (b *bench) heapHalfway(ctx context.Context, g *gateway, n int) <-chan struct{} {
	done := make(chan struct{})
	if b.opt.profileDir == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for b.sink.distinct() < n/2 {
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		if err := g.profile(ctx, "heap", "gc=1", filepath.Join(b.opt.profileDir, "heap-drain.pprof")); err != nil {
			progress("heap profile: %v", err)
		}
	}()
	return done
}

// mb is bytes in megabytes (10^6), the unit of the targets.
func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

package delivery

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// observeEvery is how often a dispatcher refreshes its queue gauges.
const observeEvery = 5 * time.Second

// TargetStatus is a target's state for the admin API and the CLI.
type TargetStatus struct {
	Name             string  `json:"name"`
	Depth            uint64  `json:"depth"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	InFlight         int     `json:"in_flight"`
	Held             int     `json:"held"`
	CircuitOpen      bool    `json:"circuit_open"`
	// CircuitReason says why a CRM refuses the target as a whole (an uninstalled
	// application, a revoked token), while the circuit is open for it.
	CircuitReason string `json:"circuit_reason,omitempty"`
	Paused        bool   `json:"paused"`
	DeadLetters   int    `json:"dead_letters"`
	// Delivered and Failed count this process's attempts that delivered and that failed
	// (retried or dead-lettered), for rates.
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
}

// Status is the queue's state.
type Status struct {
	Ready bool `json:"ready"`
	// StoreError says why webhooks are refused although the queue runs: a write error the
	// store has not healed from yet, or a disk without room.
	StoreError string         `json:"store_error,omitempty"`
	StoreBytes uint64         `json:"store_bytes"`
	MaxStore   int64          `json:"max_store"`
	Targets    []TargetStatus `json:"targets"`
}

// Status reports the queue and every target.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	st := Status{Ready: e.takesWrites(), MaxStore: e.maxStore(), Targets: []TargetStatus{}}
	if err := e.Writable(); err != nil {
		st.StoreError = err.Error()
	}
	stream, err := e.js.Stream(ctx, e.names.events)
	if err != nil {
		return st, err
	}
	st.StoreBytes = stream.CachedInfo().State.Bytes
	e.mu.Lock()
	ds := make([]*dispatcher, 0, len(e.dispatchers))
	for _, d := range e.dispatchers {
		ds = append(ds, d)
	}
	e.mu.Unlock()
	for _, d := range ds {
		ts, err := d.status(ctx)
		if err != nil {
			return st, err
		}
		st.Targets = append(st.Targets, ts)
	}
	return st, nil
}

// StoreFull reports whether the events stream has reached max_store (webhooks then get 503).
func (e *Engine) StoreFull(ctx context.Context) (bool, error) {
	stream, err := e.js.Stream(ctx, e.names.events)
	if err != nil {
		return false, err
	}
	// Within one maximal webhook of the limit counts as full, so that a load balancer moves
	// PBX traffic away before webhooks are refused; a small store keeps an eighth free.
	maxStore := e.maxStore()
	return int64(stream.CachedInfo().State.Bytes)+min(256<<10, maxStore/8) >= maxStore, nil
}

func (e *Engine) maxStore() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.MaxStore
}

func (d *dispatcher) status(ctx context.Context) (TargetStatus, error) {
	d.mu.Lock()
	ts := TargetStatus{Name: d.name, InFlight: d.inflight, Held: d.held, CircuitOpen: d.circuit.open, CircuitReason: d.circuit.reason, Paused: d.paused}
	cons := d.cons
	d.mu.Unlock()
	ts.Delivered = counted(metrics.attempts.WithLabelValues(d.name, "success"))
	ts.Failed = counted(metrics.attempts.WithLabelValues(d.name, "retry")) + counted(metrics.attempts.WithLabelValues(d.name, "failure"))
	info, err := cons.Info(ctx)
	if err != nil {
		return ts, err
	}
	ts.Depth = info.NumPending + uint64(info.NumAckPending)
	ts.OldestAgeSeconds = d.oldestAge(ctx, info)
	n, err := d.e.countDeadLetters(ctx, d.name)
	if err != nil {
		return ts, err
	}
	ts.DeadLetters = n
	return ts, nil
}

// counted reads a counter.
func counted(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}

// oldestAge is the age of the first event the target has not settled.
func (d *dispatcher) oldestAge(ctx context.Context, info *jetstream.ConsumerInfo) float64 {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return 0
	}
	stream, err := d.e.js.Stream(ctx, d.e.names.events)
	if err != nil {
		return 0
	}
	var oldest time.Time
	for _, subj := range info.Config.FilterSubjects {
		msg, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			continue
		}
		if oldest.IsZero() || msg.Time.Before(oldest) {
			oldest = msg.Time
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}

func (e *Engine) countDeadLetters(ctx context.Context, target string) (int, error) {
	stream, err := e.js.Stream(ctx, e.names.dead)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(e.names.deadSubject(target, ">")))
	if err != nil {
		return 0, err
	}
	return len(info.State.Subjects), nil
}

// observe refreshes the target's gauges.
func (d *dispatcher) observe() {
	defer d.wg.Done()
	tick := time.NewTicker(observeEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(d.ctx, observeEvery)
		ts, err := d.status(ctx)
		if err == nil {
			metrics.queueDepth.WithLabelValues(d.name).Set(float64(ts.Depth))
			metrics.oldestAge.WithLabelValues(d.name).Set(ts.OldestAgeSeconds)
			metrics.deadLetters.WithLabelValues(d.name).Set(float64(ts.DeadLetters))
		}
		stream, err := d.e.js.Stream(ctx, d.e.names.events)
		if err == nil {
			metrics.storeBytes.Set(float64(stream.CachedInfo().State.Bytes))
		}
		metrics.queueReady.Set(boolGauge(err == nil && d.e.takesWrites()))
		cancel()
		select {
		case <-d.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// dispatcher is the running config's dispatcher of a target, or nil.
func (e *Engine) dispatcher(target string) *dispatcher {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatchers[target]
}

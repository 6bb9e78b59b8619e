package delivery

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

const (
	// fetchWait bounds one pull request; a shorter one only costs idle round trips.
	fetchWait = 5 * time.Second
	// keepAliveEvery refreshes the ack deadline of held events well within ackWait.
	keepAliveEvery = ackWait / 3
	// fetchMax bounds one pull.
	fetchMax = 256
)

// dispatcher delivers one target's events. It keeps a lane per ordering key (call_id): one
// event in flight per call, the call's later events held un-acked behind it and kept alive
// with InProgress (not NAKed, so after a crash JetStream redelivers them in stream order), and
// every other call flowing up to the target's concurrency.
type dispatcher struct {
	e      *Engine
	name   string
	log    *zap.Logger
	client *http.Client
	ctx    context.Context // cancelled on stop: ends fetching, waits and backoff sleeps
	cancel context.CancelFunc
	// attempts is what in-flight requests run under: cancelled only when stop's grace period
	// ends, so that they may finish.
	attempts      context.Context
	abortAttempts context.CancelFunc
	wg            sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond // capacity, slots, pause, circuit or stop changed
	target   Target
	cons     jetstream.Consumer
	lanes    map[string]*lane
	held     int // events taken from JetStream and not yet settled
	inflight int // attempts in progress
	paused   bool
	stopping bool
	circuit  circuit
}

type lane struct {
	key   string
	queue []jetstream.Msg
}

func startDispatcher(e *Engine, t Target, cons jetstream.Consumer) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	attempts, abortAttempts := context.WithCancel(context.Background())
	d := &dispatcher{
		e:             e,
		name:          t.Name,
		log:           e.log.Named("delivery").With(zapTarget(t.Name)),
		ctx:           ctx,
		cancel:        cancel,
		attempts:      attempts,
		abortAttempts: abortAttempts,
		target:        t,
		cons:          cons,
		lanes:         map[string]*lane{},
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				MaxIdleConnsPerHost: t.Concurrency,
				IdleConnTimeout:     90 * time.Second,
				ForceAttemptHTTP2:   true,
			},
			// A redirect is the CRM's answer, not something to follow with a signed body.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	d.cond = sync.NewCond(&d.mu)
	d.paused = e.loadPaused(ctx, t.Name)
	metrics.targetPaused.WithLabelValues(t.Name).Set(boolGauge(d.paused))
	metrics.circuitOpen.WithLabelValues(t.Name).Set(0)
	d.wg.Add(4)
	go d.fetchLoop()
	go d.keepAlive()
	go d.observe()
	go d.watchPaused()
	return d
}

// reconfigure applies a reloaded target's settings without restarting: held events stay in
// their lanes. The consumer (same name, new settings already applied by the server) keeps its
// handle: the handle carries the pin of the priority group, and a fresh one would be given
// nothing until that pin's TTL ran out.
func (d *dispatcher) reconfigure(t Target) {
	d.mu.Lock()
	d.target = t
	d.cond.Broadcast()
	d.mu.Unlock()
}

// stop ends fetching and waits for in-flight attempts until ctx is done, then cuts them short.
// Held events stay un-acked and are redelivered later.
func (d *dispatcher) stop(ctx context.Context) {
	d.mu.Lock()
	d.stopping = true
	d.cond.Broadcast()
	d.mu.Unlock()
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("in-flight deliveries did not finish in the grace period; they will be retried after restart")
	}
	d.abortAttempts()
	d.client.CloseIdleConnections()
}

func (d *dispatcher) fetchLoop() {
	defer d.wg.Done()
	d.awaitPreviousRun()
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return
		}
		// Pull also while paused or holding maxHeld events: pulling keeps the consumer's pin,
		// which another instance of a cluster would take over after its TTL, splitting lanes.
		// Paused, the events wait in their lanes; full, JetStream gives no more than
		// MaxAckPending (= maxHeld) un-acked events anyway.
		n := min(max(maxHeld-d.held, 1), fetchMax)
		cons := d.cons
		d.mu.Unlock()

		ctx, cancel := context.WithTimeout(d.ctx, fetchWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(ctx), jetstream.FetchPriorityGroup(pinnedGroup))
		if err == nil {
			for msg := range batch.Messages() {
				d.admit(msg)
			}
			err = batch.Error()
		}
		cancel()
		// A pin mismatch: the pin expired while this dispatcher was not pulling (paused, or
		// holding maxHeld events) and the client has dropped it; the next pull gets a new one,
		// or waits while another instance holds it.
		if err != nil && d.ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, jetstream.ErrPinIDMismatch) {
			d.log.Warn("fetching events", zapErr(err))
			d.sleep(time.Second)
		}
	}
}

// awaitPreviousRun keeps per-call order across a crash. Events the previous run held (in
// flight or parked in a lane) are redelivered only when their ack deadline passes, while the
// consumer's record of what it had delivered may lag behind: later events of the same calls
// could come first. JetStream hands out expired events before new ones, so waiting out one
// ack deadline before the first fetch brings them back first, in stream order.
func (d *dispatcher) awaitPreviousRun() {
	d.mu.Lock()
	cons := d.cons
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	info, err := cons.Info(ctx)
	cancel()
	if err != nil || info.NumAckPending == 0 {
		return
	}
	d.log.Info("waiting for the events a previous run held to come back, to keep per-call order",
		zap.Int("events", info.NumAckPending), zap.Duration("wait", ackWait))
	d.sleep(ackWait + time.Second)
}

// admit puts a fetched event at the back of its call's lane.
func (d *dispatcher) admit(msg jetstream.Msg) {
	key := msg.Headers().Get(headerKey)
	if key == "" {
		key = msg.Subject()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return // not acked: redelivered after restart
	}
	d.held++
	l := d.lanes[key]
	if l != nil {
		l.queue = append(l.queue, msg)
		metrics.lanesParked.WithLabelValues(d.name).Inc()
		return
	}
	l = &lane{key: key, queue: []jetstream.Msg{msg}}
	d.lanes[key] = l
	d.wg.Add(1)
	go d.runLane(l)
}

func (d *dispatcher) runLane(l *lane) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return
		}
		msg := l.queue[0]
		d.mu.Unlock()

		if !d.deliver(msg, l.key) {
			return // stopping
		}

		d.mu.Lock()
		l.queue = l.queue[1:]
		d.held--
		d.cond.Broadcast()
		if len(l.queue) == 0 {
			delete(d.lanes, l.key)
			d.mu.Unlock()
			return
		}
		metrics.lanesParked.WithLabelValues(d.name).Dec()
		d.mu.Unlock()
	}
}

// keepAlive tells JetStream that held events are still being worked on.
func (d *dispatcher) keepAlive() {
	defer d.wg.Done()
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		var msgs []jetstream.Msg
		for _, l := range d.lanes {
			msgs = append(msgs, l.queue...)
		}
		d.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil && d.ctx.Err() == nil {
				d.log.Debug("keep-alive", zapErr(err))
			}
		}
	}
}

// acquire waits for a delivery slot: not paused, circuit letting traffic through, fewer than
// concurrency attempts in flight. It returns the target's current settings, or false when
// the dispatcher stops. probe is true when this attempt is the open circuit's probe.
func (d *dispatcher) acquire() (t Target, probe bool, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if d.stopping {
			return Target{}, false, false
		}
		if !d.paused && d.inflight < d.target.Concurrency {
			if allowed, isProbe := d.circuit.allow(time.Now()); allowed {
				d.inflight++
				return d.target, isProbe, true
			}
		}
		d.cond.Wait()
	}
}

// release frees the attempt's slot and records its outcome; it reports whether the circuit
// is open now.
func (d *dispatcher) release(key string, out outcome, probe bool) (open bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	wasOpen := d.circuit.open
	if wake := d.circuit.record(key, out, probe, time.Now(), d.target); wake > 0 {
		time.AfterFunc(wake, func() {
			d.mu.Lock()
			d.cond.Broadcast()
			d.mu.Unlock()
		})
	}
	if wasOpen != d.circuit.open {
		metrics.circuitOpen.WithLabelValues(d.name).Set(boolGauge(d.circuit.open))
		if d.circuit.open {
			d.log.Warn("circuit opened: target unreachable, probing with backoff", zap.String("cause", out.reason))
		} else {
			d.log.Info("circuit closed: target reachable again")
		}
	}
	d.cond.Broadcast()
	return d.circuit.open
}

// sleep waits for d, or returns false when the dispatcher stops first.
func (d *dispatcher) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}

// setPaused pauses or resumes delivery: while paused events queue and nothing is attempted.
func (d *dispatcher) setPaused(p bool) {
	d.mu.Lock()
	d.paused = p
	d.cond.Broadcast()
	d.mu.Unlock()
	metrics.targetPaused.WithLabelValues(d.name).Set(boolGauge(p))
}

// watchPaused applies a pause or resume made through any instance of a cluster: the state is
// in the store, and the instance that delivers may not be the one the operator asked.
func (d *dispatcher) watchPaused() {
	defer d.wg.Done()
	kv, err := d.e.js.KeyValue(d.ctx, d.e.names.state)
	var w jetstream.KeyWatcher
	if err == nil {
		w, err = kv.Watch(d.ctx, pausedKey(d.name))
	}
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Warn("watching the paused state: a pause through another instance is not seen here", zapErr(err))
		}
		return
	}
	defer w.Stop()
	for entry := range w.Updates() { // closed when d.ctx ends
		if entry != nil {
			d.setPaused(entry.Operation() == jetstream.KeyValuePut)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

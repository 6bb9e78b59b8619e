package delivery

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/outbound"
)

const (
	// fetchWait bounds one pull request; a shorter one only costs idle round trips. An instance
	// that lost the pin learns it at its next pull, so this is also part of handover.
	fetchWait = 2 * time.Second
	// keepAliveEvery refreshes the ack deadline of held events well within ackWait.
	keepAliveEvery = ackWait / 3
	// fetchMax bounds one pull.
	fetchMax = 256
	// settleEvery is how often a dispatcher that just got the pin asks whether other
	// instances still hold events (see take).
	settleEvery = 250 * time.Millisecond
	// handover is how long, on a cluster, a dispatcher that just got the pin holds back what
	// it fetches: the previous holder notices within one pull (fetchWait), and everything it
	// held expires one ack deadline later (see take).
	handover = fetchWait + ackWait + time.Second
	// settleMax bounds the wait for other instances' events; past it something is wrong, and
	// delivering beats stalling the target.
	settleMax = time.Minute
	// pinHeader carries the pin id of the priority group on every message JetStream hands out.
	pinHeader = "Nats-Pin-Id"
)

// dispatcher delivers one target's events. It keeps a lane per ordering key (call_id): one
// event in flight per call, the call's later events held un-acked behind it and kept alive
// with InProgress (not NAKed, so after a crash JetStream redelivers them in stream order), and
// every other call flowing up to the target's concurrency.
type dispatcher struct {
	e      *Engine
	name   string
	series targetSeries
	log    *zap.Logger
	client *http.Client
	ctx    context.Context // cancelled on stop: ends fetching, waits and backoff sleeps
	cancel context.CancelFunc
	// attempts is what in-flight requests run under: cancelled only when stop's grace period
	// ends, so that they may finish.
	attempts      context.Context
	abortAttempts context.CancelFunc
	wg            sync.WaitGroup

	mu     sync.Mutex
	cond   *sync.Cond // capacity, slots, pause, circuit, release or stop changed
	target Target
	cons   jetstream.Consumer
	lanes  map[string]*lane
	held   int // events taken from JetStream and not yet settled
	// holding are the stream sequences of the held events, settled those of the last ones
	// settled (oldest first in settledOrder). JetStream hands an event out again when its ack
	// deadline passes un-renewed (the keep-alive starved of CPU, the server slow to apply it),
	// and a copy may be on its way when the ack arrives. A copy of an event held here is
	// dropped, one of an event settled here is acked and dropped: delivering either would
	// send the event twice while nothing failed. Acking either copy settles the event.
	holding      map[uint64]bool
	settled      map[uint64]bool
	settledOrder []uint64
	inflight     int // attempts in progress
	paused       bool
	stopping     bool
	circuit      circuit
	// pin is the pin id under which this instance delivers the target's events; "" while it
	// does not hold the pin.
	pin string
	// settling is true from getting the pin, or from losing deliveries on their way here,
	// until no other instance holds events and the lost ones are back; the events fetched
	// meanwhile wait in arrived, at least until holdUntil (see take).
	settling  bool
	holdUntil time.Time
	arrived   []jetstream.Msg
	// othersMayHold: settling after taking the pin from an instance that may still hold
	// events (it did not hand them over), whose return extends holdUntil (see take).
	othersMayHold bool
	// delivered is the consumer sequence of the last delivery under pin. The consumer hands
	// every delivery to the pin's holder and numbers each one, so a gap means deliveries were
	// lost on their way here (see noteDeliveryLocked).
	delivered uint64
	// stopped are the events fetched while stopping, which a handover gives back.
	stopped []jetstream.Msg
	// acks are the settled events whose acknowledgements wait for their batch (see ackLoop);
	// ackKick tells ackLoop one was added, acksQuit that it is the last batch.
	acks     []jetstream.Msg
	ackKick  chan struct{}
	acksQuit chan struct{}
	acksDone chan struct{}
}

type lane struct {
	key   string
	queue []jetstream.Msg
	// released: the pin moved to another instance, which now gets these events.
	released bool
}

func startDispatcher(e *Engine, t Target, cons jetstream.Consumer) *dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	attempts, abortAttempts := context.WithCancel(context.Background())
	d := &dispatcher{
		e:             e,
		name:          t.Name,
		series:        seriesOf(t.Name),
		log:           e.log.Named("delivery").With(zapTarget(t.Name)),
		ctx:           ctx,
		cancel:        cancel,
		attempts:      attempts,
		abortAttempts: abortAttempts,
		target:        t,
		cons:          cons,
		lanes:         map[string]*lane{},
		holding:       map[uint64]bool{},
		settled:       map[uint64]bool{},
		ackKick:       make(chan struct{}, 1),
		acksQuit:      make(chan struct{}),
		acksDone:      make(chan struct{}),
		// A redirect is the CRM's answer, not something to follow with a signed body.
		client: outbound.Configured(t.Concurrency),
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
	go d.ackLoop()
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
// Held events stay un-acked and are redelivered later; on a cluster they are handed over to
// the other instances at once (see handOver).
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
		d.abortAttempts()
		// Cut short, the attempts end at once; one that succeeded meanwhile still gets its
		// acknowledgement into the last batch.
		select {
		case <-done:
		case <-time.After(ackTimeout):
		}
	}
	d.abortAttempts()
	close(d.acksQuit)
	<-d.acksDone
	d.client.CloseIdleConnections()
	if d.e.srv == nil { // a cluster: the pull in progress has ended, what it brought is held too
		d.handOver(ctx)
	}
}

// fetchLoop keeps a pull request outstanding at all times, also while paused or holding
// maxHeld events (the consumer's MaxAckPending stops JetStream handing out more): a live
// instance so keeps its pin, and learns at its next request when the pin has moved.
func (d *dispatcher) fetchLoop() {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return
		}
		// Full, JetStream gives no more than MaxAckPending (= maxHeld) un-acked events anyway.
		n := min(max(maxHeld-d.held, 1), fetchMax)
		pin := d.pin
		d.mu.Unlock()

		// The pull ends on the server's own expiry, which JetStream sends after every message
		// of the pull. A client-side deadline (FetchContext) would race it: what the server
		// handed out just before the deadline is dropped unseen by nats.go, comes back only
		// after ackWait, and a call's later events would go first. So stop does not cut a pull
		// short either; it waits for it to end (fetchWait at most).
		batch, err := d.cons.Fetch(n, jetstream.FetchMaxWait(fetchWait), jetstream.FetchPriorityGroup(pinnedGroup))
		if err == nil {
			for msg := range batch.Messages() {
				d.take(msg)
			}
			err = batch.Error()
		}
		switch {
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			d.letGo(pin)
		case err != nil && d.ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages):
			d.log.Warn("fetching events", zapErr(err))
			d.sleep(time.Second)
		}
	}
}

// take places a fetched event: at the back of its call's lane, or held back while this
// instance takes over. Taking over keeps per-call order when the pin moves between instances
// (one died, or a NATS consumer leader change unpinned a live one), and across a crash of a
// single instance.
//
// The previous holder's events come back only when their ack deadline passes, while new
// events of the same calls may be handed out first. So:
//
//   - An instance that loses the pin (its next pull request is refused: ErrPinIDMismatch)
//     lets go of everything it holds: no further attempts, no keep-alive, no ack. An attempt
//     in flight may still reach the CRM; the event is then delivered twice, with the same
//     webhook-id. Its events come back to the pin's holder within ackWait.
//   - An instance that gets the pin (a message carries a new pin id) holds back what it
//     fetches, keeping it alive, until every event another instance (or a previous run) held
//     has been acked or handed to it. It then admits them to the lanes in stream order, the
//     order of acceptance, so a call's earlier events go first.
//
// When is that? On a cluster, after handover: the previous holder, if alive and connected,
// learns at its next pull (within fetchWait) and lets go; a dead or disconnected one keeps
// nothing alive; either way what it held expires within ackWait more, and JetStream hands
// expired events to the pin's holder before anything else. Counting alone is not enough there
// (it let a call's order break in a long run of cluster/): a previous holder that still lives
// may hold copies of events also handed here (ones that expired while it was cut off from
// NATS, or that a new consumer leader handed out again) and ack them before it notices, and
// the new holder would count them as its own. The consumer's very first delivery needs no
// wait: nobody held anything before it; nor does the first after a graceful stop of the
// previous holder, which let go of everything (see handOver). With the embedded store there is one process: the
// previous run's events are the only others, nobody acks them, and the count alone decides,
// so a fresh start with nothing pending settles within settleEvery. In both cases the consumer
// must show no ack-pending event besides those held back (MaxAckPending bounds how long new
// deliveries can keep that from being true).
func (d *dispatcher) take(msg jetstream.Msg) {
	pin := msg.Headers().Get(pinHeader)
	seq := streamSeq(msg)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		d.stopped = append(d.stopped, msg) // not acked: handed over, or redelivered after restart
		return
	}
	var delivery, handedOut uint64
	if meta, err := msg.Metadata(); err == nil {
		delivery, handedOut = meta.Sequence.Consumer, meta.NumDelivered
	}
	if pin == d.pin && pin != "" {
		d.noteDeliveryLocked(delivery)
	}
	if d.dropCopyLocked(msg, pin, seq) {
		return
	}
	if pin != d.pin {
		// Normally nothing is held here now (a new pin follows a start or a release); if
		// something is, it belongs to the pin that ended.
		d.releaseLocked()
		d.pin, d.settling, d.delivered = pin, true, delivery
		d.wg.Add(1)
		go d.settle(pin, delivery)
	}
	d.held++
	d.holding[seq] = true
	if d.settling {
		// Handed out before, and not to this instance: the events another instance held
		// expire within one keep-alive of each other (its last one), so when one comes back
		// late, so may the rest.
		if handedOut > 1 && d.othersMayHold {
			d.holdUntil = later(d.holdUntil, time.Now().Add(keepAliveEvery+fetchWait))
		}
		d.arrived = append(d.arrived, msg)
		return
	}
	d.admitLocked(msg)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// noteDeliveryLocked checks that delivery, the consumer sequence of an event handed out
// under the pin held here, directly follows the previous one. If not, the deliveries between
// were lost on their way here: a pull the client had already given up on (nats.go ends a
// pull one second after its expiry when the server's answer is late) still got events. They
// stay pending under this pin and come back once their ack deadline passes, behind their
// calls' later events. So the dispatcher holds back again, as when it gets the pin, for one
// pull and one ack deadline, until they are back.
func (d *dispatcher) noteDeliveryLocked(delivery uint64) {
	if delivery > d.delivered+1 {
		d.log.Warn("deliveries to this instance were lost on their way; holding back new events until JetStream hands them out again, to keep per-call order",
			zap.Uint64("lost", delivery-d.delivered-1), zap.Uint64("after_delivery", d.delivered))
		d.holdUntil = later(d.holdUntil, time.Now().Add(handover))
		if !d.settling {
			d.settling = true
			d.wg.Add(1)
			go func(pin string, start time.Time) {
				defer d.wg.Done()
				d.awaitSettled(pin, start)
			}(d.pin, time.Now())
		}
	}
	d.delivered = max(d.delivered, delivery)
}

// dropCopyLocked reports whether msg is a copy of an event held or settled here (see
// holding), and acks it in the second case.
func (d *dispatcher) dropCopyLocked(msg jetstream.Msg, pin string, seq uint64) bool {
	if meta, err := msg.Metadata(); err != nil || meta.NumDelivered < 2 {
		return false
	}
	switch {
	case pin == d.pin && d.holding[seq]:
		d.log.Warn("JetStream handed out again an event held here (its keep-alive came late); the copy is dropped, the event stays in its lane",
			zap.Uint64("stream_seq", seq))
	case d.settled[seq]:
		if err := msg.Ack(); err != nil {
			d.log.Debug("acknowledging a copy of a settled event", zapErr(err))
		}
		d.log.Warn("JetStream handed out again an event settled here (the copy left before the ack arrived); the copy is acknowledged and dropped",
			zap.Uint64("stream_seq", seq))
	default:
		return false
	}
	return true
}

// settledKept bounds how many settled events a dispatcher remembers (see holding): copies
// come within moments of the ack.
const settledKept = 4 * maxHeld

// settledLocked moves a settled event from holding to settled.
func (d *dispatcher) settledLocked(seq uint64) {
	delete(d.holding, seq)
	d.settled[seq] = true
	d.settledOrder = append(d.settledOrder, seq)
	if len(d.settledOrder) > settledKept {
		delete(d.settled, d.settledOrder[0])
		d.settledOrder = d.settledOrder[1:]
	}
}

// settle admits the events held back since this instance got the pin once no other instance
// holds any (see take): not before handoverWait, and at the latest after settleMax. first is
// the consumer sequence of the first event under pin.
func (d *dispatcher) settle(pin string, first uint64) {
	defer d.wg.Done()
	start := time.Now()
	wait := d.handoverWait(first)
	d.log.Info("this instance now delivers the target's events; holding back new ones until those other instances (or a previous run) held have come back, to keep per-call order",
		zap.Duration("at_least", wait), zap.Uint64("first_delivery", first))
	d.mu.Lock()
	if d.pin == pin {
		d.holdUntil = later(d.holdUntil, start.Add(wait))
		d.othersMayHold = wait > 0
	}
	d.mu.Unlock()
	d.awaitSettled(pin, start)
}

// awaitSettled admits the events held back under pin once trySettle says so.
func (d *dispatcher) awaitSettled(pin string, start time.Time) {
	tick := time.NewTicker(settleEvery)
	defer tick.Stop()
	for !d.trySettle(pin, time.Since(start)) {
		select {
		case <-d.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// trySettle reports whether settling under pin is over: done now, or ended by a release.
func (d *dispatcher) trySettle(pin string, waited time.Duration) bool {
	d.mu.Lock()
	if !d.settling || d.pin != pin {
		d.mu.Unlock()
		return true
	}
	if time.Now().Before(d.holdUntil) {
		d.mu.Unlock()
		return false
	}
	// Held here before and after the consumer info is read, so ack-pending when it is: held
	// back, or in a lane (after lost deliveries) and not settled meanwhile.
	before := slices.Collect(maps.Keys(d.holding))
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(d.ctx, fetchWait)
	info, err := d.cons.Info(ctx)
	cancel()
	if err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.settling || d.pin != pin {
		return true
	}
	mine := 0
	for _, seq := range before {
		if d.holding[seq] {
			mine++
		}
	}
	others := info.NumAckPending - mine
	if others > 0 && waited < settleMax {
		return false
	}
	if others > 0 {
		d.log.Warn("other instances still hold events of this target; delivering anyway, per-call order may not hold for their calls",
			zap.Int("events", others), zap.Duration("waited", waited))
	}
	slices.SortStableFunc(d.arrived, func(a, b jetstream.Msg) int {
		return cmp.Compare(streamSeq(a), streamSeq(b))
	})
	for _, msg := range d.arrived {
		d.admitLocked(msg)
	}
	d.log.Info("delivering: no other instance holds events of this target",
		zap.Int("events", len(d.arrived)), zap.Duration("waited", waited))
	d.arrived, d.settling, d.othersMayHold = nil, false, false
	return true
}

func streamSeq(msg jetstream.Msg) uint64 {
	meta, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return meta.Sequence.Stream
}

// releaseLocked lets go of every held event: lanes stop before their next attempt and ack
// nothing more, nothing is kept alive, and JetStream redelivers the events to the instance
// that holds the pin. It returns how many events were held.
func (d *dispatcher) releaseLocked() int {
	n := d.held
	for _, l := range d.lanes {
		l.released = true
		metrics.lanesParked.WithLabelValues(d.name).Sub(float64(len(l.queue) - 1))
	}
	d.lanes, d.holding = map[string]*lane{}, map[uint64]bool{}
	d.arrived, d.settling, d.pin, d.held, d.holdUntil, d.othersMayHold = nil, false, "", 0, time.Time{}, false
	d.cond.Broadcast()
	return n
}

// letGo releases what is held under pin, which another instance holds now (or nobody).
func (d *dispatcher) letGo(pin string) {
	d.mu.Lock()
	if d.pin != pin { // got a new pin meanwhile
		d.mu.Unlock()
		return
	}
	n := d.releaseLocked()
	d.mu.Unlock()
	d.log.Info("another instance took over delivery to this target; leaving it the events held here", zap.Int("events", n))
}

// released reports whether l's events were left to another instance.
func (d *dispatcher) released(l *lane) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return l.released
}

// admitLocked puts an event at the back of its call's lane.
func (d *dispatcher) admitLocked(msg jetstream.Msg) {
	key := msg.Headers().Get(headerKey)
	if key == "" {
		key = msg.Subject()
	}
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
		if d.stopping || l.released {
			d.mu.Unlock()
			return
		}
		msg := l.queue[0]
		d.mu.Unlock()

		if !d.deliver(msg, l) {
			return // stopping or released
		}

		d.mu.Lock()
		if l.released { // the count and the lanes were reset with the release
			d.mu.Unlock()
			return
		}
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

// keepAlive tells JetStream that held events are still being worked on. On a cluster it first
// asks the consumer whether the pin is still this instance's: an instance that lost it (the
// NATS node leading the consumer went away) would otherwise keep the events it holds alive
// until its next pull is refused, and the new holder could stop holding back before they
// come back to it (see take).
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
		pin := d.pin
		d.mu.Unlock()
		if pin != "" && d.e.srv == nil && !d.pinnedHere(pin) {
			d.letGo(pin)
			continue
		}
		d.mu.Lock()
		msgs := slices.Clone(d.arrived)
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

// pinnedHere reports whether the consumer's pin is still pin; true when it cannot tell.
func (d *dispatcher) pinnedHere(pin string) bool {
	ctx, cancel := context.WithTimeout(d.ctx, fetchWait)
	defer cancel()
	info, err := d.cons.Info(ctx)
	if err != nil {
		return true
	}
	return slices.ContainsFunc(info.PriorityGroups, func(g jetstream.PriorityGroupState) bool {
		return g.Group == pinnedGroup && g.PinnedClientID == pin
	})
}

// acquire waits for a delivery slot: not paused, circuit letting traffic through, fewer than
// concurrency attempts in flight. It returns the target's current settings, or false when
// the dispatcher stops or l was released. probe is true when this attempt is the open
// circuit's probe.
func (d *dispatcher) acquire(l *lane) (t Target, probe bool, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if d.stopping || l.released {
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
	// The updates channel closes only when nats.go gets round to the unsubscription that
	// d.ctx starts, on the connection's callback goroutine; stop must not wait for that
	// (a test's Engine.Close once waited ten minutes).
	for {
		select {
		case <-d.ctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				return
			}
			if entry != nil {
				d.setPaused(entry.Operation() == jetstream.KeyValuePut)
			}
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

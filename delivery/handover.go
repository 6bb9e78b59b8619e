package delivery

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A graceful stop on a cluster hands the target's events over at once, instead of leaving the
// next instance to wait out the pin's TTL and the held events' ack deadlines (see take). The
// stopping instance ends its pull, lets in-flight attempts finish, NAKs what it still holds
// (JetStream hands NAKed events out again first), notes the consumer's delivered sequence in
// the state bucket and unpins the consumer. The instance that gets the pin next sees that its
// first event directly follows the noted sequence: nobody else can hold anything of the target
// (the previous holder let go of all it held and settles nothing more), so it settles by count
// alone, as a single instance does, without the handover wait.

// handoverKey is the state-bucket key of the consumer delivered sequence at which a target's
// previous holder let go gracefully.
func handoverKey(target string) string { return "handover." + target }

// handOver gives what this stopped dispatcher holds to whichever instance pulls next.
func (d *dispatcher) handOver(ctx context.Context) {
	d.mu.Lock()
	pin := d.pin
	msgs := slices.Concat(d.arrived, d.stopped)
	for _, l := range d.lanes {
		msgs = append(msgs, l.queue...)
		l.released = true // a lane cut short by the grace period acks nothing more
	}
	d.mu.Unlock()
	if pin == "" {
		return // never delivered, or already let go
	}
	slices.SortFunc(msgs, func(a, b jetstream.Msg) int { return cmp.Compare(streamSeq(a), streamSeq(b)) })
	for _, m := range msgs {
		if err := m.Nak(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			d.log.Debug("handing an event over", zapErr(err))
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	info, err := d.cons.Info(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrConsumerNotFound) { // not a removed target
			d.log.Warn("handing delivery over: the consumer does not answer; the next instance takes over after the pin's TTL", zapErr(err))
		}
		return
	}
	if !slices.ContainsFunc(info.PriorityGroups, func(g jetstream.PriorityGroupState) bool {
		return g.Group == pinnedGroup && g.PinnedClientID == pin
	}) {
		return // the pin moved on meanwhile: unpinning now would unpin its new holder
	}
	kv, err := d.e.js.KeyValue(ctx, d.e.names.state)
	if err == nil {
		_, err = kv.Put(ctx, handoverKey(d.name), []byte(strconv.FormatUint(info.Delivered.Consumer, 10)))
	}
	if err == nil {
		var stream jetstream.Stream
		if stream, err = d.e.js.Stream(ctx, d.e.names.events); err == nil {
			err = stream.UnpinConsumer(ctx, consumerName(d.name), pinnedGroup)
		}
	}
	if err != nil {
		d.log.Warn("handing delivery over failed; the next instance takes over after the pin's TTL", zapErr(err))
		return
	}
	d.log.Info("handed delivery over to the other instances", zap.Int("events", len(msgs)), zap.Uint64("delivered", info.Delivered.Consumer))
}

// handoverWait is how long a dispatcher that just got the pin, with first the consumer
// sequence of the first event under it (0: unknown), waits before counting other instances'
// events (see take): nothing with the embedded store, for the consumer's very first delivery
// or after a graceful handover; handover otherwise.
func (d *dispatcher) handoverWait(first uint64) time.Duration {
	if d.e.srv != nil || first == 1 {
		return 0
	}
	if first == 0 {
		return handover
	}
	// The note was written before the unpin, but a replica that lags may still answer with an
	// older one: read it again for a moment.
	for range handoverReads {
		if at, ok := d.handedOverAt(); ok && at+1 == first {
			return 0
		}
		if !d.sleep(handoverReadEvery) {
			break
		}
	}
	return handover
}

const (
	handoverReads     = 10
	handoverReadEvery = 100 * time.Millisecond
)

// handedOverAt reads the consumer delivered sequence at which the target's previous holder
// let go gracefully.
func (d *dispatcher) handedOverAt() (uint64, bool) {
	ctx, cancel := context.WithTimeout(d.ctx, fetchWait)
	defer cancel()
	kv, err := d.e.js.KeyValue(ctx, d.e.names.state)
	if err != nil {
		return 0, false
	}
	entry, err := kv.Get(ctx, handoverKey(d.name))
	if err != nil {
		return 0, false
	}
	at, err := strconv.ParseUint(string(entry.Value()), 10, 64)
	return at, err == nil
}

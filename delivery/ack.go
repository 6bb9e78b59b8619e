package delivery

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

const (
	// ackDelay is how long a settled event's acknowledgement waits for others to go with it:
	// one by one, each ack could empty the stream and make the store replace its block file
	// (docs/performance.md#batched-acknowledgements). A crash then re-delivers at most the
	// events settled in the last ackDelay.
	ackDelay = 10 * time.Millisecond
	// ackBatch sends the batch at once when this many wait.
	ackBatch = 256
	// ackTimeout bounds the wait for the server's confirmation of a batch.
	ackTimeout = 5 * time.Second
)

// ack settles a delivered or dead-lettered event, unless l was released meanwhile: the
// instance that holds the pin counts on nobody else settling the events it was handed (see
// dispatcher.take). It returns false then. The event counts as settled before the ack is
// sent: a dispatcher that holds back counts what it holds against the consumer's ack-pending
// events (see trySettle), and one acked but still counted as held would hide another's. The
// acknowledgement itself goes out with the next batch (see ackLoop).
func (d *dispatcher) ack(msg jetstream.Msg, l *lane) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l.released {
		return false
	}
	d.settledLocked(streamSeq(msg))
	d.acks = append(d.acks, msg)
	select {
	case d.ackKick <- struct{}{}:
	default:
	}
	return true
}

// ackLoop sends the acknowledgements of settled events in batches: ackDelay after the first
// of a batch, or at once when ackBatch wait. It ends, having sent what is left, when acksQuit
// closes.
func (d *dispatcher) ackLoop() {
	defer close(d.acksDone)
	delay := time.NewTimer(ackDelay)
	delay.Stop()
	for {
		select {
		case <-d.acksQuit:
			d.sendAcks(d.takeAcks())
			return
		case <-d.ackKick:
		}
		delay.Reset(ackDelay)
	gather:
		for {
			select {
			case <-d.acksQuit:
				break gather
			case <-delay.C:
				break gather
			case <-d.ackKick:
				d.mu.Lock()
				full := len(d.acks) >= ackBatch
				d.mu.Unlock()
				if full {
					break gather
				}
			}
		}
		delay.Stop()
		d.sendAcks(d.takeAcks())
	}
}

func (d *dispatcher) takeAcks() []jetstream.Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	acks := d.acks
	d.acks = nil
	return acks
}

// sendAcks acknowledges msgs with one round trip: the server applies a consumer's
// acknowledgements in the order they arrive, so its answer to the last says all are applied.
func (d *dispatcher) sendAcks(msgs []jetstream.Msg) {
	if len(msgs) == 0 {
		return
	}
	last, failed := len(msgs)-1, 0
	var err error
	for _, m := range msgs[:last] {
		if e := m.Ack(); e != nil {
			failed, err = failed+1, e
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if e := msgs[last].DoubleAck(ctx); e != nil {
		failed, err = len(msgs), e // unconfirmed, so any of them
	}
	if failed > 0 {
		// Not lost: JetStream redelivers them and the CRM dedupes on webhook-id.
		d.log.Warn("acknowledging delivered events failed; they may be delivered again",
			zap.Int("events", failed), zapErr(err))
	}
}

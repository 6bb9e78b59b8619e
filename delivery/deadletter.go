package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/pbxbridge/pbxbridge/event"
)

// DeadLetter is an event a target would not take, kept with why.
type DeadLetter struct {
	ID        string          `json:"id"` // <target>/<event id>
	Target    string          `json:"target"`
	Type      string          `json:"type"`
	CallID    string          `json:"call_id"`
	Attempts  int             `json:"attempts"`
	Status    int             `json:"status,omitempty"`
	Reason    string          `json:"reason"`
	LastError string          `json:"last_error"`
	DeadAt    time.Time       `json:"dead_at"`
	Event     json.RawMessage `json:"event"`
}

// ErrNotFound is returned for an unknown dead letter or target.
var ErrNotFound = errors.New("not found")

// ErrNoTarget is returned for a replay to a target the running config does not have: nothing
// would deliver the event, so it stays a dead letter.
var ErrNoTarget = errors.New("not a target of the running config; its dead letters can be listed, deleted and purged, not replayed")

// deadLetter stores the event in the dead-letter stream and then acks it. If the dead-letter
// stream cannot take it, the event stays held and dead-lettering is retried: nothing is lost.
// A released lane l leaves both to the instance that took over.
func (d *dispatcher) deadLetter(msg jetstream.Msg, l *lane, ev *storedEvent, attempts int, out outcome) bool {
	eventID := ev.id
	if eventID == "" {
		eventID = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	dl := DeadLetter{
		ID:        d.name + "/" + eventID,
		Target:    d.name,
		Type:      ev.typ,
		CallID:    ev.callID,
		Attempts:  attempts,
		Status:    out.status,
		Reason:    out.reason,
		LastError: out.err,
		DeadAt:    time.Now().UTC(),
		Event:     json.RawMessage(msg.Data()),
	}
	body, _ := json.Marshal(dl)
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		if d.released(l) {
			return false
		}
		ctx, cancel := context.WithTimeout(d.ctx, publishTimeout)
		_, err := d.e.js.Publish(ctx, d.e.names.deadSubject(d.name, eventID), body)
		cancel()
		if err == nil {
			err = d.e.deadSync.sync() // on disk before the event leaves the events stream
		}
		if err == nil {
			break
		}
		d.log.Error("storing a dead letter failed; the event stays queued", zapErr(err), zapEvent(eventID))
		if !d.sleep(wait) {
			return false
		}
	}
	metrics.deadLettered.WithLabelValues(d.name).Inc()
	d.log.Warn("dead-lettered", zapEvent(eventID), zapString("reason", out.reason), zapString("last_error", out.err))
	return d.ack(msg, l)
}

// DeadLetters lists a target's dead letters (every target's when target is empty), oldest first.
func (e *Engine) DeadLetters(ctx context.Context, target string) (dls []DeadLetter, err error) {
	err = answered(ctx, func() error { dls, err = e.deadLetters(ctx, target); return err })
	return dls, err
}

func (e *Engine) deadLetters(ctx context.Context, target string) ([]DeadLetter, error) {
	filter := e.names.prefix + "_dead.>"
	if target != "" {
		if !validToken(target) {
			return nil, ErrNotFound
		}
		filter = e.names.deadSubject(target, ">")
	}
	return readStream[DeadLetter](ctx, e.js, e.names.dead, []string{filter}, math.MaxInt)
}

// readStream decodes up to limit messages of a stream's subjects that match filters, oldest
// first, skipping any that do not decode.
func readStream[T any](ctx context.Context, js jetstream.JetStream, name string, filters []string, limit int) ([]T, error) {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := []T{}
	for remaining := min(int(info.NumPending), limit); remaining > 0; {
		batch, err := cons.Fetch(min(remaining, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var v T
			if json.Unmarshal(msg.Data(), &v) == nil {
				out = append(out, v)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		remaining -= n
	}
	return out, nil
}

// DeadLetter returns one dead letter by its id's parts.
func (e *Engine) DeadLetter(ctx context.Context, target, eventID string) (dl DeadLetter, seq uint64, err error) {
	err = answered(ctx, func() error { dl, seq, err = e.deadLetter(ctx, target, eventID); return err })
	return dl, seq, err
}

func (e *Engine) deadLetter(ctx context.Context, target, eventID string) (DeadLetter, uint64, error) {
	var dl DeadLetter
	if !validToken(target) || !validToken(eventID) {
		return dl, 0, ErrNotFound
	}
	stream, err := e.js.Stream(ctx, e.names.dead)
	if err != nil {
		return dl, 0, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, e.names.deadSubject(target, eventID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return dl, 0, ErrNotFound
	}
	if err != nil {
		return dl, 0, err
	}
	if err := json.Unmarshal(raw.Data, &dl); err != nil {
		return dl, 0, fmt.Errorf("dead letter %s/%s does not decode: %w", target, eventID, err)
	}
	return dl, raw.Sequence, nil
}

// validToken keeps ids from the admin API from forming wildcards or extra subject tokens.
func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// DeleteDeadLetter removes one dead letter.
func (e *Engine) DeleteDeadLetter(ctx context.Context, target, eventID string) error {
	_, seq, err := e.DeadLetter(ctx, target, eventID)
	if err != nil {
		return err
	}
	stream, err := e.js.Stream(ctx, e.names.dead)
	if err != nil {
		return err
	}
	return stream.DeleteMsg(ctx, seq)
}

// ReplayDeadLetter queues the event again for its target only, with its id unchanged, behind
// its call's queued events, and then removes the dead letter.
func (e *Engine) ReplayDeadLetter(ctx context.Context, target, eventID string) error {
	dl, seq, err := e.DeadLetter(ctx, target, eventID)
	if err != nil {
		return err
	}
	if e.dispatcher(target) == nil {
		return fmt.Errorf("target %s: %w", target, ErrNoTarget)
	}
	var ev event.Event
	if err := json.Unmarshal(dl.Event, &ev); err != nil {
		return fmt.Errorf("dead letter %s does not hold an event: %w", dl.ID, err)
	}
	msg := nats.NewMsg(e.names.replaySubject(target, ev.Type))
	// A fresh message id: the event's own id is still in the dedupe window.
	msg.Header.Set(jetstream.MsgIDHeader, "replay-"+nuid.Next())
	msg.Header.Set(headerKey, ev.OrderingKey())
	msg.Data = dl.Event
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		return classifyPublishError(err)
	}
	if err := e.eventsSync.sync(); err != nil { // on disk before the dead letter goes
		return err
	}
	stream, err := e.js.Stream(ctx, e.names.dead)
	if err != nil {
		return err
	}
	// Not DeleteMsg(seq): the replay may already have failed again and replaced this dead
	// letter; purging below seq+1 removes the old one if it is still there, never the new.
	return stream.Purge(ctx, jetstream.WithPurgeSubject(e.names.deadSubject(target, eventID)), jetstream.WithPurgeSequence(seq+1))
}

// ReplayDeadLetters replays all of a target's dead letters, oldest first.
func (e *Engine) ReplayDeadLetters(ctx context.Context, target string) (int, error) {
	if e.dispatcher(target) == nil {
		return 0, fmt.Errorf("target %s: %w", target, ErrNoTarget)
	}
	return e.eachDeadLetter(ctx, target, e.ReplayDeadLetter)
}

// PurgeDeadLetters removes all of a target's dead letters.
func (e *Engine) PurgeDeadLetters(ctx context.Context, target string) (n int, err error) {
	err = answered(ctx, func() error { n, err = e.purgeDeadLetters(ctx, target); return err })
	return n, err
}

func (e *Engine) purgeDeadLetters(ctx context.Context, target string) (int, error) {
	if !validToken(target) {
		return 0, ErrNotFound
	}
	stream, err := e.js.Stream(ctx, e.names.dead)
	if err != nil {
		return 0, err
	}
	before, err := e.DeadLetters(ctx, target)
	if err != nil {
		return 0, err
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(e.names.deadSubject(target, ">"))); err != nil {
		return 0, err
	}
	return len(before), nil
}

func (e *Engine) eachDeadLetter(ctx context.Context, target string, fn func(context.Context, string, string) error) (int, error) {
	if !validToken(target) {
		return 0, ErrNotFound
	}
	dls, err := e.DeadLetters(ctx, target)
	if err != nil {
		return 0, err
	}
	for i, dl := range dls {
		if err := fn(ctx, target, strings.TrimPrefix(dl.ID, target+"/")); err != nil {
			return i, err
		}
	}
	return len(dls), nil
}

// answered runs op, an admin operation that may run twice, again while JetStream does not
// answer: no responders, as when a NATS node that rejoins its cluster has not yet taken up
// the JetStream API. It gives up when ctx ends, with ErrNotReady.
func answered(ctx context.Context, op func() error) error {
	for {
		err := op()
		if !errors.Is(err, nats.ErrNoResponders) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, err)
		case <-time.After(answeredEvery):
		}
	}
}

const answeredEvery = 250 * time.Millisecond

// replaySubject carries a replayed event to one target only; no PBX is named "_replay".
func (n names) replaySubject(target, typ string) string {
	return n.prefix + "._replay." + target + "." + typ
}

package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
)

const (
	// maxBatch bounds one group commit.
	maxBatch = 256
	// publishTimeout bounds one commit; callers give up earlier (ErrNotDurable) but the commit
	// may still land, and then a PBX re-send is deduplicated.
	publishTimeout = 10 * time.Second
	// headerKey carries the ordering key so the dispatcher can place an event in its lane.
	headerKey = "Pbx-Key"
	// errCodeInsufficientResources is JetStream's JSInsufficientResourcesErr (the store's
	// limit across streams).
	errCodeInsufficientResources jetstream.ErrorCode = 10023
)

// Result of one Enqueue.
type Result struct {
	Accepted   int // newly stored events
	Duplicates int // events already stored within the dedupe window
}

type pending struct {
	subject, id, key, typ string
	// The event's call id, from and to numbers and traceparent (see headerType).
	callID, from, to, traceParent string
	data                          []byte
}

type enqueueReq struct {
	msgs []pending
	done chan enqueueDone
}

type enqueueDone struct {
	res Result
	err error
}

// committer is the group commit: requests that arrive while a commit is in flight form the
// next batch, whose messages are published pipelined and made durable with one fsync
// (blockSyncer) before any of its webhooks is answered. No timer adds latency when traffic is
// light.
type committer struct {
	e    *Engine
	in   chan *enqueueReq
	quit chan struct{}
	done chan struct{}
}

func newCommitter(e *Engine) *committer {
	c := &committer{e: e, in: make(chan *enqueueReq, maxBatch), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *committer) close() {
	close(c.quit)
	<-c.done
}

// Enqueue stores events durably. It returns only after they are synced to disk (the group
// commit's fsync, or a cluster's acknowledgement), or with ErrNotReady, ErrFull, ErrDiskFull,
// ErrStoreFailed or ErrNotDurable (ctx done first).
func (e *Engine) Enqueue(ctx context.Context, events []event.Event) (Result, error) {
	if !e.Ready() {
		return Result{}, ErrNotReady
	}
	if err := e.Writable(); err != nil {
		return Result{}, err
	}
	req := &enqueueReq{done: make(chan enqueueDone, 1)}
	routed := *e.routed.Load()
	for i := range events {
		ev := &events[i]
		if !routed[Account{ev.Data.PBX, ev.Data.Account}] {
			return Result{}, fmt.Errorf("%w: no target takes events of %s %s yet", ErrNotReady, ev.Data.PBX, ev.Data.Account)
		}
		data, err := encodeStored(ev)
		if err != nil {
			return Result{}, fmt.Errorf("encoding event %s: %w", ev.ID, err)
		}
		req.msgs = append(req.msgs, pending{
			subject:     e.names.subject(ev.Data.PBX, ev.Data.Account, ev.Type),
			id:          ev.ID,
			key:         ev.OrderingKey(),
			typ:         ev.Type,
			callID:      ev.Data.CallID,
			from:        ev.Data.From.Number,
			to:          ev.Data.To.Number,
			traceParent: ev.TraceParent,
			data:        data,
		})
	}
	if len(req.msgs) == 0 {
		return Result{}, nil
	}
	select {
	case e.commit.in <- req:
	case <-ctx.Done():
		return Result{}, ErrNotDurable
	case <-e.commit.quit:
		return Result{}, ErrNotReady
	}
	select {
	case d := <-req.done:
		return d.res, d.err
	case <-ctx.Done():
		return Result{}, ErrNotDurable
	}
}

func (c *committer) run() {
	defer close(c.done)
	var batch []*enqueueReq
	for {
		batch = batch[:0]
		select {
		case r := <-c.in:
			batch = append(batch, r)
		case <-c.quit:
			c.failQueued()
			return
		}
		n := len(batch[0].msgs)
	gather:
		for n < maxBatch {
			select {
			case r := <-c.in:
				batch = append(batch, r)
				n += len(r.msgs)
			default:
				break gather
			}
		}
		c.commit(batch)
	}
}

func (c *committer) failQueued() {
	for {
		select {
		case r := <-c.in:
			r.done <- enqueueDone{err: ErrNotReady}
		default:
			return
		}
	}
}

func (m pending) msg() *nats.Msg {
	headers := [...]struct{ name, value string }{
		{jetstream.MsgIDHeader, m.id}, {headerKey, m.key}, {headerType, m.typ},
		{headerCallID, m.callID}, {headerFrom, m.from}, {headerTo, m.to}, {headerTraceParent, m.traceParent},
	}
	msg := &nats.Msg{Subject: m.subject, Header: make(nats.Header, len(headers)), Data: m.data}
	values := make([]string, len(headers)) // one array behind every header's value
	for i, h := range headers {
		if h.value != "" {
			values[i] = h.value
			msg.Header[h.name] = values[i : i+1 : i+1]
		}
	}
	return msg
}

func (c *committer) commit(batch []*enqueueReq) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	c.publishEach(ctx, batch)
}

// publishEach pipelines the batch's messages on the one connection, so the stream stores them
// in order, and answers each webhook from its own acks: a duplicate or a full store affects
// only its own webhook. A webhook's events are not stored all-or-nothing; one that is not
// answered 200 is re-sent and its stored events are then duplicates.
func (c *committer) publishEach(ctx context.Context, batch []*enqueueReq) {
	acks := make([][]jetstream.PubAckFuture, len(batch))
	failed := make([]error, len(batch))
	publisher := *c.e.publisher.Load()
	for i, r := range batch {
		for _, m := range r.msgs {
			ack, err := publisher.PublishMsgAsync(m.msg())
			if err != nil {
				failed[i] = classifyPublishError(err)
				break
			}
			acks[i] = append(acks[i], ack)
		}
	}
	// The server answers nothing to a publish that met a write error; its log tells (see
	// natsLogger), and the batch's unanswered publishes then fail at once.
	storeFailed := c.e.health.failedSignal()
	done := make([]enqueueDone, len(batch))
	for i, r := range batch {
		d := &done[i]
		d.err = failed[i]
		for j, ack := range acks[i] {
			a, err := c.awaitAck(ctx, ack, storeFailed)
			if err != nil {
				d.err = cmp.Or(d.err, err)
				continue
			}
			stored := !a.Duplicate
			if a.Duplicate {
				stored, err = c.storeIfOriginalLost(ctx, r.msgs[j], a.Sequence)
				d.err = cmp.Or(d.err, err)
			}
			if stored {
				d.res.Accepted++
			} else {
				d.res.Duplicates++
			}
		}
	}
	if err := c.e.eventsSync.sync(); err != nil {
		c.e.log.Error("syncing stored events to disk", zap.Error(err))
		failure := ErrNotDurable
		if cause := writeErrno(err); cause != "" {
			c.e.health.reportWriteError(c.e.log, cause)
			failure = ErrStoreFailed
		}
		for i := range done {
			done[i] = enqueueDone{err: fmt.Errorf("%w: syncing: %v", failure, err)}
		}
	}
	for i, r := range batch {
		r.done <- done[i]
	}
}

// awaitAck waits for a publish's answer: an answer already there counts before a failure of
// the store, which ends the wait for the others.
func (c *committer) awaitAck(ctx context.Context, ack jetstream.PubAckFuture, storeFailed <-chan struct{}) (*jetstream.PubAck, error) {
	select {
	case a := <-ack.Ok():
		return a, nil
	case err := <-ack.Err():
		return nil, classifyPublishError(err)
	default:
	}
	select {
	case a := <-ack.Ok():
		return a, nil
	case err := <-ack.Err():
		return nil, classifyPublishError(err)
	case <-storeFailed:
		return nil, cmp.Or(c.e.health.writeError(), error(ErrStoreFailed))
	case <-ctx.Done():
		return nil, ErrNotDurable
	}
}

// storeIfOriginalLost stores m again, under an id derived from its original's sequence, when
// the original that made m a duplicate may have been lost. nats-server (seen with 2.15.2,
// Interest retention) can, while recovering from a kill -9 in the middle of an atomic batch
// commit, remove messages of that batch yet keep their ids for deduplication. The group
// commit no longer uses atomic batches; this stays as the guard against any such recovery
// loss, as the cost is small (see originalLost). There the PBX re-sends
// the webhooks it got no answer for, each is answered "duplicate", and the events would never
// be delivered. A second copy is at worst a re-delivery with the same webhook-id; a later
// re-send finds the copy and stays a duplicate. It reports whether m was stored now.
func (c *committer) storeIfOriginalLost(ctx context.Context, m pending, seq uint64) (bool, error) {
	lost, err := c.e.originalLost(ctx, seq)
	if err != nil || !lost {
		return false, err
	}
	m.id = fmt.Sprintf("%s#%d", m.id, seq)
	m.typ = "" // the message id is not the event's: the dispatcher decodes this one (readStored)
	ack, err := c.e.js.PublishMsg(ctx, m.msg())
	if err != nil {
		return false, classifyPublishError(err)
	}
	if !ack.Duplicate {
		c.e.log.Warn("a re-sent event's original, stored before the last start, is gone; stored it again",
			zap.String("msg_id", m.id), zap.Uint64("seq", ack.Sequence))
	}
	return !ack.Duplicate, nil
}

// originalLost reports whether the message at seq may have been lost: the embedded store
// recovered it when this engine started, and it is gone. Messages this run stored leave the
// stream only once every target is done with them. For earlier ones the store cannot tell
// delivered from lost after a crash (the targets' acknowledgement state is itself recovered
// stale), so a re-send across a restart of an event that was delivered is delivered again.
// An external cluster outlives the gateway's restarts and is left alone.
func (e *Engine) originalLost(ctx context.Context, seq uint64) (bool, error) {
	if e.srv == nil || seq == 0 || seq > e.startSeq {
		return false, nil
	}
	stream, err := e.js.Stream(ctx, e.names.events)
	if err != nil {
		return false, err
	}
	_, err = stream.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil // still stored: it will be delivered
}

// classifyPublishError maps JetStream's answer to the errors the webhook handler knows.
func classifyPublishError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.ErrorCode == errCodeInsufficientResources ||
			strings.Contains(apiErr.Description, "maximum bytes exceeded") ||
			strings.Contains(apiErr.Description, "insufficient resources") {
			return ErrFull
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return ErrNotDurable
	}
	return fmt.Errorf("publish: %w", err)
}

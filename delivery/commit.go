package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/pbxbridge/pbxbridge/translators"
)

const (
	// maxBatch bounds one atomic batch (JetStream's own limit is 1000 messages).
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
	subject, id, key string
	data             []byte
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
// next atomic batch, so the fsync of SyncAlways is paid once per batch, not per webhook, and
// no timer adds latency when traffic is light.
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

// Enqueue stores events durably. It returns only after JetStream has written them to disk
// (SyncAlways), or with ErrNotReady, ErrFull or ErrNotDurable (ctx done first).
func (e *Engine) Enqueue(ctx context.Context, events []translators.Event) (Result, error) {
	if !e.Ready() {
		return Result{}, ErrNotReady
	}
	req := &enqueueReq{done: make(chan enqueueDone, 1)}
	routed := *e.routed.Load()
	for i := range events {
		ev := &events[i]
		if !routed[Source{ev.Data.PBX, ev.Data.Account}] {
			return Result{}, fmt.Errorf("%w: no target takes events of %s %s yet", ErrNotReady, ev.Data.PBX, ev.Data.Account)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return Result{}, fmt.Errorf("encoding event %s: %w", ev.ID, err)
		}
		req.msgs = append(req.msgs, pending{
			subject: e.names.subject(ev.Data.PBX, ev.Data.Account, ev.Type),
			id:      ev.ID,
			key:     ev.OrderingKey(),
			data:    data,
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
		c.commit(batch, n)
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
	msg := nats.NewMsg(m.subject)
	msg.Header.Set(jetstream.MsgIDHeader, m.id)
	msg.Header.Set(headerKey, m.key)
	msg.Data = m.data
	return msg
}

func (c *committer) commit(batch []*enqueueReq, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if n > 1 {
		msgs := make([]*nats.Msg, 0, n)
		for _, r := range batch {
			for _, m := range r.msgs {
				msgs = append(msgs, m.msg())
			}
		}
		// No flow control: the batch is small and the connection in-process or near.
		_, err := jetstreamext.PublishMsgBatch(ctx, c.e.js, msgs, jetstreamext.BatchFlowControl{AckTimeout: publishTimeout})
		if err == nil {
			for _, r := range batch {
				r.done <- enqueueDone{res: Result{Accepted: len(r.msgs)}}
			}
			return
		}
		// A duplicate (a PBX re-send) or a full store rejects the whole batch: publish one by
		// one so each webhook gets its own answer and a re-send never fails its neighbours.
		c.e.log.Debug("atomic batch rejected, publishing one by one", zapErr(err))
	}
	for _, r := range batch {
		var d enqueueDone
		for _, m := range r.msgs {
			ack, err := c.e.js.PublishMsg(ctx, m.msg())
			if err != nil {
				d.err = classifyPublishError(err)
				break
			}
			if ack.Duplicate {
				d.res.Duplicates++
			} else {
				d.res.Accepted++
			}
		}
		r.done <- d
	}
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

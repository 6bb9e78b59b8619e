package delivery

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/internal/natstest"
)

// The pin moves from a live instance that holds a call's events (one at the CRM, four parked
// behind it) to another, as when the NATS consumer leader changes. The first lets go of them;
// the second delivers the call's next event only after them, and the call's first deliveries
// stay in order. Without the hold-back in dispatcher.take, X/5 reaches the CRM before X/1…X/4.
func TestTakeOverKeepsCallOrder(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)

	x, y := callEvents("X", 6), callEvents("Y", 1)
	// The CRM holds the first attempt of X/0 until released, so that instance a holds the call.
	held, unhold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(unhold) }) })
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.ID == x[0].ID && attempt == 1 {
			close(held)
			<-unhold
		}
		return http.StatusOK
	})
	instance := func(name string) *Engine {
		e := openEngine(t, Config{NATS: &NATSConfig{URLs: []string{srv.ClientURL()}}})
		target := testTarget(c.URL)
		target.Name, target.UserAgent, target.Timeout = "takeover", name, time.Minute
		applyTargets(t, e, target)
		return e
	}
	ctx := context.Background()
	a := instance("a")
	if _, err := a.Enqueue(ctx, x[:5]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(deliverWithin):
		t.Fatal("X/0 was not attempted")
	}
	b := instance("b")

	stream, err := a.js.Stream(ctx, a.names.events)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.UnpinConsumer(ctx, consumerName("takeover"), pinnedGroup); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Enqueue(ctx, append([]event.Event{x[5]}, y...)); err != nil {
		t.Fatal(err)
	}
	c.WaitDelivered(t, 1, 2*ackWait+deliverWithin) // by whoever has the pin now
	once.Do(func() { close(unhold) })              // a's attempt at X/0 then ends, late

	position := map[string]int{}
	for i, ev := range x {
		position[ev.ID] = i
	}
	position[y[0].ID] = 0
	got := c.WaitDelivered(t, len(position), deliverWithin)
	gatewaytest.CheckCallOrder(t, got, position)
	for _, d := range got {
		if d.Event.ID == x[5].ID && d.Header.Get("User-Agent") != "b" {
			t.Errorf("X/5 delivered by %s, want b: the pin did not move", d.Header.Get("User-Agent"))
		}
	}
	if held := targetStatus(t, a, "takeover").Held; held != 0 {
		t.Errorf("instance a still holds %d events after losing the pin", held)
	}
	var who []string
	for _, d := range got {
		who = append(who, fmt.Sprintf("%s:%s/%d", d.Header.Get("User-Agent"), d.Event.Data.CallID, d.Event.Data.Seq))
	}
	t.Logf("deliveries in arrival order: %v", who)
}

// A graceful stop of the instance that delivers, holding a call's events in backoff, hands
// them over at once: the other instance delivers them, in order, long before the pin's TTL
// and the ack deadlines would have let it (a rolling deploy, not a crash).
func TestGracefulStopHandsOverAtOnce(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	c := gatewaytest.NewCRM(t, nil)
	x := callEvents("H", 5)
	var refusedByA atomic.Int64
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == "a" { // the CRM refuses instance a: its events stay held
			refusedByA.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		c.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(crm.Close)
	instance := func(name string) (*Engine, func(context.Context) error) {
		e, closeE := openEngineToClose(t, Config{NATS: &NATSConfig{URLs: []string{srv.ClientURL()}}})
		target := testTarget(crm.URL)
		target.Name, target.UserAgent = "handover", name
		applyTargets(t, e, target)
		return e, closeE
	}
	ctx := context.Background()
	a, closeA := instance("a")
	if _, err := a.Enqueue(ctx, x); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Eventually(t, deliverWithin, "instance a holding the call", func() bool {
		return targetStatus(t, a, "handover").Held == len(x) && refusedByA.Load() > 0
	})
	b, _ := instance("b")

	stopped := time.Now()
	grace, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := closeA(grace); err != nil {
		t.Fatal(err)
	}
	got := c.WaitDelivered(t, len(x), deliverWithin)
	took := time.Since(stopped)
	position := map[string]int{}
	for i, ev := range x {
		position[ev.ID] = i
	}
	gatewaytest.CheckCallOrder(t, got, position)
	// Without the handover b gets the pin after its TTL (2×ackWait), and waits handover more.
	if took >= handover {
		t.Errorf("the other instance delivered the call %s after the graceful stop; a handover takes less than %s", took, handover)
	}
	gatewaytest.Eventually(t, deliverWithin, "instance b settling the call", func() bool { return targetStatus(t, b, "handover").Held == 0 })
	t.Logf("graceful stop to the call delivered by the other instance: %s", took.Round(time.Millisecond))
}

// A delivery lost on its way to the instance that holds the pin (nats.go gave up on the pull
// before the server's answer came) stays pending and comes back after its ack deadline. The
// call's later events, handed out meanwhile, wait for it: the gap in the consumer sequence
// shows the loss. Without noteDeliveryLocked, L/1…L/3 reach the CRM an ack deadline before L/0.
func TestLostDeliveryKeepsCallOrder(t *testing.T) {
	c := gatewaytest.NewCRM(t, nil)
	e, logs := openEngineLogs(t, Config{})
	tg := testTarget(c.URL)
	tg.Name = "lost"
	applyTargets(t, e, tg)
	// Nothing was handed out yet, so nobody holds the pin: the dispatcher on the losing
	// consumer gets it with the first event.
	ctx := context.Background()
	d := e.dispatcher(tg.Name)
	d.stop(ctx)
	lx := callEvents("L", 4)
	var lost atomic.Bool
	losing := losingConsumer{Consumer: d.cons, lose: func(m jetstream.Msg) bool {
		meta, err := m.Metadata()
		return err == nil && meta.NumDelivered == 1 && m.Headers().Get(headerKey) == "L" && !lost.Swap(true)
	}}
	e.mu.Lock()
	e.dispatchers[tg.Name] = startDispatcher(e, d.target, losing)
	e.mu.Unlock()

	warm := callEvents("W", 1)
	if _, err := e.Enqueue(ctx, warm); err != nil {
		t.Fatal(err)
	}
	c.WaitDelivered(t, 1, deliverWithin)
	if _, err := e.Enqueue(ctx, lx); err != nil {
		t.Fatal(err)
	}
	got := c.WaitDelivered(t, 1+len(lx), ackWait+handover+deliverWithin)
	if !lost.Load() {
		t.Fatal("no delivery was lost")
	}
	position := map[string]int{warm[0].ID: 0}
	for i, ev := range lx {
		position[ev.ID] = i
	}
	gatewaytest.CheckCallOrder(t, got, position)
	if n := logs.FilterMessageSnippet("lost on their way").Len(); n != 1 {
		t.Errorf("logged %d lost deliveries, want 1", n)
	}
}

// losingConsumer loses the events lose picks on their way from the server to the dispatcher.
type losingConsumer struct {
	jetstream.Consumer
	lose func(jetstream.Msg) bool
}

func (c losingConsumer) Fetch(n int, opts ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	batch, err := c.Consumer.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	msgs := make(chan jetstream.Msg, n)
	go func() {
		defer close(msgs)
		for m := range batch.Messages() {
			if !c.lose(m) {
				msgs <- m
			}
		}
	}()
	return losingBatch{MessageBatch: batch, msgs: msgs}, nil
}

type losingBatch struct {
	jetstream.MessageBatch
	msgs chan jetstream.Msg
}

func (b losingBatch) Messages() <-chan jetstream.Msg { return b.msgs }

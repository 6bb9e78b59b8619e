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

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// The pin moves from a live instance that holds a call's events (one at the CRM, four parked
// behind it) to another, as when the NATS consumer leader changes. The first lets go of them;
// the second delivers the call's next event only after them, and the call's first deliveries
// stay in order. Without the hold-back in dispatcher.take, X/5 reaches the CRM before X/1…X/4.
func TestTakeOverKeepsCallOrder(t *testing.T) {
	srv := startNATS(t)

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

// startNATS runs a NATS server with JetStream on a 127.0.0.1 port, as an external cluster the
// engines connect to; it shuts down after the engines' cleanups.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// A graceful stop of the instance that delivers, holding a call's events in backoff, hands
// them over at once: the other instance delivers them, in order, long before the pin's TTL
// and the ack deadlines would have let it (a rolling deploy, not a crash).
func TestGracefulStopHandsOverAtOnce(t *testing.T) {
	srv := startNATS(t)
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

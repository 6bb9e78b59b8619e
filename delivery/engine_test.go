package delivery

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

func openEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e, _ := openEngineLogs(t, cfg)
	return e
}

// openEngineLogs also returns what the engine logs, for tests that assert on it.
func openEngineLogs(t *testing.T, cfg Config) (*Engine, *observer.ObservedLogs) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	core, logs := observer.New(zap.InfoLevel)
	e, err := Open(cfg, zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e, logs
}

func testTarget(url string) Target {
	return Target{
		Name: "crm", URL: url, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Accounts: []Account{{"mango", "office"}}, UserAgent: "pbxbridge/test",
	}
}

func callEvents(call string, n int) []event.Event {
	var evs []event.Event
	for i := range n {
		evs = append(evs, callEvent(event.TypeRinging, call, i))
	}
	return evs
}

// callEvent is the i-th event (0-based) of a call of mango office.
func callEvent(typ, call string, i int) event.Event {
	src := event.Origin{PBX: "mango", Account: "office"}
	ev := src.New(typ, fmt.Sprintf("%s/%d", call, i), call, time.Unix(1700000000, 0))
	ev.Data.Seq = int64(i + 1)
	return ev
}

func TestDeliversInCallOrderWithRetries(t *testing.T) {
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.Data.Seq == 2 && attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := openEngine(t, Config{})
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget(c.URL)}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	position := map[string]int{}
	for _, call := range []string{"A", "B", "C"} {
		for i, ev := range callEvents(call, 4) {
			if _, err := e.Enqueue(ctx, []event.Event{ev}); err != nil {
				t.Fatal(err)
			}
			position[ev.ID] = i
		}
	}
	got := c.WaitDelivered(t, 12, 30*time.Second)
	gatewaytest.CheckCallOrder(t, got, position)
}

func TestDuplicateInBatchDoesNotFailNeighbours(t *testing.T) {
	c := gatewaytest.NewCRM(t, nil)
	e := openEngine(t, Config{})
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget(c.URL)}); err != nil {
		t.Fatal(err)
	}
	evs := callEvents("D", 3)
	ctx := context.Background()
	if res, err := e.Enqueue(ctx, evs[:1]); err != nil || res.Accepted != 1 {
		t.Fatalf("first: %+v %v", res, err)
	}
	// The same three requests concurrently: evs[0] is a re-send inside whatever batch forms.
	var wg sync.WaitGroup
	results := make([]Result, 3)
	for i := range evs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.Enqueue(ctx, evs[i:i+1])
			if err != nil {
				t.Errorf("enqueue %d: %v", i, err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if results[0].Duplicates != 1 || results[1].Accepted != 1 || results[2].Accepted != 1 {
		t.Fatalf("results %+v", results)
	}
	if got := c.WaitDelivered(t, 3, 30*time.Second); len(got) != 3 {
		t.Fatalf("delivered %d requests for 3 events", len(got))
	}
}

// One webhook's events with a re-send among them: the re-send is a duplicate, the others are
// stored once each, in order.
func TestDuplicateInBatch(t *testing.T) {
	c := gatewaytest.NewCRM(t, nil)
	e := openEngine(t, Config{})
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget(c.URL)}); err != nil {
		t.Fatal(err)
	}
	evs := callEvents("A", 9)
	ctx := context.Background()
	if res, err := e.Enqueue(ctx, evs[3:4]); err != nil || res.Accepted != 1 {
		t.Fatalf("first: %+v %v", res, err)
	}
	res, err := e.Enqueue(ctx, evs)
	if err != nil || res.Accepted != len(evs)-1 || res.Duplicates != 1 {
		t.Fatalf("batch: %+v %v", res, err)
	}
	// Stream order: the first-stored event, then the batch without it.
	position := map[string]int{evs[3].ID: 0}
	for i, ev := range evs {
		if i != 3 {
			position[ev.ID] = i + 1
		}
	}
	got := c.WaitDelivered(t, len(evs), 30*time.Second)
	if len(got) != len(evs) {
		t.Fatalf("delivered %d requests for %d events", len(got), len(evs))
	}
	gatewaytest.CheckCallOrder(t, got, position)
}

func TestDeadLetterAndReplay(t *testing.T) {
	var mu sync.Mutex
	reject := true
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		if reject {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	e := openEngine(t, Config{})
	ctx := context.Background()
	if err := e.Apply(ctx, Config{}, []Target{testTarget(c.URL)}); err != nil {
		t.Fatal(err)
	}
	ev := callEvents("E", 1)
	if _, err := e.Enqueue(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var dls []DeadLetter
	for deadline := time.Now().Add(10 * time.Second); len(dls) == 0 && time.Now().Before(deadline); {
		var err error
		if dls, err = e.DeadLetters(ctx, "crm"); err != nil {
			t.Fatal(err)
		}
		if len(dls) == 0 {
			time.Sleep(20 * time.Millisecond) // polling the admin view; there is no signal to wait on
		}
	}
	if len(dls) != 1 || dls[0].ID != "crm/"+ev[0].ID || dls[0].Status != 422 || dls[0].Attempts != 1 {
		t.Fatalf("dead letters %+v", dls)
	}
	mu.Lock()
	reject = false
	mu.Unlock()
	if err := e.ReplayDeadLetter(ctx, "crm", ev[0].ID); err != nil {
		t.Fatal(err)
	}
	got := c.WaitDelivered(t, 1, 30*time.Second)
	if got[0].Header.Get("webhook-id") != ev[0].ID {
		t.Fatalf("replayed with webhook-id %q", got[0].Header.Get("webhook-id"))
	}
	if dls, _ := e.DeadLetters(ctx, "crm"); len(dls) != 0 {
		t.Fatalf("dead letter still listed after replay: %+v", dls)
	}
}

package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pbxbridge/pbxbridge/translators"
)

// crm is a CRM stand-in on 127.0.0.1 that records what it receives.
type crm struct {
	*httptest.Server
	mu       sync.Mutex
	received []received
	respond  func(ev translators.Event, attempt int) int
	attempts map[string]int
	got      chan struct{}
}

type received struct {
	ev     translators.Event
	header http.Header
}

func newCRM(t *testing.T, respond func(ev translators.Event, attempt int) int) *crm {
	c := &crm{respond: respond, attempts: map[string]int{}, got: make(chan struct{}, 10000)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev translators.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("CRM got an undecodable body: %v", err)
		}
		c.mu.Lock()
		c.attempts[ev.ID]++
		status := http.StatusOK
		if c.respond != nil {
			status = c.respond(ev, c.attempts[ev.ID])
		}
		if status < 300 {
			c.received = append(c.received, received{ev, r.Header.Clone()})
		}
		c.mu.Unlock()
		w.WriteHeader(status)
		if status < 300 {
			c.got <- struct{}{}
		}
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *crm) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-c.got:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("CRM received %d of %d events", len(c.received), n)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.received...)
}

func openEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	e, err := Open(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func testTarget(url string) Target {
	return Target{
		Name: "crm", URL: url, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Sources: []Source{{"mango", "office"}}, UserAgent: "pbxbridge/test",
	}
}

func callEvents(call string, n int) []translators.Event {
	src := translators.Source{PBX: "mango", Account: "office"}
	var evs []translators.Event
	for i := range n {
		ev := src.New(translators.TypeRinging, fmt.Sprintf("%s/%d", call, i), call, time.Unix(1700000000, 0))
		ev.Data.Seq = int64(i + 1)
		evs = append(evs, ev)
	}
	return evs
}

func TestDeliversInCallOrderWithRetries(t *testing.T) {
	c := newCRM(t, func(ev translators.Event, attempt int) int {
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
	for _, call := range []string{"A", "B", "C"} {
		for _, ev := range callEvents(call, 4) {
			if _, err := e.Enqueue(ctx, []translators.Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := c.wait(t, 12)
	last := map[string]int64{}
	for _, r := range got {
		if r.ev.Data.Seq != last[r.ev.Data.CallID]+1 {
			t.Errorf("call %s: seq %d after %d", r.ev.Data.CallID, r.ev.Data.Seq, last[r.ev.Data.CallID])
		}
		last[r.ev.Data.CallID] = r.ev.Data.Seq
		if r.header.Get("webhook-id") != r.ev.ID {
			t.Errorf("webhook-id %q, want %q", r.header.Get("webhook-id"), r.ev.ID)
		}
	}
}

func TestDuplicateInBatchDoesNotFailNeighbours(t *testing.T) {
	c := newCRM(t, nil)
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
	got := c.wait(t, 3)
	if len(got) != 3 {
		t.Fatalf("delivered %d", len(got))
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	var mu sync.Mutex
	reject := true
	c := newCRM(t, func(ev translators.Event, attempt int) int {
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
	got := c.wait(t, 1)
	if got[0].header.Get("webhook-id") != ev[0].ID {
		t.Fatalf("replayed with webhook-id %q", got[0].header.Get("webhook-id"))
	}
	if dls, _ := e.DeadLetters(ctx, "crm"); len(dls) != 0 {
		t.Fatalf("dead letter still listed after replay: %+v", dls)
	}
}

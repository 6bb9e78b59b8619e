package gatewaytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbxbridge/pbxbridge/event"
)

// Delivery is one request a CRM received.
type Delivery struct {
	Event  event.Event
	Header http.Header
	Body   []byte
	Status int // what the CRM answered
}

// VerifySignature is nil when the delivery carries a Standard Webhooks signature by secret,
// checked by the Standard Webhooks library. The timestamp is not held against the clock:
// tests check deliveries after their run, and the freshness per attempt is delivery's test.
func (d Delivery) VerifySignature(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	return wh.VerifyIgnoringTimestamp(d.Body, d.Header)
}

// CRM is a CRM stand-in on 127.0.0.1 that records every request and answers with Respond.
type CRM struct {
	*httptest.Server
	// Respond decides the status for an event's nth attempt (1-based); nil answers 200.
	Respond func(ev event.Event, attempt int) int

	mu        sync.Mutex
	all       []Delivery      // every request
	delivered []Delivery      // those answered 2xx
	ids       map[string]bool // their distinct webhook-ids
	attempts  map[string]int
	notify    chan struct{}
}

// NewCRM starts a CRM stand-in for the test.
func NewCRM(t testing.TB, respond func(ev event.Event, attempt int) int) *CRM {
	c := &CRM{Respond: respond, attempts: map[string]int{}, ids: map[string]bool{}, notify: make(chan struct{}, 1)}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *CRM) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev event.Event
	_ = json.Unmarshal(body, &ev)
	id := r.Header.Get("webhook-id")
	c.mu.Lock()
	c.attempts[id]++
	n := c.attempts[id]
	respond := c.Respond
	c.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(ev, n)
	}
	d := Delivery{Event: ev, Header: r.Header.Clone(), Body: body, Status: status}
	c.mu.Lock()
	c.all = append(c.all, d)
	if status >= 200 && status < 300 {
		c.delivered = append(c.delivered, d)
		c.ids[id] = true
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(status)
	if status >= 300 { // as a CRM explains a refusal; it ends up in last_error of a dead letter
		fmt.Fprintf(w, `{"error":"crm stand-in answers %d for call %s"}`, status, ev.Data.CallID)
	}
}

// SetRespond replaces the response policy.
func (c *CRM) SetRespond(respond func(ev event.Event, attempt int) int) {
	c.mu.Lock()
	c.Respond = respond
	c.mu.Unlock()
}

// Delivered returns the requests answered 2xx so far, in arrival order.
func (c *CRM) Delivered() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.delivered...)
}

// Requests returns every request so far.
func (c *CRM) Requests() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.all...)
}

// WaitDelivered waits until at least n distinct webhook-ids were answered 2xx.
func (c *CRM) WaitDelivered(t testing.TB, n int, timeout time.Duration) []Delivery {
	t.Helper()
	got := c.waitIDs(n, timeout)
	if len(UniqueIDs(got)) < n {
		t.Fatalf("CRM received %d of %d events within %s", len(UniqueIDs(got)), n, timeout)
	}
	return got
}

// waitIDs waits until at least n distinct webhook-ids were answered 2xx or timeout passes,
// and returns the requests answered 2xx.
func (c *CRM) waitIDs(n int, timeout time.Duration) []Delivery {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		distinct := len(c.ids)
		c.mu.Unlock()
		if distinct >= n {
			return c.Delivered()
		}
		select {
		case <-c.notify:
		case <-deadline:
			return c.Delivered()
		}
	}
}

// UniqueIDs are the distinct webhook-ids of ds.
func UniqueIDs(ds []Delivery) map[string]bool {
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.Header.Get("webhook-id")] = true
	}
	return ids
}

// CheckCallOrder reports every call whose first deliveries went backwards in acceptance
// order, given each event's position (the order the gateway acknowledged them), and every
// delivery whose webhook-id is not its event's id. Re-deliveries (at-least-once) are allowed.
// It returns the number of order violations.
func CheckCallOrder(t testing.TB, ds []Delivery, position map[string]int) int {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	violations := 0
	for _, d := range ds {
		id := d.Header.Get("webhook-id")
		if id != d.Event.ID {
			t.Errorf("webhook-id %s does not match event id %s", id, d.Event.ID)
		}
		pos, ok := position[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		call := d.Event.Data.CallID
		if prev, seen := last[call]; seen && pos < prev {
			violations++
			t.Errorf("call %s: event at position %d delivered after position %d", call, pos, prev)
		}
		if pos > last[call] {
			last[call] = pos
		}
	}
	return violations
}

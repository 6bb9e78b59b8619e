package delivery

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The delivery history keeps a record of every delivery attempt for "find a call", in a
// limits-retention stream: bounded by age and size, oldest dropped first, written without
// waiting for an acknowledgement. Its cost and limits: docs/operations.md#the-delivery-history.
const (
	historyMaxAge = 72 * time.Hour
	// historyMaxRecords bounds what one look-up reads.
	historyMaxRecords = 10000
)

// Attempt is one delivery attempt of an event to a target.
type Attempt struct {
	EventID  string    `json:"event_id"`
	Type     string    `json:"type"`
	CallID   string    `json:"call_id"`
	Target   string    `json:"target"`
	Attempt  int       `json:"attempt"`
	Result   string    `json:"result"` // success, retry or dead_letter
	Status   int       `json:"status,omitempty"`
	Error    string    `json:"error,omitempty"` // the CRM's status and answer excerpt, or the error
	At       time.Time `json:"at"`
	Duration float64   `json:"duration_seconds"`
}

// CallEvent is one event of a call with its delivery attempts, oldest first.
type CallEvent struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Attempts []Attempt `json:"attempts"`
}

// CallHistory is what was delivered of one call: its events in the order of their first
// attempt.
type CallHistory struct {
	CallID string      `json:"call_id"`
	From   string      `json:"from,omitempty"`
	To     string      `json:"to,omitempty"`
	Events []CallEvent `json:"events"`
}

// ErrNoQuery is returned by FindCalls given neither a call id nor a phone number.
var ErrNoQuery = errors.New("find a call needs ?call_id= or ?phone=")

// historyRecord is an Attempt with the call's numbers, which the subject indexes too.
type historyRecord struct {
	Attempt
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// historySubject is <prefix>_history.<call id>.<from>.<to>, each token base64url so that any
// call id or number is one subject token; "_" stands for an empty one.
func (n names) historySubject(callID, from, to string) string {
	return n.prefix + "_history." + historyToken(callID) + "." + historyToken(from) + "." + historyToken(to)
}

func historyToken(s string) string {
	if s == "" {
		return "_"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func (e *Engine) ensureHistory(ctx context.Context, maxStore int64) error {
	_, err := e.ensureStream(ctx, jetstream.StreamConfig{
		Name:        e.names.history,
		Description: "pbxbridge delivery attempts: <call id>.<from>.<to>",
		Subjects:    []string{e.names.prefix + "_history.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      historyMaxAge,
		MaxBytes:    maxStore / 16,
		Discard:     jetstream.DiscardOld,
		Replicas:    e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("history stream: %w", err)
	}
	return nil
}

// recordAttempt adds an attempt to the history. It does not wait for the store: a record lost
// in a crash costs a line of history, never a delivery.
func (d *dispatcher) recordAttempt(ev *storedEvent, attempt int, out outcome, start time.Time, elapsed time.Duration) {
	rec := historyRecord{
		Attempt: Attempt{
			EventID: ev.id, Type: ev.typ, CallID: ev.callID, Target: d.name, Attempt: attempt,
			Result: resultOf(out), Status: out.status, Error: out.err, At: start.UTC(), Duration: elapsed.Seconds(),
		},
		From: ev.from,
		To:   ev.to,
	}
	body, _ := json.Marshal(rec)
	if err := d.e.nc.Publish(d.e.names.historySubject(rec.CallID, rec.From, rec.To), body); err != nil {
		d.log.Debug("recording a delivery attempt failed", zapErr(err))
	}
}

func resultOf(out outcome) string {
	switch out.class {
	case classRetry:
		return "retry"
	case classDead:
		return "dead_letter"
	}
	return "success"
}

// FindCalls returns the delivery history of the call callID, or of every call from or to
// phone (as the events carry it: E.164 or as the PBX sent it), most recent call first.
func (e *Engine) FindCalls(ctx context.Context, callID, phone string) (calls []CallHistory, err error) {
	var filters []string
	switch {
	case callID != "":
		filters = []string{e.names.prefix + "_history." + historyToken(callID) + ".>"}
	case phone != "":
		p := historyToken(phone)
		filters = []string{e.names.prefix + "_history.*." + p + ".*", e.names.prefix + "_history.*.*." + p}
	default:
		return nil, ErrNoQuery
	}
	err = answered(ctx, func() error { calls, err = e.findCalls(ctx, filters); return err })
	return calls, err
}

func (e *Engine) findCalls(ctx context.Context, filters []string) ([]CallHistory, error) {
	records, err := readStream[historyRecord](ctx, e.js, e.names.history, filters, historyMaxRecords)
	if err != nil {
		return nil, err
	}
	return callHistories(records), nil
}

// callHistories groups attempt records, in the order stored, by call and event.
func callHistories(records []historyRecord) []CallHistory {
	calls := []CallHistory{}
	callAt := map[string]int{}
	eventAt := map[string]int{}
	last := map[string]time.Time{}
	for _, rec := range records {
		ci, ok := callAt[rec.CallID]
		if !ok {
			ci = len(calls)
			callAt[rec.CallID] = ci
			calls = append(calls, CallHistory{CallID: rec.CallID, Events: []CallEvent{}})
		}
		c := &calls[ci]
		c.From, c.To = cmp.Or(c.From, rec.From), cmp.Or(c.To, rec.To)
		ei, ok := eventAt[rec.CallID+"\x00"+rec.EventID]
		if !ok {
			ei = len(c.Events)
			eventAt[rec.CallID+"\x00"+rec.EventID] = ei
			c.Events = append(c.Events, CallEvent{ID: rec.EventID, Type: rec.Type})
		}
		c.Events[ei].Attempts = append(c.Events[ei].Attempts, rec.Attempt)
		last[rec.CallID] = rec.At
	}
	slices.SortStableFunc(calls, func(a, b CallHistory) int { return last[b.CallID].Compare(last[a.CallID]) })
	return calls
}

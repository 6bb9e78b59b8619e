// Package amocrm is the amoCRM (and Kommo) target kind: a completed call is added to the
// caller's card through amoCRM's calls API, an unknown caller becomes an unsorted call lead,
// and a ringing call may pop up for the responsible user. docs/amocrm.md says how to set it
// up and which of amoCRM's rules the code relies on.
package amocrm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/event"
)

// Kind is amoCRM as a target kind: `target <name> amocrm https://<subdomain>.amocrm.ru { … }`.
var Kind = crm.Kind{
	Name:      "amocrm",
	NewConfig: func() crm.Config { return new(Config) },
	Metrics:   []prometheus.Collector{metrics.calls, metrics.recordings, metrics.requests},
}

var metrics = struct {
	calls, recordings, requests *prometheus.CounterVec
}{
	calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_amocrm_calls_total",
		Help: "Completed calls an amoCRM target handled, by outcome (added, unsorted, unattached, duplicate, skipped).",
	}, []string{"target", "outcome"}),
	recordings: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_amocrm_recordings_total",
		Help: "Recording links an amoCRM target got, by outcome (kept: before the call was added, so the call carries it; late: after, so it does not).",
	}, []string{"target", "outcome"}),
	requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pbxbridge_amocrm_requests_total",
		Help: "Requests to amoCRM's API, by endpoint (calls, unsorted, events) and outcome (ok, limit, auth, validation, refused, http_5xx, error).",
	}, []string{"target", "endpoint", "outcome"}),
}

// Config is an amoCRM target's options.
type Config struct {
	// Token is a private integration's long-lived token (docs/amocrm.md, Set-up).
	Token string `json:"token"`
	// Users maps a PBX extension to the amoCRM user id who takes or makes its calls.
	Users map[string]string `json:"users,omitempty"`
	// Source names pbxbridge in the call's note; default pbxbridge.
	Source string `json:"source,omitempty"`
	// CreateLead turns a call from a number no contact has into an unsorted call lead.
	CreateLead bool `json:"create_lead,omitempty"`
	// PipelineID is the pipeline of those leads; default: the account's.
	PipelineID int `json:"pipeline_id,omitempty"`
	// Notify pops up a ringing inbound call for its user (POST /api/v2/events/).
	Notify bool `json:"notify,omitempty"`
}

// Provision checks the options and builds the connector for the account at url.
func (c *Config) Provision(target, url string, env crm.Env) (crm.Connector, error) {
	url = strings.TrimSuffix(env.Expand(url), "/")
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return nil, fmt.Errorf("amocrm: the URL is the account's address, https://<subdomain>.amocrm.ru (or .kommo.com), not %q", url)
	}
	token := env.Expand(c.Token)
	if token == "" {
		return nil, errors.New("amocrm: token is required: a private integration's long-lived token (amoCRM → Settings → Integrations → your integration → Keys and scopes), e.g. token {env.AMO_TOKEN}")
	}
	users, err := Users(c.Users)
	if err != nil {
		return nil, fmt.Errorf("amocrm: %w", err)
	}
	if c.PipelineID != 0 && !c.CreateLead {
		return nil, errors.New("amocrm: pipeline_id is the pipeline of unsorted leads; it needs create_lead on")
	}
	for _, outcome := range []string{"added", "unsorted", "unattached", "duplicate", "skipped"} {
		metrics.calls.WithLabelValues(target, outcome) // at 0 from the start, for increase() and alerts
	}
	for _, outcome := range []string{"kept", "late"} {
		metrics.recordings.WithLabelValues(target, outcome)
	}
	source := c.Source
	if source == "" {
		source = "pbxbridge"
	}
	return &connector{
		target: target, users: users, source: source,
		createLead: c.CreateLead, pipelineID: c.PipelineID, notify: c.Notify,
		state: env.State,
		api:   &api{base: url, token: token, client: env.Client, userAgent: env.UserAgent, pace: Pace(url), target: target},
	}, nil
}

type connector struct {
	target     string
	users      map[string]int // extension → amoCRM user id
	source     string
	createLead bool
	pipelineID int
	notify     bool
	state      func(context.Context) (crm.State, error)
	api        *api
}

// Deliver adds a completed call, keeps a recording link for the call it belongs to, and pops
// up a ringing call; amoCRM has nothing to do with the other events.
func (c *connector) Deliver(ctx context.Context, ev *event.Event) crm.Result {
	switch ev.Type {
	case event.TypeCompleted:
		return c.completed(ctx, ev)
	case event.TypeRecordingReady:
		return c.recording(ctx, ev)
	case event.TypeRinging:
		if c.notify {
			return c.ringing(ctx, ev)
		}
	}
	return crm.Result{}
}

// State keys of a call (its ordering key: the call id): added.<call> once amoCRM has it (so a
// re-delivery adds no second call), recording.<call> for a link that came before the call was
// added; both expire after crm.CallTTL. A call id may hold any character, so keys carry its
// hash.
func callKey(prefix, callID string) string {
	h := sha256.Sum256([]byte(callID))
	return prefix + "." + hex.EncodeToString(h[:16])
}

func (c *connector) completed(ctx context.Context, ev *event.Event) crm.Result {
	st, err := c.state(ctx)
	if err != nil {
		return crm.Result{Outcome: crm.Retry, Reason: "state", Error: "amocrm: " + err.Error()}
	}
	d := &ev.Data
	added := callKey("added", ev.OrderingKey())
	if _, _, err := st.Get(ctx, added); err == nil {
		metrics.calls.WithLabelValues(c.target, "duplicate").Inc()
		return crm.Result{}
	} else if !errors.Is(err, crm.ErrNotFound) {
		return crm.Result{Outcome: crm.Retry, Reason: "state", Error: "amocrm: " + err.Error()}
	}
	call, ok := c.call(d)
	if !ok {
		// An internal call, or no client number: no card to put it on.
		metrics.calls.WithLabelValues(c.target, "skipped").Inc()
		return crm.Result{}
	}
	rec := callKey("recording", ev.OrderingKey())
	if call.Link == "" {
		if link, _, err := st.Get(ctx, rec); err == nil {
			call.Link = string(link)
		}
	}
	attached, res := c.api.addCall(ctx, call)
	if res.Outcome != crm.Delivered {
		return res
	}
	outcome := "added"
	if !attached {
		outcome = "unattached"
		if c.createLead {
			if res := c.api.addUnsorted(ctx, c.unsorted(call)); res.Outcome != crm.Delivered {
				return res
			}
			outcome = "unsorted"
		}
	}
	// The record holds the call's link. A failure here only loses the guard against a
	// re-delivery; the call is in amoCRM.
	if _, err := st.Put(ctx, added, []byte(call.Link), 0, crm.CallTTL); err == nil && call.Link != "" {
		_ = st.Delete(ctx, rec)
	}
	metrics.calls.WithLabelValues(c.target, outcome).Inc()
	return crm.Result{}
}

// recording keeps a link that comes before its call is added. One that comes after, unless
// the call came with it, is counted: amoCRM documents no way to add a link to a call it
// already has (docs/amocrm.md).
func (c *connector) recording(ctx context.Context, ev *event.Event) crm.Result {
	if ev.Data.RecordingURL == "" {
		return crm.Result{}
	}
	st, err := c.state(ctx)
	if err != nil {
		return crm.Result{Outcome: crm.Retry, Reason: "state", Error: "amocrm: " + err.Error()}
	}
	if link, _, err := st.Get(ctx, callKey("added", ev.OrderingKey())); err == nil {
		if string(link) != ev.Data.RecordingURL { // else the call came with it (XVB, ITooLabs)
			metrics.recordings.WithLabelValues(c.target, "late").Inc()
		}
		return crm.Result{}
	}
	if _, err := st.Put(ctx, callKey("recording", ev.OrderingKey()), []byte(ev.Data.RecordingURL), 0, crm.CallTTL); err != nil && !errors.Is(err, crm.ErrConflict) {
		return crm.Result{Outcome: crm.Retry, Reason: "state", Error: "amocrm: " + err.Error()}
	}
	metrics.recordings.WithLabelValues(c.target, "kept").Inc()
	return crm.Result{}
}

// ringing pops up an inbound call for the user of the extension it rings. A pop-up is worth
// nothing later, so only a refused token (Down) is not given up at once.
func (c *connector) ringing(ctx context.Context, ev *event.Event) crm.Result {
	d := &ev.Data
	if d.Direction != event.DirectionInbound || d.From.Number == "" {
		return crm.Result{}
	}
	user, ok := c.users[crm.Employee(d)]
	if !ok {
		return crm.Result{} // with no users amoCRM would show it to everyone
	}
	if res := c.api.notify(ctx, d.From.Number, user); res.Outcome == crm.Down {
		return res
	}
	return crm.Result{}
}

// call is the amoCRM call of a completed one; false when it has no client to put it on.
func (c *connector) call(d *event.Data) (call, bool) {
	out := call{
		Direction: "inbound", UniqID: d.CallID, Source: c.source,
		Phone: d.From.Number, Link: d.RecordingURL, RequestID: "0",
	}
	switch d.Direction {
	case event.DirectionInternal:
		return out, false
	case event.DirectionOutbound:
		out.Direction, out.Phone = "outbound", d.To.Number
	}
	if out.Phone == "" || strings.HasPrefix(out.Phone, "sip:") {
		return out, false
	}
	// Talk time; a PBX that reports only the whole call's length (XVB) gives that for a call
	// someone answered.
	switch {
	case d.TalkS != nil:
		out.Duration = int(*d.TalkS)
	case d.DurationS != nil && d.Result == event.ResultAnswered:
		out.Duration = int(*d.DurationS)
	}
	out.Status = callStatus(d)
	if ext := crm.Employee(d); ext != "" {
		if id, ok := c.users[ext]; ok {
			out.Responsible, out.ResponsibleUserID, out.CreatedBy = id, id, id
		} else {
			out.Responsible = ext // shown as given
		}
	}
	at := d.OccurredAt
	if d.StartedAt != nil {
		at = *d.StartedAt
	}
	out.CreatedAt = at.Unix()
	return out, true
}

// callStatus maps the call's result to amoCRM's call_status (docs/amocrm.md): 4 talked,
// 6 not reached, 7 busy, 5 wrong number, 3 not available (an inbound caller who gave up).
func callStatus(d *event.Data) int {
	switch d.Result {
	case event.ResultAnswered:
		return 4
	case event.ResultBusy:
		return 7
	case event.ResultFailed:
		if d.Reason == "wrong_number" {
			return 5
		}
	case event.ResultCancelled:
		if d.Direction != event.DirectionOutbound {
			return 3
		}
	}
	return 6
}

func (c *connector) unsorted(call call) unsorted {
	user := 0
	if id, ok := call.Responsible.(int); ok {
		user = id
	}
	return unsorted{
		SourceUID: c.source, SourceName: c.source, PipelineID: c.pipelineID,
		CreatedAt: call.CreatedAt, RequestID: "0",
		Metadata: sipMetadata{
			IsCallEventNeeded: true, UniqID: call.UniqID, Duration: call.Duration, ServiceCode: c.source,
			Link: call.Link, Phone: call.Phone, CalledAt: call.CreatedAt, From: call.Phone, CallResponsible: user,
		},
		Embedded: unsortedEmbedded{
			Leads: []namedEntity{{Name: "Call from " + call.Phone}},
			Contacts: []namedEntity{{Name: call.Phone, CustomFieldsValues: []customField{{
				FieldCode: "PHONE", Values: []fieldValue{{Value: call.Phone, EnumCode: "WORK"}},
			}}}},
		},
	}
}

// Users reads a `users { <extension> <user id> }` table: extension → amoCRM user id.
func Users(table map[string]string) (map[string]int, error) {
	users := make(map[string]int, len(table))
	for ext, id := range table {
		n, err := strconv.Atoi(id)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("users: %s %q: the value is an amoCRM user id, a number (GET /api/v4/users with an admin's token lists them)", ext, id)
		}
		users[ext] = n
	}
	return users, nil
}

// Pace is the request pace of the amoCRM account at base, shared by its targets' lanes, the
// connectors a reload builds and the contact lookups (docs/amocrm.md, Limits).
func Pace(base string) *rate.Limiter {
	pacersMu.Lock()
	defer pacersMu.Unlock()
	p, ok := pacers[base]
	if !ok {
		p = rate.NewLimiter(rate.Every(requestInterval), 1)
		pacers[base] = p
	}
	return p
}

var (
	pacersMu sync.Mutex
	pacers   = map[string]*rate.Limiter{}
)

// requestInterval keeps an account under amoCRM's 7 requests a second with room for jitter.
const requestInterval = time.Second / 6

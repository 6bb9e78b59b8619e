package bitrix24

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/event"
)

// callStartLayout is ISO 8601 with a numeric offset (+00:00, not Z), as register takes it.
const callStartLayout = "2006-01-02T15:04:05-07:00"

// userCacheTTL is how long an extension's Bitrix24 user, looked up by inner phone number, is
// kept.
const userCacheTTL = 10 * time.Minute

// call is what the store keeps of one call: Bitrix24's CALL_ID once registered, so that every
// gateway, and this one after a restart, finishes the same call.
type call struct {
	CallID   string   `json:"call_id"`
	UserID   string   `json:"user_id"`
	Shown    []string `json:"shown,omitempty"`
	Answerer string   `json:"answerer,omitempty"`
	Finished bool     `json:"finished,omitempty"`
	// Record is a recording link waiting for the finish (attachRecord comes after it).
	Record   string `json:"record,omitempty"`
	Recorded bool   `json:"recorded,omitempty"`
}

func stateKey(kind, id string) string {
	sum := sha256.Sum256([]byte(id))
	return kind + "." + hex.EncodeToString(sum[:16])
}

func callKey(callID string) string       { return stateKey("call", callID) }
func commandKey(commandID string) string { return stateKey("command", commandID) }

// deliver carries one event of a call to the portal. The dispatcher hands over one event of a
// call at a time, so the call's steps run in order: its finish never before its register.
func (c *connector) deliver(ctx context.Context, ev *event.Event) error {
	d := &ev.Data
	switch {
	case d.CallID == "", d.Direction == event.DirectionInternal:
		return nil
	case !slices.Contains([]string{event.TypeRinging, event.TypeAnswered, event.TypeLegEnded, event.TypeCompleted, event.TypeRecordingReady}, ev.Type):
		return nil
	}
	if c.webhook == "" {
		if _, _, err := c.installed(ctx); err != nil {
			return err
		}
	}
	cl, err := c.loadCall(ctx, d)
	if err != nil {
		return err
	}
	save := func() error { return c.putJSON(ctx, callKey(d.CallID), cl) }
	if cl.CallID == "" && ev.Type == event.TypeLegEnded {
		return nil
	}
	if cl.CallID == "" && ev.Type != event.TypeRecordingReady {
		if err := c.register(ctx, ev, cl, ev.Type != event.TypeCompleted && c.showCard); err != nil {
			return err
		}
		if err := save(); err != nil {
			return err
		}
	}
	switch ev.Type {
	case event.TypeRinging, event.TypeAnswered:
		user, err := c.userID(ctx, crm.Employee(d))
		if err != nil {
			return err
		}
		if ev.Type == event.TypeAnswered {
			cl.Answerer = user
		}
		if c.showCard && !cl.Finished && !slices.Contains(cl.Shown, user) {
			if _, err := c.api.call(ctx, "telephony.externalCall.show", url.Values{"CALL_ID": {cl.CallID}, "USER_ID": {user}}); err != nil {
				return classify(err)
			}
			cl.Shown = append(cl.Shown, user)
		}
		return save()
	case event.TypeLegEnded:
		// An employee's leg that rang and ended while the call goes on (a group call): their
		// card closes. The finish closes the rest.
		user, err := c.userID(ctx, crm.Employee(d))
		if err != nil {
			return err
		}
		if cl.Finished || user == cl.Answerer || !slices.Contains(cl.Shown, user) {
			return nil
		}
		if _, err := c.api.call(ctx, "telephony.externalCall.hide", url.Values{"CALL_ID": {cl.CallID}, "USER_ID": {user}}); err != nil {
			return classify(err)
		}
		cl.Shown = slices.DeleteFunc(cl.Shown, func(u string) bool { return u == user })
		return save()
	case event.TypeCompleted:
		if d.RecordingURL != "" {
			cl.Record = d.RecordingURL
		}
		if !cl.Finished {
			if err := c.finish(ctx, ev, cl); err != nil {
				return err
			}
			if err := save(); err != nil {
				return err
			}
		}
	case event.TypeRecordingReady:
		cl.Record = d.RecordingURL
	}
	if cl.Finished && cl.Record != "" && !cl.Recorded {
		if err := c.attachRecord(ctx, d, cl); err != nil {
			return err
		}
	}
	return save()
}

// loadCall is the stored call, or the call an employee started from Bitrix24 (registered
// there already) whose command the event carries, or a new one.
func (c *connector) loadCall(ctx context.Context, d *event.Data) (*call, error) {
	cl := new(call)
	if found, err := c.getJSON(ctx, callKey(d.CallID), cl); err != nil || found {
		return cl, err
	}
	if d.CommandID != "" {
		var click clickToCall
		found, err := c.getJSON(ctx, commandKey(d.CommandID), &click)
		if err != nil {
			return nil, err
		}
		if found {
			cl.CallID, cl.UserID = click.CallID, click.UserID
		}
	}
	return cl, nil
}

// register registers the call with Bitrix24 (telephony.externalCall.register).
func (c *connector) register(ctx context.Context, ev *event.Event, cl *call, show bool) error {
	d := &ev.Data
	user, err := c.userID(ctx, crm.Employee(d))
	if err != nil {
		return err
	}
	typ, phone := "2", d.From.Number
	if d.Direction == event.DirectionOutbound {
		typ, phone = "1", d.To.Number
	}
	if phone == "" {
		phone = "unknown"
	}
	start := d.OccurredAt
	if d.StartedAt != nil {
		start = *d.StartedAt
	}
	params := url.Values{
		"USER_ID":          {user},
		"PHONE_NUMBER":     {phone},
		"TYPE":             {typ},
		"CALL_START_DATE":  {start.Format(callStartLayout)},
		"CRM_CREATE":       {flag(c.create)},
		"SHOW":             {flag(show)},
		"EXTERNAL_CALL_ID": {d.CallID},
	}
	if d.Line != "" {
		params.Set("LINE_NUMBER", d.Line)
	}
	raw, err := c.api.call(ctx, "telephony.externalCall.register", params)
	if err != nil {
		return classify(err)
	}
	var res struct {
		CallID string `json:"CALL_ID"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.CallID == "" {
		return &failure{outcome: crm.Retry, reason: "http_5xx", msg: "bitrix24 telephony.externalCall.register: no CALL_ID in the answer"}
	}
	cl.CallID, cl.UserID = res.CallID, user
	if show {
		cl.Shown = []string{user}
	}
	metrics.calls.WithLabelValues(c.target, "registered").Inc()
	return nil
}

// statusCodes are finish's STATUS_CODE for each result (docs/bitrix24.md).
var statusCodes = map[string]string{
	event.ResultAnswered:  "200",
	event.ResultMissed:    "304",
	event.ResultBusy:      "486",
	event.ResultFailed:    "503",
	event.ResultCancelled: "603-S",
}

// finish ends the call in Bitrix24 with its talk time and result.
func (c *connector) finish(ctx context.Context, ev *event.Event, cl *call) error {
	d := &ev.Data
	user := cl.Answerer
	if user == "" {
		if ext := crm.Employee(d); ext != "" {
			var err error
			if user, err = c.userID(ctx, ext); err != nil {
				return err
			}
		}
	}
	if user == "" {
		user = cl.UserID
	}
	var talk int64
	switch {
	case d.Result != event.ResultAnswered:
	case d.TalkS != nil:
		talk = *d.TalkS
	case d.DurationS != nil:
		// XVB and ITooLabs give one duration: of an answered call, the nearest to talk time.
		talk = *d.DurationS
	}
	status, ok := statusCodes[d.Result]
	if !ok {
		status = "OTHER"
	}
	params := url.Values{"CALL_ID": {cl.CallID}, "USER_ID": {user},
		"DURATION": {strconv.FormatInt(talk, 10)}, "STATUS_CODE": {status}}
	if _, err := c.api.call(ctx, "telephony.externalCall.finish", params); err != nil {
		// A finish whose answer was lost: the portal knows the call no more.
		if !isCallNotFound(err) {
			return classify(err)
		}
	} else {
		metrics.calls.WithLabelValues(c.target, "finished").Inc()
	}
	cl.Finished = true
	return nil
}

func isCallNotFound(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.code == "ERROR_CORE" && strings.HasPrefix(e.desc, "Call is not found")
}

// attachRecord gives Bitrix24 the recording's link to fetch.
func (c *connector) attachRecord(ctx context.Context, d *event.Data, cl *call) error {
	if err := event.CheckLink(cl.Record); err != nil {
		cl.Record = ""
		return nil
	}
	name := "call.mp3"
	if u, err := url.Parse(cl.Record); err == nil && strings.EqualFold(path.Ext(u.Path), ".wav") {
		name = "call.wav"
	}
	params := url.Values{"CALL_ID": {cl.CallID}, "FILENAME": {name}, "RECORD_URL": {cl.Record}}
	if _, err := c.api.call(ctx, "telephony.externalCall.attachRecord", params); err != nil {
		return classify(err)
	}
	cl.Recorded = true
	metrics.calls.WithLabelValues(c.target, "recorded").Inc()
	return nil
}

// userID is the Bitrix24 user of an extension: from users, else the active user whose inner
// phone number it is, else default_user.
func (c *connector) userID(ctx context.Context, ext string) (string, error) {
	if ext == "" {
		return c.defUser, nil
	}
	if id, ok := c.users[ext]; ok {
		return id, nil
	}
	c.mu.Lock()
	cached, ok := c.userIDs[ext]
	c.mu.Unlock()
	if ok && time.Now().Before(cached.expires) {
		return cached.id, nil
	}
	users, err := c.findUsers(ctx, url.Values{"FILTER[UF_PHONE_INNER]": {ext}, "FILTER[ACTIVE]": {"true"}})
	if err != nil {
		return "", err
	}
	id := c.defUser
	if len(users) > 0 {
		id = users[0].ID
	}
	c.mu.Lock()
	c.userIDs[ext] = cachedUser{id: id, expires: time.Now().Add(userCacheTTL)}
	c.mu.Unlock()
	return id, nil
}

// extension is the inner phone number of a Bitrix24 user.
func (c *connector) extension(ctx context.Context, userID string) (string, error) {
	for ext, id := range c.users {
		if id == userID {
			return ext, nil
		}
	}
	users, err := c.findUsers(ctx, url.Values{"FILTER[ID]": {userID}})
	if err != nil || len(users) == 0 {
		return "", err
	}
	return users[0].Inner, nil
}

type user struct {
	ID    string `json:"ID"`
	Inner string `json:"UF_PHONE_INNER"`
}

func (c *connector) findUsers(ctx context.Context, filter url.Values) ([]user, error) {
	raw, err := c.api.call(ctx, "user.get", filter)
	if err != nil {
		return nil, classify(err)
	}
	var users []user
	if err := json.Unmarshal(raw, &users); err != nil {
		return nil, &failure{outcome: crm.Retry, reason: "http_5xx", msg: "bitrix24 user.get: unreadable answer"}
	}
	return users, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// getJSON reads key into v; false when there is none.
func (c *connector) getJSON(ctx context.Context, key string, v any) (bool, error) {
	st, err := c.state(ctx)
	if err != nil {
		return false, err
	}
	raw, _, err := st.Get(ctx, key)
	if errors.Is(err, crm.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(raw, v)
}

// putJSON stores v, what is kept of one call (its record, a click's CALL_ID), under key, over
// whatever is there; it expires crm.CallTTL after this write.
func (c *connector) putJSON(ctx context.Context, key string, v any) error {
	st, err := c.state(ctx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	for {
		_, rev, err := st.Get(ctx, key)
		if err != nil && !errors.Is(err, crm.ErrNotFound) {
			return err
		}
		if _, err = st.Put(ctx, key, raw, rev, crm.CallTTL); !errors.Is(err, crm.ErrConflict) {
			return err
		}
	}
}

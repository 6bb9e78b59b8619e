package mango

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

// Translate turns one authentic Mango message, the decoded `json` field posted to suffix (as
// Route returns it), into canonical events: none for a ping, otherwise exactly one, a
// pbx.unmapped event when the message does not map. It never fails and never panics.
func Translate(src event.Origin, suffix string, payload []byte, received time.Time) []event.Event {
	f, notObject := decodeObject(payload)
	return translate(src, suffix, payload, f, notObject, received)
}

// translate is Translate of a payload decoded as f; notObject is decodeObject's error.
func translate(src event.Origin, suffix string, payload []byte, f fields, notObject error, received time.Time) (evs []event.Event) {
	if IsPing(suffix) {
		return nil
	}
	m := message{src: src, suffix: suffix, payload: payload, top: f, notObject: notObject, received: received}
	// A translator bug must not lose an authentic message or fail the webhook: it becomes
	// pbx.unmapped like any message that does not map.
	defer func() {
		if p := recover(); p != nil {
			evs = []event.Event{m.unmapped(fmt.Errorf("translator panic: %v", p))}
		}
	}()
	ev, err := m.translate()
	if err != nil {
		ev = m.unmapped(err)
	}
	return []event.Event{ev}
}

// message is one webhook being translated.
type message struct {
	src     event.Origin
	suffix  string
	payload []byte
	// top is the payload decoded, notObject why it did not decode as an object.
	top       fields
	notObject error
	received  time.Time
}

// kinds are the translations by suffix; result/<command> is handled apart.
var kinds = map[string]func(*message, fields) (event.Event, error){
	"events/call":         callEvent,
	"events/summary":      summary,
	"events/recording":    recording,
	"events/record/added": recordingReady,
	"events/dtmf":         dtmf,
}

func (m *message) translate() (event.Event, error) {
	if m.notObject != nil {
		return event.Event{}, m.notObject
	}
	f := m.top.fresh()
	kind := kinds[m.suffix]
	if cmd, ok := strings.CutPrefix(m.suffix, "result/"); ok && cmd != "stat" && cmd != "stats" && cmd != "" {
		kind = commandResult
	}
	if kind == nil {
		return event.Event{}, fmt.Errorf("no canonical event for %q messages", m.suffix)
	}
	ev, err := kind(m, f)
	if ferr := f.error(); ferr != nil {
		err = ferr // a field of the wrong type explains more than what it made missing
	}
	if err != nil {
		return event.Event{}, err
	}
	m.finish(&ev)
	return ev, nil
}

// event starts an event; occurred is the zero time when the payload has none, and then the
// time the message was received stands in.
func (m *message) event(typ, key, callID string, occurred time.Time) event.Event {
	if occurred.IsZero() {
		occurred = m.received
	}
	return m.src.New(typ, key, callID, occurred)
}

// finish sets what every event carries alike.
func (m *message) finish(ev *event.Event) {
	ev.Data.Raw = raw(m.payload, m.top.m)
	ev.Subject = ev.OrderingKey()
}

// unmapped is the pbx.unmapped event of a message that did not translate, with whatever ids
// can still be read from it so that it travels in its call's lane.
func (m *message) unmapped(cause error) event.Event {
	sum := sha256.Sum256(m.payload)
	f := m.top.fresh() // best effort: a bad payload reads as empty
	// Keyed on the content alone: Mango's sign does not cover the suffix, so the same body
	// re-posted under another path is the same message.
	ev := m.event(event.TypeUnmapped, hex.EncodeToString(sum[:]), f.str("entry_id"), f.time("timestamp"))
	ev.Data.LegID = f.str("call_id")
	ev.Data.CommandID = f.str("command_id")
	ev.Data.Error = cause.Error()
	m.finish(&ev)
	return ev
}

// key joins the parts of an idempotency key.
func key(parts ...string) string { return strings.Join(parts, "\x00") }

// seqKey is a counter as a key part.
func seqKey(n int64) string { return strconv.FormatInt(n, 10) }

// secretKeys never travel in raw. Mango's json does not carry them; a payload that does (a
// misrouted body, a test) loses them.
var secretKeys = []string{"vpbx_api_key", "vpbx_api_salt", "api_salt", "sign"}

// raw is Data.Raw: the payload compacted, or a JSON string of it when it is not JSON. top is the
// payload's members (nil when it is not an object): only one with a secret member is decoded
// again, from its valid UTF-8.
func raw(payload []byte, top map[string]json.RawMessage) json.RawMessage {
	p := bytes.ToValidUTF8(payload, []byte("\uFFFD"))
	var obj map[string]json.RawMessage
	if slices.ContainsFunc(secretKeys, func(k string) bool { _, ok := top[k]; return ok }) && json.Unmarshal(p, &obj) == nil {
		n := len(obj)
		for _, k := range secretKeys {
			delete(obj, k)
		}
		if len(obj) < n {
			b, _ := json.Marshal(obj) // cannot fail: valid values
			return b
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, p) == nil {
		return buf.Bytes()
	}
	b, _ := json.Marshal(string(p)) // cannot fail: a string
	return b
}

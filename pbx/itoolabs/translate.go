package itoolabs

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// CorrelationDerived is data.correlation of a history without callid, whose call id is made up
// from the record (docs/itoolabs.md, Event ids).
const CorrelationDerived = "derived"

const (
	// startLayout is history's start: UTC, YYYYmmddTHHMMSSZ.
	startLayout = "20060102T150405Z"
	// maxDurationS bounds a believable call (30 days); a larger duration is garbage.
	maxDurationS = 30 * 24 * 3600
)

// legEvents maps the type of a cmd=event to its canonical event, and a leg's end to its reason
// (docs/itoolabs.md, Mapping). A CANCELLED leg may be the one a colleague did not pick up while
// another answered, so it says nothing about the call: only history decides the result.
var legEvents = map[string]struct{ typ, reason string }{
	"INCOMING":    {event.TypeRinging, ""},
	"OUTGOING":    {event.TypeRinging, ""},
	"ACCEPTED":    {event.TypeAnswered, ""},
	"COMPLETED":   {event.TypeLegEnded, event.ReasonCompleted},
	"CANCELLED":   {event.TypeLegEnded, event.ReasonCancelled},
	"TRANSFERRED": {event.TypeLegEnded, event.ReasonTransferred},
}

// Translate maps one authenticated message to canonical events:
//
//	cmd=event INCOMING, OUTGOING   call.ringing
//	cmd=event ACCEPTED             call.answered
//	cmd=event COMPLETED            call.leg_ended, reason completed
//	cmd=event CANCELLED            call.leg_ended, reason cancelled
//	cmd=event TRANSFERRED          call.leg_ended, reason transferred (second_callid in raw)
//	cmd=history                    call.completed, plus recording.ready when link is an
//	                               http(s) URL (any other link is dropped, said in error)
//	anything else                  pbx.unmapped with an error: another cmd or type,
//	                               cmd=event without callid, cmd=rating (no canonical event),
//	                               cmd=contact (answered with ContactAnswer, never queued)
//
// Only history carries a time (start); every other event is at received. Event ids come from
// the fields that name the event, normalised (docs/itoolabs.md, Event ids): a re-send in
// another order or format is a duplicate, two agents' legs are not, and a history sent again
// with changed values is a duplicate of the first.
func Translate(src event.Origin, f Fields, received time.Time) []event.Event {
	m := message{src: src, f: f, raw: pbx.Raw(f, secret)}
	switch cmd := f.Command(); cmd {
	case "event":
		return m.leg(received)
	case "history":
		return m.history(received)
	case "contact":
		return m.unmapped("cmd=contact is a synchronous lookup, answered directly and never queued", received)
	case "rating":
		return m.unmapped("cmd=rating (the caller's rating of the call) has no canonical event; see raw", received)
	default:
		return m.unmapped(fmt.Sprintf("unknown cmd %.64q", cmd), received)
	}
}

// message is one message being translated.
type message struct {
	src event.Origin
	f   Fields
	raw json.RawMessage
}

func (m message) unmapped(msg string, received time.Time) []event.Event {
	ev := m.src.New(event.TypeUnmapped, m.f.wholeKey(), m.f.CallID(), received)
	ev.Data.Error = msg
	ev.Data.Raw = m.raw
	return []event.Event{ev}
}

// phone is the external party's number, normalised as in every event.
func (m message) phone() string { return event.Number(m.f.Phone(), m.src.Region) }

// callEvent is an event of the call with its parties laid out by direction. The employee is ext;
// the agent is ext, else the login (user) when the PBX sends no ext.
func (m message) callEvent(typ, key, callID, direction string, occurred time.Time) event.Event {
	ev := m.src.New(typ, key, callID, occurred)
	d := &ev.Data
	d.Direction = direction
	external, employee := event.Party{Number: m.phone()}, event.Party{Extension: m.f["ext"]}
	d.From, d.To = external, employee
	if direction == event.DirectionOutbound {
		d.From, d.To = employee, external
	}
	d.Line = event.Number(m.f["diversion"], m.src.Region)
	d.Agent = cmp.Or(m.f["ext"], m.f["user"])
	d.Raw = m.raw
	return ev
}

// leg translates a cmd=event.
func (m message) leg(received time.Time) []event.Event {
	typ := strings.ToUpper(strings.TrimSpace(m.f["type"]))
	mapped, known := legEvents[typ]
	switch {
	case !known:
		return m.unmapped(fmt.Sprintf("unknown event type %.64q", m.f["type"]), received)
	case m.f.CallID() == "":
		return m.unmapped("cmd=event without callid", received)
	}
	// Older platforms send no direction: then OUTGOING is the employee calling out and INCOMING
	// a call coming in; the other types do not say.
	direction := pbx.InOut(m.f["direction"])
	switch {
	case direction != event.DirectionUnknown:
	case typ == "INCOMING":
		direction = event.DirectionInbound
	case typ == "OUTGOING":
		direction = event.DirectionOutbound
	}
	key := identity("event", typ, m.f.CallID(), strings.TrimSpace(m.f["second_callid"]),
		strings.TrimSpace(m.f["user"]), strings.TrimSpace(m.f["ext"]), m.phone())
	ev := m.callEvent(mapped.typ, key, m.f.CallID(), direction, received)
	ev.Data.Reason = mapped.reason
	return []event.Event{ev}
}

// history translates the closing record of a call. Its id depends on the call alone, so a
// record sent again with other values (a longer duration) is a duplicate of the first.
func (m message) history(received time.Time) []event.Event {
	callID, how := m.f.CallID(), ""
	if callID == "" { // optional in the doc: the record's own identity gives the call one
		callID, how = "derived-"+event.EventID(m.src.PBX, m.src.Account, "call_id", identity(
			strings.ToLower(strings.TrimSpace(m.f["type"])), strings.TrimSpace(m.f["user"]),
			strings.TrimSpace(m.f["ext"]), m.phone(), strings.TrimSpace(m.f["start"]))), CorrelationDerived
	}
	direction := pbx.InOut(m.f["type"])
	start, hasStart := parseStart(m.f["start"])
	duration, hasDuration := parseDuration(m.f["duration"])
	occurred := received
	if hasStart && hasDuration {
		occurred = start.Add(time.Duration(duration) * time.Second)
	}
	key := identity("history", callID)
	ev := m.callEvent(event.TypeCompleted, key, callID, direction, occurred)
	d := &ev.Data
	d.Correlation = how
	if hasStart {
		d.StartedAt = &start
	}
	if hasDuration {
		d.DurationS = &duration
	}
	if hasStart && hasDuration {
		ended := ev.Time
		d.EndedAt = &ended
	}
	d.Result, d.Reason = pbx.CallStatus(m.f["status"], hasDuration && duration == 0, direction)
	link := m.f["link"]
	if link == "" {
		return []event.Event{ev}
	}
	if err := event.CheckLink(link); err != nil {
		d.Error = "link dropped: " + err.Error() // the CRM would render it; the call still counts
		return []event.Event{ev}
	}
	d.RecordingURL = link
	rec := m.callEvent(event.TypeRecordingReady, key, callID, direction, occurred)
	rec.Data.Correlation, rec.Data.RecordingURL = how, link
	return []event.Event{ev, rec}
}

// parseStart reads history's start. A year outside 2000–2099 is garbage, and the bound keeps
// start + duration a time JSON can write.
func parseStart(s string) (time.Time, bool) {
	t, err := time.Parse(startLayout, strings.TrimSpace(s))
	return t, err == nil && t.Year() >= 2000 && t.Year() < 2100
}

// parseDuration reads whole non-negative seconds up to maxDurationS; anything else leaves
// duration_s out rather than losing the call's closing record.
func parseDuration(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil && n >= 0 && n <= maxDurationS
}

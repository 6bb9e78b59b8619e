package xvb

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// Correlation tells Translate which call the message belongs to when it carries no callid,
// and what the call's earlier messages said that this one leaves out (XVB's own COMPLETED
// example has no type and no ext).
type Correlation struct {
	CallID string // the joined or derived call id; ignored when the message has its own callid
	How    string // "" (the PBX sent callid), CorrelationWeak or CorrelationDerived

	Type  string // the call's INCOMING type (in, out), for a message without type
	Ext   string // the call's INCOMING ext (the employee calling out), for one without ext
	Agent string // the call's ANSWERED ext (who answered), for one without ext; before Ext
}

// Values of Correlation.How and of the canonical data.correlation.
const (
	CorrelationWeak    = "weak"    // joined by phone to an open call
	CorrelationDerived = "derived" // made up from the message
)

// maxDurationS bounds a believable call (30 days); a larger duration is garbage, and the bound
// keeps received − duration far from time.Duration overflow.
const maxDurationS = 30 * 24 * 3600

// DerivedCallID is a stable call id for a message without callid and without an open call: the
// same message always gives the same id, so a re-send lands on the same call.
func DerivedCallID(accessCode string, f Fields) string {
	return "derived-" + event.EventID("xvb", accessCode, "call_id", f.key())
}

// Translate maps one authenticated XVB message to canonical events:
//
//	cmd=event INCOMING   call.ringing (direction from type: in, out, else unknown)
//	cmd=event ANSWERED   call.answered, agent = ext
//	cmd=event COMPLETED  call.completed, plus recording.ready when record_link is an http(s)
//	                     URL (any other link is dropped, said in the error field: CRMs render
//	                     it); without type or ext, those of corr (the call it closes)
//	anything else        pbx.unmapped with an error (cmd=contact included: it is answered
//	                     synchronously with ContactAnswer, never queued)
//
// XVB sends no timestamps, so received is the time of every event. Event ids come from the
// message alone (see Fields.key), never from corr, so a re-send gets the same id whatever call
// it is joined to. Collision caveat: XVB has no message id, so two distinct messages with
// identical fields share an id and the second is dropped as a duplicate within dedupe_window.
// With a callid that only merges true repeats (a second ANSWERED by the same ext adds nothing).
// Without one it can merge two COMPLETED of different calls from the same phone with equal
// status and duration and no recording (two quick missed calls); their INCOMING events, which
// carry callids, still reach the CRM. Accepted: nothing else in the payload tells them apart,
// and adding the receive time would defeat dedupe of XVB's re-sends (minutes to an hour apart).
func Translate(src event.Origin, f Fields, corr Correlation, received time.Time) []event.Event {
	key := f.key()
	raw := pbx.Raw(f, secret)
	unmapped := func(msg string) []event.Event {
		ev := src.New(event.TypeUnmapped, key, f.CallID(), received)
		ev.Data.Error = msg
		ev.Data.Raw = raw
		return []event.Event{ev}
	}
	switch {
	case f.IsContact():
		return unmapped("cmd=contact is a synchronous lookup, answered directly and never queued")
	case !strings.EqualFold(f.Command(), "event"):
		return unmapped(fmt.Sprintf("unknown cmd %.64q", f.Command()))
	}
	var typ string
	switch f.Event() {
	case "INCOMING":
		typ = event.TypeRinging
	case "ANSWERED":
		typ = event.TypeAnswered
	case "COMPLETED":
		typ = event.TypeCompleted
	default:
		return unmapped(fmt.Sprintf("unknown event %.64q", f["event"]))
	}

	callID, how := f.CallID(), ""
	if callID == "" && corr.CallID != "" {
		// A joined id not declared derived is weak: "" would claim the PBX sent it.
		callID, how = corr.CallID, CorrelationWeak
		if corr.How == CorrelationDerived {
			how = CorrelationDerived
		}
	}
	if callID == "" { // the handler found no call: still give every call event a call
		callID, how = DerivedCallID(f["access_code"], f), CorrelationDerived
	}
	callType, ext := f["type"], f["ext"]
	if strings.TrimSpace(callType) == "" {
		callType = corr.Type
	}
	if ext == "" {
		ext = cmp.Or(corr.Agent, corr.Ext)
	}
	newEvent := func(typ string) event.Event {
		ev := src.New(typ, key, callID, received)
		d := &ev.Data
		d.Correlation = how
		d.Direction = pbx.InOut(callType)
		external := event.Party{Number: event.Number(f.Phone(), src.Region)}
		employee := event.Party{Extension: ext}
		// Without type the phone is laid out as on inbound: XVB's page calls it the caller, and
		// the external number has to appear somewhere.
		d.From, d.To = external, employee
		if d.Direction == event.DirectionOutbound {
			d.From, d.To = employee, external
		}
		d.Line = event.Number(f["line_number"], src.Region)
		d.Agent = ext // ext is always the employee on the call (answering agent, caller on out)
		d.Raw = raw
		return ev
	}

	ev := newEvent(typ)
	if typ != event.TypeCompleted {
		return []event.Event{ev}
	}
	d := &ev.Data
	ended := ev.Time
	d.EndedAt = &ended
	duration, hasDuration := parseDuration(f["duration"])
	if hasDuration {
		started := ended.Add(-time.Duration(duration) * time.Second)
		d.DurationS, d.StartedAt = &duration, &started
	}
	d.Result, d.Reason = pbx.CallStatus(f["status"], hasDuration && duration == 0, d.Direction)
	d.RecordingURL = f["record_link"]
	if d.RecordingURL == "" {
		return []event.Event{ev}
	}
	if err := event.CheckLink(d.RecordingURL); err != nil {
		// The CRM would render it; the call is still reported, without the link.
		d.RecordingURL, d.Error = "", "record_link dropped: "+err.Error()
		return []event.Event{ev}
	}
	rec := newEvent(event.TypeRecordingReady)
	rec.Data.RecordingURL = d.RecordingURL
	return []event.Event{ev, rec}
}

// parseDuration accepts whole non-negative seconds up to maxDurationS. Anything else leaves
// duration_s and started_at out rather than turning the call's closing record into
// pbx.unmapped: the CRM needs to learn that the call ended more than how long it took.
func parseDuration(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil && n >= 0 && n <= maxDurationS
}

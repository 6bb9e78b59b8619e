package mango

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

// callStates maps /events/call call_state, lowercased, to event types.
var callStates = map[string]string{
	"appeared":     event.TypeRinging,
	"connected":    event.TypeAnswered,
	"onhold":       event.TypeHeld,
	"disconnected": event.TypeLegEnded,
}

// callEvent translates /events/call: one leg's state change.
func callEvent(m *message, f fields) (event.Event, error) {
	leg, state := f.str("call_id"), f.str("call_state")
	typ, ok := callStates[strings.ToLower(strings.TrimSpace(state))]
	switch {
	case leg == "":
		return event.Event{}, errors.New("missing call_id")
	case !ok:
		return event.Event{}, fmt.Errorf("unknown call_state %q", state)
	}
	seq := f.num("seq")
	ev := m.event(typ, key(leg, seqKey(seq)), f.str("entry_id"), f.time("timestamp"))
	from, to := f.obj("from"), f.obj("to")
	d := &ev.Data
	d.LegID, d.Seq = leg, seq
	d.From, d.To = m.party(from), m.party(to)
	d.Line = m.number(to.str("line_number"))
	d.Location = f.str("location", "locaton") // the typo is in Mango's own document
	d.CommandID = f.str("command_id")
	d.Agent = agent(d.From, d.To)
	d.ParentLegID = from.str("taken_from_call_id")
	if d.ParentLegID == "" {
		d.ParentLegID = to.str("taken_from_call_id")
	}
	m.extras(f, d)
	d.Initiator = initiator(f.str("callback_initiator"))
	d.Direction = legDirection(d)
	// disconnect_reason is read on Disconnected only: one real Appeared carries it too.
	if typ == event.TypeLegEnded {
		code := f.num("disconnect_reason")
		d.Reason, d.ReasonCode = reason(code), int(code)
		if from.flag("was_transferred", "was_transfered") || to.flag("was_transferred", "was_transfered") {
			d.Reason = event.ReasonTransferred
		}
	}
	return ev, nil
}

// dtmf translates /events/dtmf: a packet of digits collected in the IVR.
func dtmf(m *message, f fields) (event.Event, error) {
	leg, digits := f.str("call_id"), f.str("dtmf")
	switch {
	case leg == "":
		return event.Event{}, errors.New("missing call_id")
	case digits == "":
		return event.Event{}, errors.New("missing dtmf")
	}
	seq := f.num("seq")
	ev := m.event(event.TypeDTMF, key(leg, seqKey(seq)), f.str("entry_id"), f.time("timestamp"))
	d := &ev.Data
	d.LegID, d.Seq, d.DTMF = leg, seq, digits
	// initiator is whoever entered the digits: the caller, unless Mango says otherwise.
	d.From.Number = m.number(f.str("from_number"))
	if d.From.Number == "" {
		d.From.Number = m.number(f.str("initiator"))
	}
	d.To.Number = m.number(f.str("to_number"))
	d.Line = m.number(f.str("line_number"))
	d.Location = f.str("location", "locaton")
	d.Direction = legDirection(d)
	return ev, nil
}

// summaryDirections maps call_direction.
var summaryDirections = map[int64]string{
	0: event.DirectionInternal,
	1: event.DirectionInbound,
	2: event.DirectionOutbound,
}

// summary translates /events/summary: the closing record of a whole call (entry_id).
func summary(m *message, f fields) (event.Event, error) {
	entry := f.str("entry_id")
	if entry == "" {
		return event.Event{}, errors.New("missing entry_id")
	}
	created, answered, ended := f.time("create_time"), f.time("talk_time"), f.time("end_time")
	// A summary has no timestamp of its own; the call's end is when it happened.
	ev := m.event(event.TypeCompleted, entry, entry, ended)
	d := &ev.Data
	d.From, d.To = m.party(f.obj("from")), m.party(f.obj("to"))
	d.Line = m.number(f.str("line_number"))
	d.Agent = agent(d.From, d.To)
	m.extras(f, d)
	d.Direction = event.DirectionUnknown
	if f.has("call_direction") {
		if dir, ok := summaryDirections[f.num("call_direction")]; ok {
			d.Direction = dir
		}
	}
	d.StartedAt, d.AnsweredAt, d.EndedAt = at(created), at(answered), at(ended)
	d.DurationS = seconds(created, ended)
	d.TalkS = seconds(answered, ended)
	if answered.IsZero() {
		d.TalkS = new(int64)
	}
	code := f.num("disconnect_reason")
	d.Reason, d.ReasonCode = reason(code), int(code)
	d.Result = event.CallResult(!answered.IsZero(), d.Reason, d.Direction)
	return ev, nil
}

// recording translates /events/recording. Only a finished recording that was kept maps:
// Started and Continued say nothing a CRM can use, and a failed one has no file.
func recording(m *message, f fields) (event.Event, error) {
	state := f.str("recording_state")
	if !strings.EqualFold(strings.TrimSpace(state), "Completed") {
		return event.Event{}, fmt.Errorf("recording_state %q: only a completed recording maps", state)
	}
	// completion_code 1000 (class 10xx) is success; without a code, a recipient means kept.
	code := f.num("completion_code")
	if code/100 != 10 && !(code == 0 && f.has("recipient")) {
		return event.Event{}, fmt.Errorf("recording not kept: completion_code %d", code)
	}
	return recordingReady(m, f)
}

// recordingReady translates /events/record/added and a kept /events/recording alike; keyed on
// recording_id alone, both get the same event id (see the package comment).
func recordingReady(m *message, f fields) (event.Event, error) {
	id := f.str("recording_id")
	if id == "" {
		return event.Event{}, errors.New("missing recording_id")
	}
	ev := m.event(event.TypeRecordingReady, id, f.str("entry_id"), f.time("timestamp"))
	d := &ev.Data
	d.RecordingID = id
	d.LegID = f.str("call_id")
	d.Agent = f.str("extension")
	d.CommandID = f.str("command_id")
	return ev, nil
}

// commandResult translates /result/<command>: how a command we sent went.
func commandResult(m *message, f fields) (event.Event, error) {
	id := f.str("command_id")
	switch {
	case id == "":
		return event.Event{}, errors.New("missing command_id")
	case !f.has("result"):
		return event.Event{}, errors.New("missing result")
	}
	// Keyed on command_id alone (one command, one result): the suffix is not signed.
	ev := m.event(event.TypeCommandResult, id, "", f.time("timestamp"))
	d := &ev.Data
	d.Command = strings.TrimPrefix(m.suffix, "result/")
	d.CommandID = id
	code := f.num("result")
	d.Reason, d.ReasonCode = reason(code), int(code)
	return ev, nil
}

// party reads a from or to object.
func (m *message) party(f fields) event.Party {
	return event.Party{
		Number:    m.number(f.str("number")),
		Extension: f.str("extension"),
		Group:     f.str("acd_group"),
	}
}

// number is a phone number in E.164, or the value as given (SIP URI, user name).
func (m *message) number(raw string) string { return event.Number(raw, m.src.Region) }

// extras reads the fields call legs and summaries share.
func (m *message) extras(f fields, d *event.Data) {
	d.SIPCallID = f.str("sip_call_id")
	d.TrackingNumber = m.number(f.obj("dct").str("number"))
}

// agent is the employee of a leg or call: the called party when it is an employee, else the
// caller.
func agent(from, to event.Party) string {
	if to.Extension != "" {
		return to.Extension
	}
	return from.Extension
}

// legDirection is the direction of a leg; the rule is in the package comment.
func legDirection(d *event.Data) string {
	switch {
	case d.Initiator != "", d.CommandID != "" && d.ParentLegID == "" && d.Line == "":
		return event.DirectionOutbound
	case d.From.Extension != "" && d.To.Extension != "":
		return event.DirectionInternal
	case d.From.Extension != "":
		return event.DirectionOutbound
	case d.To.Extension != "" || d.To.Group != "" || d.Line != "" ||
		strings.HasPrefix(d.Location, "ivr") || d.Location == "queue":
		return event.DirectionInbound
	}
	return event.DirectionUnknown
}

// at is a time that may not have happened.
func at(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// seconds between two times that both happened, in order; nil otherwise.
func seconds(from, to time.Time) *int64 {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return nil
	}
	s := to.Unix() - from.Unix() // not Sub: a Duration overflows after 292 years
	return &s
}

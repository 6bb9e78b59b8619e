// Package event is the canonical call event every PBX's webhooks are translated into (its
// JSON Schema is schema/call-event.v1.json), with the rules all PBXs share: phone numbers,
// call results, recording links. Pure Go: no Caddy, no I/O. The PBXs are in pbx/.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// DataSchema names the schema of Event.Data; schema/call-event.v1.json describes the whole event.
const DataSchema = "urn:pbxbridge:call-event:v1"

// Event types of docs/events.md.
const (
	TypeRinging        = "call.ringing"
	TypeAnswered       = "call.answered"
	TypeHeld           = "call.held"
	TypeLegEnded       = "call.leg_ended"
	TypeCompleted      = "call.completed"
	TypeRecordingReady = "recording.ready"
	TypeDTMF           = "call.dtmf"
	TypeCommandResult  = "command.result"
	TypeUnmapped       = "pbx.unmapped"
)

// Types lists every event type, for validation of `events` filters and for metrics.
var Types = []string{
	TypeRinging, TypeAnswered, TypeHeld, TypeLegEnded, TypeCompleted,
	TypeRecordingReady, TypeDTMF, TypeCommandResult, TypeUnmapped,
}

// Directions.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
	DirectionInternal = "internal"
	DirectionUnknown  = "unknown"
)

// Results of call.completed.
const (
	ResultAnswered  = "answered"
	ResultMissed    = "missed"
	ResultBusy      = "busy"
	ResultFailed    = "failed"
	ResultCancelled = "cancelled"
)

// Event is a CloudEvents 1.0 event; its JSON is the structured-mode body.
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`
	Data            Data      `json:"data"`
	// TraceParent is the W3C trace context of the webhook the event came in (the CloudEvents
	// distributed tracing extension), when it had one: docs/tracing.md. It is not part of
	// the id, so a re-send with another trace context is still the same event.
	TraceParent string `json:"traceparent,omitempty"`
}

// Party is one side of a call. Number is E.164 when it parses as a phone number, otherwise
// (SIP URI, SIP user name) kept as given.
type Party struct {
	Number    string `json:"number,omitempty"`
	Extension string `json:"extension,omitempty"`
	Group     string `json:"group,omitempty"`
}

// Data is the canonical call event. The fields up to OccurredAt are always present so that
// a CRM sees one shape; the rest appear where the event type carries them.
type Data struct {
	PBX        string    `json:"pbx"`
	Account    string    `json:"account"`
	CallID     string    `json:"call_id"`
	LegID      string    `json:"leg_id"`
	Seq        int64     `json:"seq"`
	Direction  string    `json:"direction"`
	From       Party     `json:"from"`
	To         Party     `json:"to"`
	Line       string    `json:"line"`
	Agent      string    `json:"agent"`
	Location   string    `json:"location"`
	CommandID  string    `json:"command_id"`
	OccurredAt time.Time `json:"occurred_at"`

	// command.result: the command's name (Mango "callback", "call/hangup", …).
	Command string `json:"command,omitempty"`

	// call.leg_ended, call.completed, command.result
	Reason     string `json:"reason,omitempty"`
	ReasonCode int    `json:"reason_code,omitempty"`

	// call.completed
	Result     string     `json:"result,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	DurationS  *int64     `json:"duration_s,omitempty"`
	TalkS      *int64     `json:"talk_s,omitempty"`

	// recording.ready, call.completed
	RecordingID  string `json:"recording_id,omitempty"`
	RecordingURL string `json:"recording_url,omitempty"`

	// call.dtmf
	DTMF string `json:"dtmf,omitempty"`

	// ParentLegID is the leg this one was transferred or routed from (Mango taken_from_call_id).
	ParentLegID string `json:"parent_leg_id,omitempty"`
	// SIPCallID is the caller's own SIP Call-ID, when the PBX passes it through.
	SIPCallID string `json:"sip_call_id,omitempty"`
	// Initiator says what started a PBX-originated call: contact_centre, api, web, campaign,
	// callback_widget, missed_group_callback, missed_ivr_callback, other.
	Initiator string `json:"initiator,omitempty"`
	// TrackingNumber is the call-tracking number the caller dialled (Mango dct.number).
	TrackingNumber string `json:"tracking_number,omitempty"`

	// Correlation says how call_id was found when the PBX did not send it: "weak" when joined
	// by phone number, "derived" when made up from the payload. Empty when the PBX sent it.
	Correlation string `json:"correlation,omitempty"`

	// pbx.unmapped: why the message did not map.
	Error string `json:"error,omitempty"`

	// The PBX payload as received, without secrets. Sent to targets with `raw on`.
	Raw json.RawMessage `json:"raw,omitempty"`
}

// Origin is the PBX account that produced an event: its kind, its name and the region of its
// numbers. (The CloudEvents source attribute, Event.Source, is made from it.)
type Origin struct {
	PBX     string // the kind: "mango", "xvb", "itoolabs"
	Account string // the account's name in the Caddyfile
	Region  string // ISO 3166 region for phone numbers without a country code; default RU
}

// New returns an event of the given type with its envelope filled in. key identifies the PBX
// message (and, for messages that yield several events, is combined with typ), so a re-send of
// the same message gets the same id. An event without a call (callID empty) has the event id as
// subject; a translator that sets CommandID on such an event sets Subject = OrderingKey().
func (s Origin) New(typ, key, callID string, occurred time.Time) Event {
	id := EventID(s.PBX, s.Account, typ, key)
	subject := callID
	if subject == "" {
		subject = id
	}
	occurred = occurred.UTC().Truncate(time.Second)
	return Event{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          "/pbx/" + s.PBX + "/" + s.Account,
		Type:            typ,
		Subject:         subject,
		Time:            occurred,
		DataContentType: "application/json",
		DataSchema:      DataSchema,
		Data: Data{
			PBX:        s.PBX,
			Account:    s.Account,
			CallID:     callID,
			Direction:  DirectionUnknown,
			OccurredAt: occurred,
		},
	}
}

// EventID is 128 bits of SHA-256 over the message identity, in hex.
func EventID(pbx, account, typ, key string) string {
	h := sha256.New()
	for _, part := range []string{pbx, account, typ, key} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// OrderingKey is the key whose events a target delivers one at a time, in order.
func (e *Event) OrderingKey() string {
	if e.Data.CallID != "" {
		return e.Data.CallID
	}
	if e.Data.CommandID != "" {
		return e.Data.CommandID
	}
	return e.ID
}

package delivery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/event"
)

// Headers of a stored event besides its id (jetstream.MsgIDHeader) and headerKey: what every
// delivery attempt needs of the event (its log line, history record and span), which is then
// decoded only for a format or a connector that needs more (docs/delivery.md#the-stored-event).
// headerType marks an event stored with encodeStored under its own id; the others are there
// when the event has the value.
const (
	headerType        = "Pbx-Type"
	headerCallID      = "Pbx-Call-Id"
	headerFrom        = "Pbx-From"
	headerTo          = "Pbx-To"
	headerTraceParent = "Pbx-Traceparent"
)

// encodeStored is the JSON an event is stored as: the structured body of a `raw on` target
// (formatJSON), so that the stored bytes are that body as they are (formatStructured.body).
// data.raw is escaped for HTML as json.Marshal, which stored events before, escaped it: a
// decoded raw is sent verbatim, so that is what CRMs got.
func encodeStored(ev *event.Event) ([]byte, error) {
	if len(ev.Data.Raw) == 0 {
		return formatJSON(ev)
	}
	var raw bytes.Buffer
	json.HTMLEscape(&raw, ev.Data.Raw)
	escaped := *ev
	escaped.Data.Raw = raw.Bytes()
	return formatJSON(&escaped)
}

// storedEvent is an event as a dispatcher takes it from the stream: its JSON, and from the
// message's headers its id, type, call id, the numbers of from and to, and traceparent. The
// event itself is decoded on first use.
type storedEvent struct {
	data                                   []byte
	id, typ, callID, from, to, traceParent string
	// encoded: stored with encodeStored under the event's id (it has headerType). An event
	// stored before, a copy stored under another id (storeIfOriginalLost), or one replayed
	// from a dead letter (whose JSON escapes it anew) is decoded at once.
	encoded bool
	ev      *event.Event
}

// readStored reads msg's event; an error means it is not one (it does not decode).
func readStored(msg jetstream.Msg) (*storedEvent, error) {
	s := &storedEvent{data: msg.Data()}
	h := msg.Headers()
	if s.typ = h.Get(headerType); s.typ != "" {
		s.id, s.callID, s.encoded = h.Get(jetstream.MsgIDHeader), h.Get(headerCallID), true
		s.from, s.to, s.traceParent = h.Get(headerFrom), h.Get(headerTo), h.Get(headerTraceParent)
		return s, nil
	}
	_, err := s.event()
	return s, err
}

// event decodes the stored event.
func (s *storedEvent) event() (*event.Event, error) {
	if s.ev != nil {
		return s.ev, nil
	}
	var ev event.Event
	if err := json.Unmarshal(s.data, &ev); err != nil {
		return nil, fmt.Errorf("stored event does not decode: %w", err)
	}
	s.ev = &ev
	s.id, s.typ, s.callID = ev.ID, ev.Type, ev.Data.CallID
	s.from, s.to, s.traceParent = ev.Data.From.Number, ev.Data.To.Number, ev.TraceParent
	return s.ev, nil
}

// encode is f.Encode of the event, from the stored bytes where f can make its body of them.
func (s *storedEvent) encode(f Format) ([]byte, http.Header, error) {
	if structured, ok := f.(formatStructured); ok && s.encoded {
		if body, ok := structured.body(s.data, s.typ, s.traceParent != ""); ok {
			return body, structuredHeader(), nil
		}
	}
	ev, err := s.event()
	if err != nil {
		return nil, nil, err
	}
	return f.Encode(ev)
}

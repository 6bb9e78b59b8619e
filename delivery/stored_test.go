package delivery

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/pbxbridge/pbxbridge/event"
)

// TestStoredEventEncode: what a target is sent for a stored event is byte for byte what it
// was sent when events were stored with json.Marshal and decoded for every attempt, and the
// structured format makes it without decoding the event.
func TestStoredEventEncode(t *testing.T) {
	at := "2026-11-25T10:15:05Z"
	events := map[string]*event.Event{
		"answered": formatTestEvent(formatTestMango, event.TypeAnswered, at, nil),
		"no raw": formatTestEvent(formatTestMango, event.TypeRinging, at, func(ev *event.Event) {
			ev.Data.Raw = nil
		}),
		"completed, URL with &": formatTestEvent(formatTestMango, event.TypeCompleted, at, func(ev *event.Event) {
			ev.Data.Result = event.ResultAnswered
			ev.Data.TalkS = formatTestInt(42)
			ev.Data.RecordingURL = "https://rec.example/r?a=1&b=<2>"
			ev.Data.Raw = json.RawMessage(`{"url": "https://rec.example/r?a=1&b=<2>", "raw": {"x": ",\"raw\":"}, "ls": "\u2028 ` + "\u2028" + `"}`)
		}),
		"control character": formatTestEvent(formatTestMango, event.TypeAnswered, at, func(ev *event.Event) {
			ev.Data.Agent = "tab\there, bell\a"
		}),
		"invalid UTF-8": formatTestEvent(formatTestMango, event.TypeAnswered, at, func(ev *event.Event) {
			ev.Data.Agent = "agent \xff"
		}),
		"unmapped": formatTestEvent(formatTestMango, event.TypeUnmapped, at, func(ev *event.Event) {
			ev.Data.Error = "unknown call_state"
		}),
		"traceparent, raw with a traceparent member": formatTestEvent(formatTestMango, event.TypeAnswered, at, func(ev *event.Event) {
			ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			ev.Data.Raw = json.RawMessage(`{"x":{},"traceparent":"00-x"}`)
		}),
		"traceparent, no raw": formatTestEvent(formatTestMango, event.TypeAnswered, at, func(ev *event.Event) {
			ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			ev.Data.Raw = nil
		}),
		"no traceparent, raw with a traceparent member": formatTestEvent(formatTestMango, event.TypeAnswered, at, func(ev *event.Event) {
			ev.Data.Raw = json.RawMessage(`{"x":{},"traceparent":"00-x"}`)
		}),
	}
	formats := map[string]Format{}
	for name, kind := range map[string]string{"structured": "cloudevents", "binary": "cloudevents-binary"} {
		for _, raw := range []bool{false, true} {
			f, err := NewFormat(kind, "", raw)
			if err != nil {
				t.Fatal(err)
			}
			formats[name+", raw "+map[bool]string{false: "off", true: "on"}[raw]] = f
		}
	}
	for evName, ev := range events {
		before, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var decoded event.Event
		if err := json.Unmarshal(before, &decoded); err != nil {
			t.Fatal(err)
		}
		stored, err := encodeStored(ev)
		if err != nil {
			t.Fatal(err)
		}
		for fName, f := range formats {
			wantBody, wantHeader, err := f.Encode(&decoded)
			if err != nil {
				t.Fatal(err)
			}
			s := &storedEvent{data: stored, id: ev.ID, typ: ev.Type, callID: ev.Data.CallID, traceParent: ev.TraceParent, encoded: true}
			body, header, err := s.encode(f)
			if err != nil {
				t.Fatalf("%s, %s: %v", evName, fName, err)
			}
			if !bytes.Equal(body, wantBody) {
				t.Errorf("%s, %s: body\n%s\nwant\n%s", evName, fName, body, wantBody)
			}
			if !reflect.DeepEqual(header, wantHeader) {
				t.Errorf("%s, %s: header %v, want %v", evName, fName, header, wantHeader)
			}
			_, structured := f.(formatStructured)
			if wantDecoded := !structured || evName == "invalid UTF-8"; (s.ev != nil) != wantDecoded {
				t.Errorf("%s, %s: decoded %v, want %v", evName, fName, s.ev != nil, wantDecoded)
			}
		}
	}
}

// TestStoredEventRawIsLast: formatStructured.body cuts data.raw out of the stored JSON where
// data ends, which is followed only by traceparent.
func TestStoredEventRawIsLast(t *testing.T) {
	evType, dataType := reflect.TypeFor[event.Event](), reflect.TypeFor[event.Data]()
	var after []string
	for i := evType.NumField() - 1; evType.Field(i).Type != dataType; i-- {
		after = append(after, evType.Field(i).Name)
	}
	if !reflect.DeepEqual(after, []string{"TraceParent"}) {
		t.Errorf("the event's fields after Data are %v, want only TraceParent", after)
	}
	if last := dataType.Field(dataType.NumField() - 1); last.Name != "Raw" {
		t.Errorf("data's last field is %s, not Raw", last.Name)
	}
}

// BenchmarkStoredEventEncode is a delivery attempt's body for a Mango event to a default
// target (structured, raw off): from the stored bytes, and by decoding the event as events
// stored before encodeStored are.
func BenchmarkStoredEventEncode(b *testing.B) {
	ev := formatTestEvent(formatTestMango, event.TypeAnswered, "2026-11-25T10:15:05Z", nil)
	stored, err := encodeStored(ev)
	if err != nil {
		b.Fatal(err)
	}
	f, err := NewFormat("", "", false)
	if err != nil {
		b.Fatal(err)
	}
	for _, encoded := range []bool{true, false} {
		b.Run(map[bool]string{true: "stored", false: "decoded"}[encoded], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := &storedEvent{data: stored, id: ev.ID, typ: ev.Type, callID: ev.Data.CallID, encoded: encoded}
				if _, _, err := s.encode(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

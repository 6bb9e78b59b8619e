package event_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
)

// designExample is a call.answered event as docs/events.md describes it.
const designExample = `{
  "specversion": "1.0",
  "id": "5f0c9a7e1b3d4c2a8e6f0b1d3c5a7e9f",
  "source": "/pbx/mango/office",
  "type": "call.answered",
  "subject": "MTYxNzM5NjY0OTE=",
  "time": "2026-11-25T10:15:05Z",
  "datacontenttype": "application/json",
  "dataschema": "urn:pbxbridge:call-event:v1",
  "data": {
    "pbx": "mango",
    "account": "office",
    "call_id": "MTYxNzM5NjY0OTE=",
    "leg_id": "MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5",
    "seq": 2,
    "direction": "inbound",
    "from": {"number": "+79123456789"},
    "to": {"number": "+79987654321", "extension": "101", "group": "303"},
    "line": "+74951234567",
    "agent": "101",
    "location": "agent",
    "command_id": "",
    "occurred_at": "2026-11-25T10:15:05Z",
    "raw": {"entry_id": "MTYxNzM5NjY0OTE="}
  }
}`

// edit applies f to the decoded design example and returns it re-encoded.
func edit(t *testing.T, f func(ev map[string]any, data map[string]any)) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal([]byte(designExample), &ev); err != nil {
		t.Fatal(err)
	}
	f(ev, ev["data"].(map[string]any))
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidateEvent(t *testing.T) {
	tests := []struct {
		name string
		edit func(ev, data map[string]any)
		ok   bool
	}{
		{"design example", func(ev, data map[string]any) {}, true},
		{"leg ended with reason", func(ev, data map[string]any) {
			ev["type"] = event.TypeLegEnded
			data["reason"], data["reason_code"] = event.ReasonBusy, 1121
		}, true},
		{"completed", func(ev, data map[string]any) {
			ev["type"] = event.TypeCompleted
			data["result"], data["started_at"], data["duration_s"], data["talk_s"] = event.ResultMissed, "2026-11-25T10:15:05Z", 10, 0
		}, true},
		{"command result", func(ev, data map[string]any) {
			ev["type"], data["command"], data["command_id"] = event.TypeCommandResult, "callback", "c1"
		}, true},
		{"recording by url only", func(ev, data map[string]any) {
			ev["type"], data["recording_url"] = event.TypeRecordingReady, "https://pbx.example.net/r.mp3"
		}, true},
		{"unmapped", func(ev, data map[string]any) {
			ev["type"], data["error"] = event.TypeUnmapped, "unknown message kind"
		}, true},
		{"future optional data field", func(ev, data map[string]any) { data["queue_s"] = 4 }, true},

		{"extra envelope attribute", func(ev, data map[string]any) { ev["traceparent"] = "x" }, false},
		{"missing subject", func(ev, data map[string]any) { delete(ev, "subject") }, false},
		{"empty subject", func(ev, data map[string]any) { ev["subject"] = "" }, false},
		{"short id", func(ev, data map[string]any) { ev["id"] = "5f0c" }, false},
		{"bad source", func(ev, data map[string]any) { ev["source"] = "mango" }, false},
		{"unknown type", func(ev, data map[string]any) { ev["type"] = "call.exploded" }, false},
		{"wrong specversion", func(ev, data map[string]any) { ev["specversion"] = "0.3" }, false},
		{"wrong dataschema", func(ev, data map[string]any) { ev["dataschema"] = "urn:x" }, false},
		{"time not a date", func(ev, data map[string]any) { ev["time"] = "yesterday" }, false},
		{"time not UTC", func(ev, data map[string]any) { ev["time"] = "2026-11-25T13:15:05+03:00" }, false},
		{"missing always-present field", func(ev, data map[string]any) { delete(data, "leg_id") }, false},
		{"seq as string", func(ev, data map[string]any) { data["seq"] = "2" }, false},
		{"negative seq", func(ev, data map[string]any) { data["seq"] = -1 }, false},
		{"unknown direction", func(ev, data map[string]any) { data["direction"] = "sideways" }, false},
		{"unknown reason", func(ev, data map[string]any) { data["reason"] = "gremlins" }, false},
		{"unknown result", func(ev, data map[string]any) { data["result"] = "maybe" }, false},
		{"completed without result", func(ev, data map[string]any) { ev["type"] = event.TypeCompleted }, false},
		{"command result without command", func(ev, data map[string]any) {
			ev["type"], data["command_id"] = event.TypeCommandResult, "c1"
		}, false},
		{"command result without command_id", func(ev, data map[string]any) {
			ev["type"], data["command"] = event.TypeCommandResult, "callback"
		}, false},
		{"recording without id or url", func(ev, data map[string]any) { ev["type"] = event.TypeRecordingReady }, false},
		{"dtmf without digits", func(ev, data map[string]any) { ev["type"] = event.TypeDTMF }, false},
		{"unmapped without error", func(ev, data map[string]any) { ev["type"] = event.TypeUnmapped }, false},
		{"party number not a string", func(ev, data map[string]any) { data["from"] = map[string]any{"number": 7} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := eventtest.Validate(edit(t, tt.edit))
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateEvent: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestValidateEventNotJSON(t *testing.T) {
	for _, doc := range []string{``, `{`, `{} {}`, `[]`, `"x"`} {
		if err := eventtest.Validate([]byte(doc)); err == nil {
			t.Errorf("ValidateEvent(%q) = nil, want an error", doc)
		}
	}
}

// An Origin.New event, marshalled as Go does, is valid once a translator fills it.
func TestValidateNewEvent(t *testing.T) {
	src := event.Origin{PBX: "mango", Account: "office"}
	ev := src.New(event.TypeRinging, "k", "", time.Date(2026, 11, 25, 10, 15, 5, 999, time.FixedZone("MSK", 3*3600)))
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventtest.Validate(b); err != nil {
		t.Fatal(err)
	}
}

func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(event.Schema, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func lookup(t *testing.T, v any, path string) any {
	t.Helper()
	for _, k := range strings.Split(path, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("schema has no %s", path)
		}
		v = m[k]
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// The schema's vocabularies are the Go constants, so neither drifts from the other.
func TestSchemaVocabularies(t *testing.T) {
	doc := schemaDoc(t)
	props := "$defs/data/properties/"
	for _, tt := range []struct {
		path string
		want []string
	}{
		{"$defs/type/enum", event.Types},
		{props + "reason/enum", event.Reasons},
		{props + "direction/enum", []string{event.DirectionInbound, event.DirectionOutbound, event.DirectionInternal, event.DirectionUnknown}},
		{props + "result/enum", []string{event.ResultAnswered, event.ResultMissed, event.ResultBusy, event.ResultFailed, event.ResultCancelled}},
		{"properties/dataschema/const", []string{event.DataSchema}},
		{"$id", []string{event.DataSchema}},
	} {
		got := lookup(t, doc, tt.path)
		if s, ok := got.(string); ok {
			got = []any{s}
		}
		if !slices.Equal(strs(got), tt.want) {
			t.Errorf("%s = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// Every field the Go types can emit is declared in the schema: data is open to optional
// fields, so without this test a new field would go undocumented.
func TestSchemaDeclaresEveryField(t *testing.T) {
	doc := schemaDoc(t)
	for _, tt := range []struct {
		typ  reflect.Type
		path string
	}{
		{reflect.TypeFor[event.Event](), "properties"},
		{reflect.TypeFor[event.Data](), "$defs/data/properties"},
		{reflect.TypeFor[event.Party](), "$defs/party/properties"},
	} {
		props := lookup(t, doc, tt.path).(map[string]any)
		for f := range tt.typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s: schema %s has no %q", tt.typ.Name(), f.Name, tt.path, name)
			}
		}
	}
	required := strs(lookup(t, doc, "$defs/data/required"))
	for f := range reflect.TypeFor[event.Data]().Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(required, name) == (opts == "omitempty") {
			t.Errorf("Data.%s: required in schema = %v but json tag %q", f.Name, slices.Contains(required, name), tag)
		}
	}
}

package xvb

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

// summary is the part of an event a table case states.
type summary struct {
	Type, CallID, Correlation, Direction string
	From, To                             event.Party
	Line, Agent                          string
	Result                               string
	DurationS                            int64 // -1: absent
	RecordingURL, Error                  string
}

func summarise(events []event.Event) []summary {
	out := make([]summary, len(events))
	for i, ev := range events {
		d := ev.Data
		s := summary{ev.Type, d.CallID, d.Correlation, d.Direction, d.From, d.To, d.Line, d.Agent, d.Result, -1, d.RecordingURL, d.Error}
		if d.DurationS != nil {
			s.DurationS = *d.DurationS
		}
		out[i] = s
	}
	return out
}

func translateForm(t testing.TB, body string, corr Correlation) []event.Event {
	t.Helper()
	events := Translate(testSource, mustParse(t, formType, []byte(body)), corr, testReceived)
	pbxtest.CheckEvents(t, events)
	return events
}

const (
	ac       = "access_code=10019&"
	e164     = "+79201119613"
	incoming = ac + "cmd=event&callid=C1&event=INCOMING&"
)

var (
	caller = event.Party{Number: e164}
	noExt  = event.Party{}
)

func TestTranslate(t *testing.T) {
	weak := Correlation{CallID: "OPEN1", How: CorrelationWeak}
	derivedID := DerivedCallID("10019", mustParse(t, formType, []byte(ac+"cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613")))
	tests := []struct {
		name string
		body string
		corr Correlation
		want []summary
	}{
		{"8-prefixed phone", incoming + "type=in&phone=89201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", caller, noExt, "", "", "", -1, "", ""}}},
		{"10-digit phone", incoming + "type=in&phone=9201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", caller, noExt, "", "", "", -1, "", ""}}},
		{"encoded +7 phone", incoming + "type=in&phone=%2B79201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", caller, noExt, "", "", "", -1, "", ""}}},
		{"unencoded + arrives as a space", incoming + "type=in&phone=+79201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", caller, noExt, "", "", "", -1, "", ""}}},
		{"SIP user name stays", incoming + "type=in&phone=igorokunev-mbl", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", event.Party{Number: "igorokunev-mbl"}, noExt, "", "", "", -1, "", ""}}},
		{"login@domain stays", incoming + "type=in&phone=user%40example.com", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", event.Party{Number: "user@example.com"}, noExt, "", "", "", -1, "", ""}}},
		{"line_number to line", incoming + "type=in&phone=79201119613&line_number=84951234567", Correlation{},
			[]summary{{"call.ringing", "C1", "", "inbound", caller, noExt, "+74951234567", "", "", -1, "", ""}}},
		{"INCOMING type=out: the employee calls", incoming + "type=out&ext=101&phone=79201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "outbound", event.Party{Extension: "101"}, caller, "", "101", "", -1, "", ""}}},
		{"INCOMING without type", incoming + "phone=79201119613", Correlation{},
			[]summary{{"call.ringing", "C1", "", "unknown", caller, noExt, "", "", "", -1, "", ""}}},
		{"ANSWERED: agent is ext", ac + "cmd=event&callid=C1&type=in&event=answered&ext=100&phone=79201119613", Correlation{},
			[]summary{{"call.answered", "C1", "", "inbound", caller, event.Party{Extension: "100"}, "", "100", "", -1, "", ""}}},
		{"own callid wins over a correlation", ac + "cmd=event&callid=C1&event=ANSWERED&ext=100&phone=79201119613", weak,
			[]summary{{"call.answered", "C1", "", "unknown", caller, event.Party{Extension: "100"}, "", "100", "", -1, "", ""}}},
		{"COMPLETED without callid, weakly joined", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613", weak,
			[]summary{{"call.completed", "OPEN1", "weak", "unknown", caller, noExt, "", "", "answered", 16, "", ""}}},
		{"a joined id without How is weak, never PBX-sent", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613", Correlation{CallID: "OPEN1", How: "bogus"},
			[]summary{{"call.completed", "OPEN1", "weak", "unknown", caller, noExt, "", "", "answered", 16, "", ""}}},
		{"COMPLETED without callid, derived by the handler", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613",
			Correlation{CallID: derivedID, How: CorrelationDerived},
			[]summary{{"call.completed", derivedID, "derived", "unknown", caller, noExt, "", "", "answered", 16, "", ""}}},
		{"COMPLETED without callid and no correlation: derived here", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613", Correlation{},
			[]summary{{"call.completed", derivedID, "derived", "unknown", caller, noExt, "", "", "answered", 16, "", ""}}},
		{"COMPLETED with everything and a recording", ac + "cmd=event&callid=C1&type=in&event=COMPLETED&status=Success&duration=16&ext=100&phone=79201119613&record_link=https%3A%2F%2Fh%2Fr.q722%3Fa%3D1%26b%3D2", Correlation{},
			[]summary{
				{"call.completed", "C1", "", "inbound", caller, event.Party{Extension: "100"}, "", "100", "answered", 16, "https://h/r.q722?a=1&b=2", ""},
				{"recording.ready", "C1", "", "inbound", caller, event.Party{Extension: "100"}, "", "100", "", -1, "https://h/r.q722?a=1&b=2", ""},
			}},
		{"COMPLETED with a javascript: record_link: reported, the link dropped", ac + "cmd=event&callid=C1&type=in&event=COMPLETED&status=Success&duration=16&ext=100&phone=79201119613&record_link=javascript%3Aalert(document.cookie)", Correlation{},
			[]summary{{"call.completed", "C1", "", "inbound", caller, event.Party{Extension: "100"}, "", "100", "answered", 16, "", `record_link dropped: scheme "javascript" is not http or https`}}},
		// XVB's own COMPLETED has no type and no ext: the call it closes says them.
		{"outbound COMPLETED without type, joined by phone", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613",
			Correlation{CallID: "OPEN1", How: CorrelationWeak, Type: "out", Ext: "104"},
			[]summary{{"call.completed", "OPEN1", "weak", "outbound", event.Party{Extension: "104"}, caller, "", "104", "answered", 16, "", ""}}},
		{"outbound COMPLETED without type, with its callid", ac + "cmd=event&callid=C1&event=COMPLETED&status=Busy&duration=0&phone=79201119613",
			Correlation{Type: "out", Ext: "104"},
			[]summary{{"call.completed", "C1", "", "outbound", event.Party{Extension: "104"}, caller, "", "104", "busy", 0, "", ""}}},
		{"inbound COMPLETED joined by phone names who ANSWERED", ac + "cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613",
			Correlation{CallID: "OPEN1", How: CorrelationWeak, Type: "in", Agent: "100"},
			[]summary{{"call.completed", "OPEN1", "weak", "inbound", caller, event.Party{Extension: "100"}, "", "100", "answered", 16, "", ""}}},
		{"inbound Cancel joined by phone is missed", ac + "cmd=event&event=COMPLETED&status=Cancel&duration=7&phone=79201119613",
			Correlation{CallID: "OPEN1", How: CorrelationWeak, Type: "in"},
			[]summary{{"call.completed", "OPEN1", "weak", "inbound", caller, noExt, "", "", "missed", 7, "", ""}}},
		{"the message's own type and ext win", ac + "cmd=event&callid=C1&type=in&event=COMPLETED&status=Success&duration=16&ext=101&phone=79201119613",
			Correlation{Type: "out", Ext: "104", Agent: "100"},
			[]summary{{"call.completed", "C1", "", "inbound", caller, event.Party{Extension: "101"}, "", "101", "answered", 16, "", ""}}},
		{"unknown cmd", ac + "cmd=history&callid=C1", weak,
			[]summary{{"pbx.unmapped", "C1", "", "unknown", noExt, noExt, "", "", "", -1, "", `unknown cmd "history"`}}},
		{"unknown event", ac + "cmd=event&event=TRANSFERRED&phone=79201119613", weak,
			[]summary{{"pbx.unmapped", "", "", "unknown", noExt, noExt, "", "", "", -1, "", `unknown event "TRANSFERRED"`}}},
		{"contact is not an event", ac + "cmd=contact&phone=79201119613", Correlation{},
			[]summary{{"pbx.unmapped", "", "", "unknown", noExt, noExt, "", "", "", -1, "", "cmd=contact is a synchronous lookup, answered directly and never queued"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarise(translateForm(t, tt.body, tt.corr))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestCompletedResult(t *testing.T) {
	tests := []struct {
		status, duration, typ string
		result, reason        string
		durationS             int64 // -1: absent
	}{
		{"Success", "16", "in", "answered", "completed", 16},
		{"SUCCESS", "16", "out", "answered", "completed", 16},
		{"Success", "0", "in", "missed", "completed", 0}, // nobody talked
		{"Success", "", "in", "answered", "completed", -1},
		{"Success", "abc", "in", "answered", "completed", -1},
		{"Success", "-5", "in", "answered", "completed", -1},
		{"Success", "99999999999999", "in", "answered", "completed", -1},
		{"missed", "0", "in", "missed", "no_answer", 0},
		{"Missed", "12", "out", "missed", "no_answer", 12},
		// The caller gave up before an answer: a customer's call to return, our own given up.
		{"Cancel", "3", "in", "missed", "caller_hangup", 3},
		{"Cancel", "3", "", "missed", "caller_hangup", 3},
		{"Cancel", "3", "out", "cancelled", "caller_hangup", 3},
		{"Busy", "0", "out", "busy", "busy", 0},
		{"NotAvailable", "0", "in", "missed", "unavailable", 0},
		{"notallowed", "0", "out", "failed", "blocked", 0},
		{"NotFound", "0", "out", "failed", "wrong_number", 0},
		{"callAerror", "0", "out", "failed", "failed", 0},
		{"NoSuchStatus", "20", "in", "missed", "unknown", 20}, // unknown: the documented default
		{"", "20", "in", "missed", "", 20},                    // absent: the same, no reason
	}
	for _, tt := range tests {
		t.Run(tt.status+"/"+tt.duration+"/"+tt.typ, func(t *testing.T) {
			body := ac + "cmd=event&callid=C1&event=COMPLETED&type=" + tt.typ + "&status=" + tt.status + "&duration=" + tt.duration
			ev := translateForm(t, body, Correlation{})[0]
			d := ev.Data
			if d.Result != tt.result || d.Reason != tt.reason {
				t.Errorf("result, reason = %q, %q; want %q, %q", d.Result, d.Reason, tt.result, tt.reason)
			}
			if d.EndedAt == nil || !d.EndedAt.Equal(testReceived) {
				t.Errorf("ended_at = %v, want the receive time", d.EndedAt)
			}
			switch {
			case tt.durationS < 0 && (d.DurationS != nil || d.StartedAt != nil):
				t.Errorf("duration_s %v, started_at %v: want both absent", *d.DurationS, d.StartedAt)
			case tt.durationS >= 0 && (d.DurationS == nil || *d.DurationS != tt.durationS ||
				!d.StartedAt.Equal(testReceived.Add(-time.Duration(tt.durationS)*time.Second))):
				t.Errorf("duration_s %v started_at %v, want %d s before the receive time", d.DurationS, d.StartedAt, tt.durationS)
			}
			if !strings.Contains(string(d.Raw), `"status":"`+tt.status+`"`) {
				t.Errorf("raw %s lacks the status", d.Raw)
			}
		})
	}
}

// Event ids depend on the message only: a re-send in another field order, in JSON, or joined to
// another call gets the same id, while every event of one message gets its own.
func TestEventIDs(t *testing.T) {
	pairs := strings.Split(ac+"cmd=event&event=COMPLETED&status=Success&duration=16&phone=79201119613&record_link=https%3A%2F%2Fh%2Fr", "&")
	first := translateForm(t, strings.Join(pairs, "&"), Correlation{})
	if len(first) != 2 || first[0].ID == first[1].ID {
		t.Fatalf("want two events with distinct ids, got %+v", first)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10 {
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		corr := Correlation{CallID: "OPEN" + string(rune('A'+i)), How: CorrelationWeak}
		again := translateForm(t, strings.Join(pairs, "&"), corr)
		if again[0].ID != first[0].ID || again[1].ID != first[1].ID {
			t.Fatalf("reordered %q joined to %s: ids %s %s, want %s %s", pairs, corr.CallID, again[0].ID, again[1].ID, first[0].ID, first[1].ID)
		}
	}
	asJSON := `{"cmd":"event","event":"COMPLETED","status":"Success","duration":16,"phone":79201119613,"access_code":10019,"record_link":"https://h/r"}`
	fromJSON := Translate(testSource, mustParse(t, "application/json", []byte(asJSON)), Correlation{}, testReceived)
	assertSameEvents(t, fromJSON, first)

	other := translateForm(t, ac+"cmd=event&event=COMPLETED&status=Success&duration=17&phone=79201119613&record_link=https%3A%2F%2Fh%2Fr", Correlation{})
	if other[0].ID == first[0].ID || other[0].Data.CallID == first[0].Data.CallID {
		t.Error("a different message got the same event id or derived call id")
	}
}

// Secrets never reach raw, and do not change the id (a re-send with a rotated key is the same message).
func TestRawWithoutSecrets(t *testing.T) {
	plain := incoming + "type=in&phone=79201119613"
	withSecrets := plain + "&token=SECRET-TOKEN&key=SECRET-KEY"
	ev := translateForm(t, withSecrets, Correlation{})[0]
	var raw map[string]string
	if err := json.Unmarshal(ev.Data.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["token"]; ok || strings.Contains(string(ev.Data.Raw), "SECRET") {
		t.Errorf("raw holds a secret: %s", ev.Data.Raw)
	}
	if raw["callid"] != "C1" || raw["phone"] != "79201119613" || raw["ext"] != "" {
		t.Errorf("raw lost fields: %s", ev.Data.Raw)
	}
	if ev.ID != translateForm(t, plain, Correlation{})[0].ID {
		t.Error("secrets changed the event id")
	}
	if DerivedCallID("10019", mustParse(t, formType, []byte(withSecrets))) != DerivedCallID("10019", mustParse(t, formType, []byte(plain))) {
		t.Error("secrets changed the derived call id")
	}
}

// A re-sent message without callid lands on the same derived call, and the call id belongs to
// the tenant.
func TestDerivedCallID(t *testing.T) {
	f := Fields{"cmd": "event", "event": "COMPLETED", "phone": "79201119613", "access_code": "10019"}
	id := DerivedCallID("10019", f)
	if id != DerivedCallID("10019", maps.Clone(f)) || !strings.HasPrefix(id, "derived-") || len(id) != len("derived-")+32 {
		t.Errorf("unstable or malformed derived id %q", id)
	}
	if id == DerivedCallID("10020", f) {
		t.Error("two tenants share a derived call id")
	}
}

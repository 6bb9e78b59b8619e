package itoolabs

import (
	"encoding/json"
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
	Type, CallID, Direction string
	From, To                event.Party
	Line, Agent             string
	Reason, Result          string
	DurationS               int64 // -1: absent
	RecordingURL, Error     string
}

func summarise(events []event.Event) []summary {
	out := make([]summary, len(events))
	for i, ev := range events {
		d := ev.Data
		s := summary{ev.Type, d.CallID, d.Direction, d.From, d.To, d.Line, d.Agent, d.Reason, d.Result, -1, d.RecordingURL, d.Error}
		if d.DurationS != nil {
			s.DurationS = *d.DurationS
		}
		out[i] = s
	}
	return out
}

func translateForm(t testing.TB, body string) []event.Event {
	t.Helper()
	events := Translate(testSource, mustParse(t, formType, []byte(body)), testReceived)
	pbxtest.CheckEvents(t, events)
	return events
}

const (
	leg     = "crm_token=T&cmd=event&callid=C1&phone=89161234567&"
	history = "crm_token=T&cmd=history&callid=C1&phone=89161234567&start=20261125T101000Z&"
)

var (
	customer = event.Party{Number: "+79161234567"}
	ext701   = event.Party{Extension: "701"}
	nobody   = event.Party{}
)

func TestTranslate(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []summary
	}{
		{"INCOMING to an agent, DID in diversion", leg + "type=INCOMING&direction=in&user=ivanov%40x.megapbx.ru&ext=701&diversion=84951234567",
			[]summary{{"call.ringing", "C1", "inbound", customer, ext701, "+74951234567", "701", "", "", -1, "", ""}}},
		{"INCOMING without direction is inbound", leg + "type=INCOMING&user=ivanov",
			[]summary{{"call.ringing", "C1", "inbound", customer, nobody, "", "ivanov", "", "", -1, "", ""}}},
		{"type is case-insensitive", leg + "type=incoming&user=ivanov",
			[]summary{{"call.ringing", "C1", "inbound", customer, nobody, "", "ivanov", "", "", -1, "", ""}}},
		{"OUTGOING without direction is outbound", leg + "type=OUTGOING&ext=701",
			[]summary{{"call.ringing", "C1", "outbound", ext701, customer, "", "701", "", "", -1, "", ""}}},
		{"direction wins over the type", leg + "type=INCOMING&direction=out&ext=701",
			[]summary{{"call.ringing", "C1", "outbound", ext701, customer, "", "701", "", "", -1, "", ""}}},
		{"ACCEPTED: agent is the login without ext", leg + "type=ACCEPTED&user=telefon771%40dupad.megapbx.ru",
			[]summary{{"call.answered", "C1", "unknown", customer, nobody, "", "telefon771@dupad.megapbx.ru", "", "", -1, "", ""}}},
		{"ACCEPTED: ext before the login", leg + "type=ACCEPTED&direction=in&user=ivanov&ext=701",
			[]summary{{"call.answered", "C1", "inbound", customer, ext701, "", "701", "", "", -1, "", ""}}},
		{"COMPLETED is a leg's end", leg + "type=COMPLETED&direction=in&ext=701",
			[]summary{{"call.leg_ended", "C1", "inbound", customer, ext701, "", "701", "completed", "", -1, "", ""}}},
		{"CANCELLED is a leg's end, not a missed call", leg + "type=CANCELLED&user=admin",
			[]summary{{"call.leg_ended", "C1", "unknown", customer, nobody, "", "admin", "cancelled", "", -1, "", ""}}},
		{"TRANSFERRED ends the leg", leg + "type=TRANSFERRED&second_callid=C2&user=operator-a&direction=in",
			[]summary{{"call.leg_ended", "C1", "inbound", customer, nobody, "", "operator-a", "transferred", "", -1, "", ""}}},
		{"a status on an event is ignored", leg + "type=INCOMING&direction=in&status=Busy",
			[]summary{{"call.ringing", "C1", "inbound", customer, nobody, "", "", "", "", -1, "", ""}}},
		{"SIP name stays as sent", "crm_token=T&cmd=event&callid=C1&type=INCOMING&phone=sip%3Aa%40b",
			[]summary{{"call.ringing", "C1", "inbound", event.Party{Number: "sip:a@b"}, nobody, "", "", "", "", -1, "", ""}}},

		{"history: answered inbound with a recording", history + "type=in&ext=701&diversion=74951234567&duration=50&status=Success&link=https%3A%2F%2Fh%2Fr.mp3%3Fa%3D1%26b%3D2",
			[]summary{
				{"call.completed", "C1", "inbound", customer, ext701, "+74951234567", "701", "completed", "answered", 50, "https://h/r.mp3?a=1&b=2", ""},
				{"recording.ready", "C1", "inbound", customer, ext701, "+74951234567", "701", "", "", -1, "https://h/r.mp3?a=1&b=2", ""},
			}},
		{"history: outbound busy", history + "type=out&ext=701&user=admin&duration=0&status=Busy",
			[]summary{{"call.completed", "C1", "outbound", ext701, customer, "", "701", "busy", "busy", 0, "", ""}}},
		{"history: a javascript: link is dropped and said", history + "type=in&duration=5&status=Success&link=javascript%3Aalert(1)",
			[]summary{{"call.completed", "C1", "inbound", customer, nobody, "", "", "completed", "answered", 5, "", `link dropped: scheme "javascript" is not http or https`}}},
		{"history: an empty link is no recording", history + "type=in&duration=5&status=Success&link=",
			[]summary{{"call.completed", "C1", "inbound", customer, nobody, "", "", "completed", "answered", 5, "", ""}}},

		{"unknown event type", leg + "type=PARKED&user=a",
			[]summary{{"pbx.unmapped", "C1", "unknown", nobody, nobody, "", "", "", "", -1, "", `unknown event type "PARKED"`}}},
		{"event without type", leg + "user=a",
			[]summary{{"pbx.unmapped", "C1", "unknown", nobody, nobody, "", "", "", "", -1, "", `unknown event type ""`}}},
		{"event without callid", "crm_token=T&cmd=event&type=INCOMING&phone=79161234567",
			[]summary{{"pbx.unmapped", "", "unknown", nobody, nobody, "", "", "", "", -1, "", "cmd=event without callid"}}},
		{"rating", "crm_token=T&cmd=rating&callid=C1&rating=4&phone=79161234567",
			[]summary{{"pbx.unmapped", "C1", "unknown", nobody, nobody, "", "", "", "", -1, "", "cmd=rating (the caller's rating of the call) has no canonical event; see raw"}}},
		{"contact is not an event", "crm_token=T&cmd=contact&callid=C1&phone=79161234567",
			[]summary{{"pbx.unmapped", "C1", "unknown", nobody, nobody, "", "", "", "", -1, "", "cmd=contact is a synchronous lookup, answered directly and never queued"}}},
		{"unknown cmd", "crm_token=T&cmd=subscribeOnCalls",
			[]summary{{"pbx.unmapped", "", "unknown", nobody, nobody, "", "", "", "", -1, "", `unknown cmd "subscribeoncalls"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarise(translateForm(t, tt.body))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestHistoryResult(t *testing.T) {
	tests := []struct {
		status, duration, typ string
		result, reason        string
	}{
		{"Success", "50", "in", "answered", "completed"},
		{"SUCCESS", "50", "out", "answered", "completed"},
		{"Success", "0", "in", "missed", "completed"}, // lasted 0 s in all: nobody talked
		{"Success", "", "in", "answered", "completed"},
		{"missed", "20", "in", "missed", "no_answer"},
		{"Missed", "20", "out", "missed", "no_answer"},
		{"Cancel", "3", "in", "missed", "caller_hangup"},
		{"Cancel", "3", "", "missed", "caller_hangup"},
		{"Cancel", "3", "out", "cancelled", "caller_hangup"},
		{"Busy", "0", "out", "busy", "busy"},
		{"NotAvailable", "0", "in", "missed", "unavailable"},
		{"notallowed", "0", "out", "failed", "blocked"},
		{"NotFound", "0", "out", "failed", "wrong_number"},
		{"callAerror", "0", "out", "failed", "failed"},
		{"SomethingNew", "20", "in", "missed", "unknown"}, // kept in raw
		{"", "20", "in", "missed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.status+"/"+tt.duration+"/"+tt.typ, func(t *testing.T) {
			ev := translateForm(t, history+"type="+tt.typ+"&status="+tt.status+"&duration="+tt.duration)[0]
			if d := ev.Data; d.Result != tt.result || d.Reason != tt.reason {
				t.Errorf("result, reason = %q, %q; want %q, %q", d.Result, d.Reason, tt.result, tt.reason)
			}
			if !strings.Contains(string(ev.Data.Raw), `"status":"`+tt.status+`"`) {
				t.Errorf("raw %s lacks the status", ev.Data.Raw)
			}
		})
	}
}

// history's start is its only time: the call's events are placed by it, not by arrival.
func TestHistoryTimes(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 10, 0, 0, time.UTC)
	ptr := func(t time.Time) *time.Time { return &t }
	tests := []struct {
		name, fields   string
		started, ended *time.Time
		occurred       time.Time
		durationS      int64 // -1: absent
	}{
		{"start and duration", "start=20261125T101000Z&duration=50", ptr(start), ptr(start.Add(50 * time.Second)), start.Add(50 * time.Second), 50},
		{"start without duration", "start=20261125T101000Z", ptr(start), nil, testReceived, -1},
		{"duration without start", "duration=50", nil, nil, testReceived, 50},
		{"start not in the layout", "start=2026-11-25T10:10:00Z&duration=50", nil, nil, testReceived, 50},
		{"start before 2000", "start=19991231T235959Z&duration=50", nil, nil, testReceived, 50},
		{"start after 2099", "start=21000101T000000Z&duration=50", nil, nil, testReceived, 50},
		{"latest start, longest call", "start=20991231T235959Z&duration=2592000", ptr(time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)),
			ptr(time.Date(2100, 1, 30, 23, 59, 59, 0, time.UTC)), time.Date(2100, 1, 30, 23, 59, 59, 0, time.UTC), 2592000},
		{"negative duration", "start=20261125T101000Z&duration=-5", ptr(start), nil, testReceived, -1},
		{"duration over 30 days", "start=20261125T101000Z&duration=2592001", ptr(start), nil, testReceived, -1},
		{"fractional duration", "start=20261125T101000Z&duration=5.5", ptr(start), nil, testReceived, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := translateForm(t, "crm_token=T&cmd=history&callid=C1&type=in&status=Success&"+tt.fields)[0].Data
			if !reflect.DeepEqual(d.StartedAt, tt.started) || !reflect.DeepEqual(d.EndedAt, tt.ended) || !d.OccurredAt.Equal(tt.occurred) {
				t.Errorf("started %v ended %v occurred %v; want %v %v %v", d.StartedAt, d.EndedAt, d.OccurredAt, tt.started, tt.ended, tt.occurred)
			}
			if got := summarise([]event.Event{{Data: d}})[0].DurationS; got != tt.durationS {
				t.Errorf("duration_s %d, want %d", got, tt.durationS)
			}
		})
	}
}

func TestEventIDs(t *testing.T) {
	id := func(body string) string { return translateForm(t, body)[0].ID }
	plus := string(pbxtest.ReadFile(t, fixtureDir+"/40-megafon-event-incoming-plus-phone.form"))
	if id(plus) != id(string(pbxtest.ReadFile(t, fixtureDir+"/41-megafon-event-incoming-reordered-duplicate.form"))) {
		t.Error("fixture 41 (40 re-ordered) is not a duplicate")
	}
	pairs := strings.Split(leg+"type=INCOMING&direction=in&user=a&ext=701&diversion=74951234567&groupRealName=x", "&")
	first := id(strings.Join(pairs, "&"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		if again := id(strings.Join(pairs, "&")); again != first {
			t.Fatalf("re-ordered %q: id %s, want %s", pairs, again, first)
		}
	}
	same := map[string][2]string{
		"8-, 7- and +7-prefixed phone":  {leg + "type=INCOMING&user=a", "crm_token=T&cmd=event&callid=C1&phone=%2B79161234567&type=INCOMING&user=a"},
		"a rotated crm_token":           {leg + "type=INCOMING&user=a", strings.Replace(leg, "crm_token=T", "crm_token=U", 1) + "type=INCOMING&user=a"},
		"case and spaces of cmd, type":  {leg + "type=INCOMING&user=a", strings.Replace(leg, "cmd=event", "cmd=Event", 1) + "type=+incoming+&user=a"},
		"fields not in the identity":    {leg + "type=INCOMING&user=a", leg + "type=INCOMING&user=a&direction=in&diversion=1&z-flag=1&groupRealName=x"},
		"history replayed with changes": {history + "type=in&duration=50&status=Success", history + "type=in&duration=52&status=Success&link=https%3A%2F%2Fh%2Fr"},
	}
	for name, p := range same {
		if id(p[0]) != id(p[1]) {
			t.Errorf("%s: different ids", name)
		}
	}
	different := map[string][2]string{
		"two agents ringing":      {leg + "type=INCOMING&user=a", leg + "type=INCOMING&user=b"},
		"two extensions":          {leg + "type=INCOMING&ext=701", leg + "type=INCOMING&ext=702"},
		"ringing and answered":    {leg + "type=INCOMING&user=a", leg + "type=ACCEPTED&user=a"},
		"completed and cancelled": {leg + "type=COMPLETED&user=a", leg + "type=CANCELLED&user=a"},
		"two calls":               {leg + "type=INCOMING&user=a", strings.Replace(leg, "C1", "C2", 1) + "type=INCOMING&user=a"},
		"two phones":              {leg + "type=INCOMING&user=a", strings.Replace(leg, "89161234567", "89161234568", 1) + "type=INCOMING&user=a"},
		"transfers to two legs":   {leg + "type=TRANSFERRED&user=a&second_callid=C2", leg + "type=TRANSFERRED&user=a&second_callid=C3"},
		"two ratings":             {"crm_token=T&cmd=rating&callid=C1&rating=4", "crm_token=T&cmd=rating&callid=C1&rating=5"},
		"a leg and the history":   {leg + "type=COMPLETED", history},
	}
	for name, p := range different {
		if id(p[0]) == id(p[1]) {
			t.Errorf("%s: same id", name)
		}
	}
	rec := translateForm(t, history+"duration=5&status=Success&link=https%3A%2F%2Fh%2Fr")
	if len(rec) != 2 || rec[0].ID == rec[1].ID {
		t.Errorf("history and its recording must have distinct ids: %+v", rec)
	}
}

// A history without callid (optional in the doc) gets a call id made up from the record, the
// same for a replay with other values, and marked derived.
func TestHistoryWithoutCallID(t *testing.T) {
	const body = "crm_token=T&cmd=history&type=in&user=a&ext=701&phone=79161234567&start=20261125T101000Z&status=Success&"
	first := translateForm(t, body+"duration=50&link=https%3A%2F%2Fh%2Fr")
	replay := translateForm(t, body+"duration=52")
	other := translateForm(t, strings.Replace(body, "101000Z", "101500Z", 1)+"duration=50")
	callID := first[0].Data.CallID
	switch {
	case !strings.HasPrefix(callID, "derived-") || len(callID) != len("derived-")+32:
		t.Errorf("call id %q", callID)
	case first[0].Data.Correlation != CorrelationDerived || first[1].Data.Correlation != CorrelationDerived:
		t.Errorf("correlation %q %q", first[0].Data.Correlation, first[1].Data.Correlation)
	case replay[0].Data.CallID != callID || replay[0].ID != first[0].ID:
		t.Error("the replay is another call")
	case other[0].Data.CallID == callID:
		t.Error("a call started at another time has the same call id")
	}
	if translateForm(t, history+"duration=5")[0].Data.Correlation != "" {
		t.Error("a PBX-sent callid is marked")
	}
}

// Secrets never reach raw, and do not change the id.
func TestRawWithoutSecrets(t *testing.T) {
	for _, body := range []string{
		leg + "type=INCOMING&user=a&token=SECRET-2",
		history + "duration=5&token=SECRET-2",
		"crm_token=T&cmd=rating&callid=C1&token=SECRET-2",
	} {
		body = strings.Replace(body, "crm_token=T", "crm_token=SECRET-1", 1)
		ev := translateForm(t, body)[0]
		var raw map[string]string
		if err := json.Unmarshal(ev.Data.Raw, &raw); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ev.Data.Raw), "SECRET") || raw["callid"] != "C1" {
			t.Errorf("raw %s", ev.Data.Raw)
		}
		plain := strings.NewReplacer("crm_token=SECRET-1", "crm_token=T", "&token=SECRET-2", "").Replace(body)
		if ev.ID != translateForm(t, plain)[0].ID {
			t.Errorf("%s: secrets changed the id", body)
		}
	}
}

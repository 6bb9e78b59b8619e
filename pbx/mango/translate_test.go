package mango

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

// tr translates one message, which must yield exactly one schema-valid event.
func tr(t *testing.T, suffix, payload string) event.Event {
	t.Helper()
	evs := Translate(testSrc, suffix, []byte(payload), testReceived)
	if len(evs) != 1 {
		t.Fatalf("Translate(%s, %s) yields %d events, want 1", suffix, payload, len(evs))
	}
	checkEvents(t, evs)
	return evs[0]
}

// mapped translates a message that must map to typ.
func mapped(t *testing.T, suffix, payload, typ string) event.Event {
	t.Helper()
	ev := tr(t, suffix, payload)
	if ev.Type != typ {
		t.Fatalf("Translate(%s, %s) = %s (error %q), want %s", suffix, payload, ev.Type, ev.Data.Error, typ)
	}
	return ev
}

// leg is an /events/call payload with the given extra members.
func leg(state string, extra ...string) string {
	return `{"entry_id":"E1","call_id":"L1","timestamp":1764065705,"seq":3,"call_state":"` + state + `"` +
		prefixed(extra) + `}`
}

// summaryOf is an /events/summary payload with the given extra members.
func summaryOf(extra ...string) string {
	return `{"entry_id":"E1"` + prefixed(extra) + `}`
}

func prefixed(members []string) string {
	if len(members) == 0 {
		return ""
	}
	return "," + strings.Join(members, ",")
}

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		code int64
		want string
	}{
		{0, ""},
		{1000, event.ReasonCompleted},
		{1001, event.ReasonCompleted},
		{1090, event.ReasonCompleted}, // docs/mango.md, Result codes
		{1100, event.ReasonCompleted},
		{1110, event.ReasonCallerHangup},
		{1111, event.ReasonNoAnswer},
		{1120, event.ReasonCalleeHangup},
		{1121, event.ReasonBusy},
		{1122, event.ReasonRejected},
		{1123, event.ReasonDND},
		{1124, event.ReasonDND},
		{1125, event.ReasonCancelled},
		{1126, event.ReasonCalleeHangup}, // unknown: read as 1120
		{1131, event.ReasonUnavailable},
		{1132, event.ReasonUnavailable},
		{1133, event.ReasonWrongNumber},
		{1134, event.ReasonFailed},
		{1135, event.ReasonBlocked},
		{1140, event.ReasonBlocked},
		{1151, event.ReasonBlocked},
		{1162, event.ReasonFailed},
		{1163, event.ReasonNoAnswer},
		{1164, event.ReasonUnavailable},
		{1170, event.ReasonCompleted},
		{1171, event.ReasonFailed},
		{1181, event.ReasonCommand},
		{1182, event.ReasonPickedUpElsewhere},
		{1183, event.ReasonForwarded},
		{1191, event.ReasonUnavailable},
		{1193, event.ReasonBusy},
		{1199, event.ReasonUnavailable}, // 1190
		{1210, event.ReasonFailed},
		{1300, event.ReasonCompleted},
		{1312, event.ReasonAnsweringMachine},
		{1450, event.ReasonCompleted}, // unknown 1xxx: read as 1000
		{2110, event.ReasonBilling},
		{2219, event.ReasonBilling}, // docs/mango.md, Result codes
		{2240, event.ReasonBilling},
		{3102, event.ReasonFailed},
		{3200, event.ReasonWrongNumber},
		{3330, event.ReasonFailed},
		{4001, event.ReasonFailed},
		{4101, event.ReasonFailed},
		{4200, event.ReasonUnavailable},
		{4290, event.ReasonOverload},
		{4393, event.ReasonFailed},
		{4502, event.ReasonBlocked},
		{5001, event.ReasonOverload},
		{5003, event.ReasonFailed},
		{5008, event.ReasonOverload},
		{5011, event.ReasonFailed},
		{6001, event.ReasonUnknown},
		{999, event.ReasonUnknown},
		{12000, event.ReasonUnknown},
		{9223372036854775807, event.ReasonUnknown},
	} {
		if got := reason(tt.code); got != tt.want {
			t.Errorf("reason(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
	for code, r := range reasons {
		if !slices.Contains(event.Reasons, r) {
			t.Errorf("reasons[%d] = %q is not in the vocabulary", code, r)
		}
	}
}

// Each result class, through a whole summary.
func TestSummaryResult(t *testing.T) {
	const answered = `"talk_time":1764065710`
	for _, tt := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"talk_time set", []string{answered, `"disconnect_reason":1100`}, event.ResultAnswered},
		{"talk_time set, busy code", []string{answered, `"disconnect_reason":1121`}, event.ResultAnswered},
		{"talk_time set, entry_result 0", []string{answered, `"entry_result":0`}, event.ResultAnswered},
		{"talk_time 0, entry_result 1", []string{`"talk_time":0`, `"entry_result":1`, `"disconnect_reason":1170`}, event.ResultMissed},
		{"talk_time quoted 0", []string{`"talk_time":"0"`, `"entry_result":"1"`, `"disconnect_reason":1100`}, event.ResultMissed},
		{"busy", []string{`"disconnect_reason":1121`}, event.ResultBusy},
		{"busy auto-reject", []string{`"disconnect_reason":1193`}, event.ResultBusy},
		{"caller hung up, direction unknown", []string{`"disconnect_reason":1110`}, event.ResultMissed},
		{"outbound, our employee hung up", []string{`"call_direction":2`, `"disconnect_reason":1110`}, event.ResultCancelled},
		{"inbound caller hung up before an answer", []string{`"call_direction":1`, `"disconnect_reason":1110`}, event.ResultMissed},
		{"task stopped", []string{`"call_direction":2`, `"disconnect_reason":1125`}, event.ResultCancelled},
		{"our hangup", []string{`"call_direction":2`, `"disconnect_reason":"1181"`}, event.ResultCancelled},
		{"internal, the caller hung up", []string{`"call_direction":0`, `"disconnect_reason":1110`}, event.ResultCancelled},
		{"normal end", []string{`"disconnect_reason":1100`}, event.ResultMissed},
		{"no answer", []string{`"disconnect_reason":1111`}, event.ResultMissed},
		{"callee ended", []string{`"disconnect_reason":1120`}, event.ResultMissed},
		{"rejected", []string{`"disconnect_reason":1122`}, event.ResultMissed},
		{"dnd", []string{`"disconnect_reason":1123`}, event.ResultMissed},
		{"operators unavailable", []string{`"disconnect_reason":1164`}, event.ResultMissed},
		{"picked up elsewhere", []string{`"disconnect_reason":1182`}, event.ResultMissed},
		{"unknown class", []string{`"disconnect_reason":6001`}, event.ResultMissed},
		{"no reason", nil, event.ResultMissed},
		{"group call failed", []string{`"disconnect_reason":1160`}, event.ResultFailed},
		{"wrong number", []string{`"disconnect_reason":3200`}, event.ResultFailed},
		{"blocked", []string{`"disconnect_reason":1140`}, event.ResultFailed},
		{"billing", []string{`"disconnect_reason":2240`}, event.ResultFailed},
		{"overload", []string{`"disconnect_reason":5001`}, event.ResultFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapped(t, "events/summary", summaryOf(tt.extra...), event.TypeCompleted)
			if ev.Data.Result != tt.want {
				t.Errorf("result %q (reason %q), want %q", ev.Data.Result, ev.Data.Reason, tt.want)
			}
		})
	}
}

func TestSummaryTimes(t *testing.T) {
	ts := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	n := func(v int64) *int64 { return &v }
	type times struct {
		started, answered, ended *time.Time
		duration, talk           *int64
		occurred                 time.Time
	}
	for _, tt := range []struct {
		name  string
		extra []string
		want  times
	}{
		{"answered", []string{`"create_time":1399906976`, `"talk_time":1399906980`, `"end_time":1399906990`},
			times{ts("2014-05-12T15:02:56Z"), ts("2014-05-12T15:03:00Z"), ts("2014-05-12T15:03:10Z"), n(14), n(10), *ts("2014-05-12T15:03:10Z")}},
		{"quoted", []string{`"create_time":"1399906976"`, `"talk_time":"1399906980"`, `"end_time":"1399906990"`},
			times{ts("2014-05-12T15:02:56Z"), ts("2014-05-12T15:03:00Z"), ts("2014-05-12T15:03:10Z"), n(14), n(10), *ts("2014-05-12T15:03:10Z")}},
		{"not answered: never a 1970 date", []string{`"create_time":1399906976`, `"talk_time":0`, `"end_time":1399906990`},
			times{ts("2014-05-12T15:02:56Z"), nil, ts("2014-05-12T15:03:10Z"), n(14), n(0), *ts("2014-05-12T15:03:10Z")}},
		{"no end: occurred when received", []string{`"create_time":1399906976`, `"talk_time":1399906980`, `"end_time":0`},
			times{ts("2014-05-12T15:02:56Z"), ts("2014-05-12T15:03:00Z"), nil, nil, nil, testReceived}},
		{"nothing", nil, times{nil, nil, nil, nil, n(0), testReceived}},
		{"end before create", []string{`"create_time":1399906990`, `"talk_time":1399906995`, `"end_time":1399906976`},
			times{ts("2014-05-12T15:03:10Z"), ts("2014-05-12T15:03:15Z"), ts("2014-05-12T15:02:56Z"), nil, nil, *ts("2014-05-12T15:02:56Z")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapped(t, "events/summary", summaryOf(tt.extra...), event.TypeCompleted)
			d := ev.Data
			got := times{d.StartedAt, d.AnsweredAt, d.EndedAt, d.DurationS, d.TalkS, d.OccurredAt}
			eqT := func(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }
			eqN := func(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
			if !eqT(got.started, tt.want.started) || !eqT(got.answered, tt.want.answered) || !eqT(got.ended, tt.want.ended) ||
				!eqN(got.duration, tt.want.duration) || !eqN(got.talk, tt.want.talk) || !got.occurred.Equal(tt.want.occurred) ||
				!ev.Time.Equal(tt.want.occurred) {
				b, _ := json.Marshal(d)
				t.Errorf("got %s", b)
			}
			if b, _ := json.Marshal(ev); strings.Contains(string(b), "1970") {
				t.Errorf("a 1970 date: %s", b)
			}
		})
	}
}

func TestSummaryDirection(t *testing.T) {
	for _, tt := range []struct{ member, want string }{
		{`"call_direction":0`, event.DirectionInternal},
		{`"call_direction":1`, event.DirectionInbound},
		{`"call_direction":2`, event.DirectionOutbound},
		{`"call_direction":"2"`, event.DirectionOutbound},
		{`"call_direction":"0"`, event.DirectionInternal},
		{`"call_direction":7`, event.DirectionUnknown},
		{`"call_direction":null`, event.DirectionUnknown},
		{`"call_direction":""`, event.DirectionUnknown},
		{`"x":1`, event.DirectionUnknown},
	} {
		ev := mapped(t, "events/summary", summaryOf(tt.member), event.TypeCompleted)
		if ev.Data.Direction != tt.want {
			t.Errorf("%s: direction %q, want %q", tt.member, ev.Data.Direction, tt.want)
		}
	}
}

func TestLegDirectionAndAgent(t *testing.T) {
	for _, tt := range []struct {
		name             string
		extra            []string
		direction, agent string
	}{
		{"employee calls out", []string{`"from":{"extension":"101"}`, `"to":{"number":"74951234567"}`}, event.DirectionOutbound, "101"},
		{"customer calls an employee", []string{`"from":{"number":"79001234567"}`, `"to":{"extension":"101"}`}, event.DirectionInbound, "101"},
		{"customer calls a group", []string{`"from":{"number":"79001234567"}`, `"to":{"acd_group":"303"}`}, event.DirectionInbound, ""},
		{"customer in the IVR", []string{`"location":"ivr"`, `"from":{"number":"79001234567"}`, `"to":{"number":"74951234567"}`}, event.DirectionInbound, ""},
		{"customer in an IVR sub-menu", []string{`"location":"ivr.2.1"`, `"from":{"number":"79001234567"}`}, event.DirectionInbound, ""},
		{"customer in the queue", []string{`"location":"queue"`, `"from":{"number":"79001234567"}`}, event.DirectionInbound, ""},
		{"came in on a line", []string{`"from":{"number":"79001234567"}`, `"to":{"line_number":"74951234567"}`}, event.DirectionInbound, ""},
		{"employee calls employee", []string{`"from":{"extension":"101"}`, `"to":{"extension":"102"}`}, event.DirectionInternal, "102"},
		{"click-to-call leg 1 rings our employee", []string{`"from":{"extension":"5555","number":"74955404444"}`, `"to":{"extension":"1234"}`, `"command_id":"c1"`}, event.DirectionOutbound, "1234"},
		{"PBX callback to a missed caller", []string{`"from":{"number":"79001234567"}`, `"to":{"extension":"101"}`, `"callback_initiator":"MissGroupСallCallback"`}, event.DirectionOutbound, "101"},
		{"nobody known", []string{`"from":{"number":"79001234567"}`, `"to":{"number":"74951234567"}`}, event.DirectionUnknown, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapped(t, "events/call", leg("Appeared", tt.extra...), event.TypeRinging)
			if ev.Data.Direction != tt.direction || ev.Data.Agent != tt.agent {
				t.Errorf("direction %q agent %q, want %q %q", ev.Data.Direction, ev.Data.Agent, tt.direction, tt.agent)
			}
		})
	}
}

// Whole calls, leg by leg, as Mango sends them (seq and timestamps as strings, SIP URIs,
// command_id on every leg a command created): every state of a leg has the leg's direction.
func TestCommandLegDirection(t *testing.T) {
	states := []string{"Appeared", "Connected", "Disconnected"}
	for _, tt := range []struct {
		name, payload string // payload has %STATE% for call_state
		direction     string
	}{
		{"routed call: the IVR leg", `{"entry_id":"RW50cnkx","call_id":"MTpJVlI6MQ==","timestamp":"1764065700","seq":"1","call_state":"%STATE%","location":"ivr",` +
			`"from":{"number":"79161234567"},"to":{"number":"sip:ivr@vpbx400000000.mangosip.ru","line_number":"74951234567"},"disconnect_reason":"1100"}`, event.DirectionInbound},
		{"routed call: commands/route to extension 123", `{"entry_id":"RW50cnkx","call_id":"MTpFTVA6Mg==","timestamp":"1764065705","seq":"1","call_state":"%STATE%","location":"abonent",` +
			`"from":{"number":"79161234567","taken_from_call_id":"MTpJVlI6MQ=="},"to":{"extension":"123","number":"sip:user123@vpbx400000000.mangosip.ru","line_number":"74951234567"},` +
			`"command_id":"route-7f3a","disconnect_reason":"1110"}`, event.DirectionInbound},
		{"routed call without taken_from_call_id, on its line", `{"entry_id":"RW50cnkx","call_id":"MTpFTVA6Mg==","timestamp":"1764065705","seq":"2","call_state":"%STATE%","location":"abonent",` +
			`"from":{"number":"79161234567"},"to":{"extension":"123","line_number":"sip:line00000@tech.mangosip.ru"},"command_id":"route-7f3a"}`, event.DirectionInbound},
		{"inbound call transferred by commands/transfer", `{"entry_id":"RW50cnkx","call_id":"MTpFTVA6Mw==","timestamp":"1764065710","seq":"1","call_state":"%STATE%","location":"abonent",` +
			`"from":{"number":"79161234567","taken_from_call_id":"MTpFTVA6Mg=="},"to":{"extension":"124"},"command_id":"transfer-1","transfer":"blind"}`, event.DirectionInbound},
		{"click-to-call leg 1 rings the employee", `{"entry_id":"Q2xpY2sx","call_id":"100:500:251","timestamp":"1764065720","seq":"1","call_state":"%STATE%","location":"abonent",` +
			`"from":{"number":"74955404444"},"to":{"extension":"1234","number":"sip:user1234@vpbx400000000.mangosip.ru"},"command_id":"cmd.2.vpbx.12345.external.system.com.net"}`, event.DirectionOutbound},
		{"click-to-call leg 2 calls the customer", `{"entry_id":"Q2xpY2sx","call_id":"100:500:252","timestamp":"1764065725","seq":"1","call_state":"%STATE%","location":"abonent",` +
			`"from":{"extension":"1234","number":"sip:user1234@vpbx400000000.mangosip.ru","taken_from_call_id":"100:500:251"},"to":{"number":"74955404444"},` +
			`"command_id":"cmd.2.vpbx.12345.external.system.com.net"}`, event.DirectionOutbound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, state := range states {
				ev := tr(t, "events/call", strings.ReplaceAll(tt.payload, "%STATE%", state))
				if ev.Data.Direction != tt.direction {
					t.Errorf("%s %s: direction %q, want %q", state, ev.Type, ev.Data.Direction, tt.direction)
				}
			}
		})
	}
}

func TestCallStates(t *testing.T) {
	for state, typ := range map[string]string{
		"Appeared": event.TypeRinging, "Connected": event.TypeAnswered,
		"OnHold": event.TypeHeld, "Disconnected": event.TypeLegEnded,
		"connected": event.TypeAnswered, " ONHOLD ": event.TypeHeld,
	} {
		ev := mapped(t, "events/call", leg(state), typ)
		d := ev.Data
		if d.CallID != "E1" || d.LegID != "L1" || d.Seq != 3 || ev.Subject != "E1" ||
			!d.OccurredAt.Equal(time.Unix(1764065705, 0)) || !ev.Time.Equal(d.OccurredAt) {
			t.Errorf("%s: %+v", state, d)
		}
	}
}

// Each quirk of docs/mango.md (Lenient fields) on /events/call, with what it must come out as.
func TestCallQuirks(t *testing.T) {
	for _, tt := range []struct {
		name  string
		state string
		extra []string
		check func(d event.Data) bool
	}{
		{"number sent for extension", "Appeared", []string{`"to":{"extension":101}`},
			func(d event.Data) bool { return d.To.Extension == "101" && d.Agent == "101" }},
		{"number sent for acd_group", "Appeared", []string{`"to":{"acd_group":303}`},
			func(d event.Data) bool { return d.To.Group == "303" }},
		{"number sent for number", "Appeared", []string{`"from":{"number":79001234567}`},
			func(d event.Data) bool { return d.From.Number == "+79001234567" }},
		{"phone numbers to E.164", "Appeared", []string{`"from":{"number":"89001234567"}`, `"to":{"line_number":"74951234567"}`},
			func(d event.Data) bool { return d.From.Number == "+79001234567" && d.Line == "+74951234567" }},
		{"SIP URIs kept", "Appeared", []string{`"to":{"number":"sip:user3@vpbx400210093.mangosip.ru","line_number":"sip:line00000@tech.mangosip.ru"}`},
			func(d event.Data) bool {
				return d.To.Number == "sip:user3@vpbx400210093.mangosip.ru" && d.Line == "sip:line00000@tech.mangosip.ru"
			}},
		{"SIP URI with Cyrillic host kept", "Appeared", []string{`"from":{"number":"sip:user1@хyz.mangosip.ru"}`},
			func(d event.Data) bool { return d.From.Number == "sip:user1@хyz.mangosip.ru" }},
		{"missing location", "Appeared", nil,
			func(d event.Data) bool { return d.Location == "" }},
		{"locaton typo", "Appeared", []string{`"locaton":"queue"`},
			func(d event.Data) bool { return d.Location == "queue" }},
		{"location wins over the typo", "Appeared", []string{`"locaton":"queue"`, `"location":"abonent"`},
			func(d event.Data) bool { return d.Location == "abonent" }},
		{"to: {}", "Appeared", []string{`"to":{}`},
			func(d event.Data) bool { return d.To == event.Party{} }},
		{"to: [] (PHP's empty object)", "Appeared", []string{`"to":[]`},
			func(d event.Data) bool { return d.To == event.Party{} }},
		{"to: null", "Appeared", []string{`"to":null`},
			func(d event.Data) bool { return d.To == event.Party{} }},
		{"disconnect_reason on Appeared ignored", "Appeared", []string{`"disconnect_reason":1121`},
			func(d event.Data) bool { return d.Reason == "" && d.ReasonCode == 0 }},
		{"disconnect_reason of any shape on Appeared ignored", "Appeared", []string{`"disconnect_reason":{"x":1}`},
			func(d event.Data) bool { return d.Reason == "" }},
		{"disconnect_reason as string", "Disconnected", []string{`"disconnect_reason":"1120"`},
			func(d event.Data) bool {
				return d.Reason == event.ReasonCalleeHangup && d.ReasonCode == 1120
			}},
		{"disconnect_reason as number", "Disconnected", []string{`"disconnect_reason":1121`},
			func(d event.Data) bool { return d.Reason == event.ReasonBusy && d.ReasonCode == 1121 }},
		{"Disconnected without a reason", "Disconnected", nil,
			func(d event.Data) bool { return d.Reason == "" && d.ReasonCode == 0 }},
		{"was_transferred", "Disconnected", []string{`"disconnect_reason":1110`, `"from":{"was_transferred":true}`},
			func(d event.Data) bool {
				return d.Reason == event.ReasonTransferred && d.ReasonCode == 1110
			}},
		{"was_transfered (Vodovoz spelling)", "Disconnected", []string{`"disconnect_reason":1120`, `"to":{"was_transfered":"true"}`},
			func(d event.Data) bool {
				return d.Reason == event.ReasonTransferred && d.ReasonCode == 1120
			}},
		{"was_transferred false", "Disconnected", []string{`"disconnect_reason":1120`, `"to":{"was_transferred":false,"was_transfered":0}`},
			func(d event.Data) bool { return d.Reason == event.ReasonCalleeHangup }},
		{"hold_initiator bool", "OnHold", []string{`"from":{"number":"79001234567","hold_initiator":false}`, `"to":{"extension":"333","hold_initiator":true}`},
			func(d event.Data) bool { return d.Agent == "333" }},
		{"hold_initiator string", "OnHold", []string{`"to":{"extension":"333","hold_initiator":"true"}`},
			func(d event.Data) bool { return d.Agent == "333" }},
		{"taken_from_call_id", "Appeared", []string{`"from":{"number":"74955404444","taken_from_call_id":"300:200"}`},
			func(d event.Data) bool { return d.ParentLegID == "300:200" }},
		{"transfer (api v.2)", "Connected", []string{`"transfer":"blind"`},
			func(d event.Data) bool { return d.ParentLegID == "" }},
		{"sip_call_id as string", "Appeared", []string{`"sip_call_id":"a84b4c76e66710@pc33"`},
			func(d event.Data) bool { return d.SIPCallID == "a84b4c76e66710@pc33" }},
		{"sip_call_id as number", "Appeared", []string{`"sip_call_id":1234567890`},
			func(d event.Data) bool { return d.SIPCallID == "1234567890" }},
		{"dct without number", "Appeared", []string{`"dct":{"type":0}`},
			func(d event.Data) bool { return d.TrackingNumber == "" }},
		{"dct with number", "Appeared", []string{`"dct":{"number":"74951234567","type":1}`},
			func(d event.Data) bool { return d.TrackingNumber == "+74951234567" }},
		{"command_id", "Appeared", []string{`"command_id":"cmd.1"`},
			func(d event.Data) bool { return d.CommandID == "cmd.1" }},
		{"task_id as number", "Appeared", []string{`"task_id":42`},
			func(d event.Data) bool { return true }},
		{"unknown members ignored", "Appeared", []string{`"future":{"deep":[1,2]}`},
			func(d event.Data) bool { return true }},
		{"timestamp absent", "Appeared", []string{`"timestamp":null`},
			func(d event.Data) bool { return d.OccurredAt.Equal(testReceived) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapped(t, "events/call", leg(tt.state, tt.extra...), callStates[strings.ToLower(tt.state)])
			if !tt.check(ev.Data) {
				b, _ := json.Marshal(ev.Data)
				t.Errorf("got %s", b)
			}
		})
	}
}

func TestCallbackInitiator(t *testing.T) {
	for raw, want := range map[string]string{
		"":                      "",
		"CC":                    "contact_centre",
		"СС":                    "contact_centre", // Cyrillic, as in the document
		"СC":                    "contact_centre", // mixed
		"API":                   "api",
		"api":                   "api",
		"WEB":                   "web",
		"ObDial":                "campaign",
		"CallbackWidget":        "callback_widget",
		"MissGroupCallCallback": "missed_group_callback",
		"MissGroupСallCallback": "missed_group_callback", // Cyrillic С, as in the document
		"MissInIvrCallCallback": "missed_ivr_callback",
		" API ":                 "api",
		"Robot":                 "other",
	} {
		if got := initiator(raw); got != want {
			t.Errorf("initiator(%q) = %q, want %q", raw, got, want)
		}
		if raw != "" {
			payload := leg("Appeared", `"callback_initiator":`+mustJSON(t, raw))
			if ev := mapped(t, "events/call", payload, event.TypeRinging); ev.Data.Initiator != want {
				t.Errorf("event initiator %q, want %q", ev.Data.Initiator, want)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDTMF(t *testing.T) {
	ev := mapped(t, "events/dtmf", `{"seq":"2","dtmf":"124","timestamp":"1399906980","call_id":"L1","entry_id":"E1","location":"ivr.2","initiator":"79000000000","line_number":"74951234567"}`, event.TypeDTMF)
	d := ev.Data
	if d.DTMF != "124" || d.Seq != 2 || d.LegID != "L1" || d.CallID != "E1" || d.Location != "ivr.2" ||
		d.From.Number != "+79000000000" || d.Line != "+74951234567" || d.Direction != event.DirectionInbound {
		t.Errorf("got %+v", d)
	}
}

func TestRecording(t *testing.T) {
	const base = `"recording_id":"R1","seq":3,"call_id":"L1","entry_id":"E1","extension":"1342","timestamp":1399906990,"command_id":"c9"`
	for _, tt := range []struct {
		name, payload string
		ready         bool
	}{
		{"completed 1000", `{` + base + `,"recording_state":"Completed","completion_code":1000,"recipient":"Cloud"}`, true},
		{"completed \"1000\"", `{` + base + `,"recording_state":"Completed","completion_code":"1000"}`, true},
		{"completed, no code, recipient", `{` + base + `,"recording_state":"Completed","recipient":"CloudAndMail"}`, true},
		{"completed, no code, no recipient", `{` + base + `,"recording_state":"Completed"}`, false},
		{"too short", `{` + base + `,"recording_state":"Completed","completion_code":4002}`, false},
		{"account restricted", `{` + base + `,"recording_state":"Completed","completion_code":2210,"recipient":"Cloud"}`, false},
		{"started", `{` + base + `,"recording_state":"Started"}`, false},
		{"continued", `{` + base + `,"recording_state":"Continued"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := tr(t, "events/recording", tt.payload)
			if (ev.Type == event.TypeRecordingReady) != tt.ready {
				t.Fatalf("type %s (error %q), want ready=%v", ev.Type, ev.Data.Error, tt.ready)
			}
			d := ev.Data
			if tt.ready && (d.RecordingID != "R1" || d.CallID != "E1" || d.LegID != "L1" || d.Agent != "1342" || d.CommandID != "c9") {
				t.Errorf("got %+v", d)
			}
		})
	}
}

func TestCommandResult(t *testing.T) {
	for _, tt := range []struct {
		suffix, payload, command, reason string
		code                             int
	}{
		{"result/callback", `{"command_id":"c1","result":1000}`, "callback", event.ReasonCompleted, 1000},
		{"result/callback", `{"command_id":"c1","result":"1000"}`, "callback", event.ReasonCompleted, 1000},
		{"result/callback_group", `{"command_id":"c1","result":3100}`, "callback_group", event.ReasonFailed, 3100},
		{"result/call/hangup", `{"command_id":"c1","result":4101}`, "call/hangup", event.ReasonFailed, 4101},
		{"result/callback", `{"command_id":"c1","result":2240}`, "callback", event.ReasonBilling, 2240},
	} {
		ev := mapped(t, tt.suffix, tt.payload, event.TypeCommandResult)
		d := ev.Data
		if d.Command != tt.command || d.CommandID != "c1" || d.Reason != tt.reason || d.ReasonCode != tt.code ||
			d.CallID != "" || ev.Subject != "c1" || !d.OccurredAt.Equal(testReceived) {
			t.Errorf("%s %s: got %+v", tt.suffix, tt.payload, d)
		}
	}
}

func TestEventIDs(t *testing.T) {
	id := func(suffix, payload string) string { t.Helper(); return tr(t, suffix, payload).ID }
	office := id("events/call", leg("Appeared"))
	same := []struct{ name, a, b, suffixA, suffixB string }{
		{"re-send", leg("Appeared"), leg("Appeared"), "events/call", "events/call"},
		{"re-serialised", `{"entry_id":"E1","call_id":"L1","seq":3,"call_state":"Appeared"}`,
			"{\n \"call_state\": \"Appeared\", \"seq\": \"3\",\n \"call_id\": \"L1\", \"entry_id\": \"E1\", \"timestamp\": 1}", "events/call", "events/call"},
		{"recording: Completed and record/added", `{"recording_id":"R1","recording_state":"Completed","completion_code":1000,"seq":4,"entry_id":"E1","timestamp":1}`,
			`{"recording_id":"R1","entry_id":"E1","product_id":1,"user_id":-1,"timestamp":2}`, "events/recording", "events/record/added"},
		{"summary re-send", summaryOf(`"end_time":1`), summaryOf(`"end_time":2`), "events/summary", "events/summary"},
		{"result re-send", `{"command_id":"c1","result":1000}`, `{"command_id":"c1","result":"1000"}`, "result/callback", "result/callback"},
		{"unmapped re-send", `{"x":1}`, `{"x":1}`, "events/sms", "events/sms"},
		// The suffix is not signed: a body re-posted under another one is the same message.
		{"same command, other result path", `{"command_id":"c1","result":1000}`, `{"command_id":"c1","result":1000}`, "result/callback", "result/call/hangup"},
		{"unmapped, other suffix", `{"x":1}`, `{"x":1}`, "events/sms", "events/record/tagged"},
		{"unmapped, unknown path", `{"x":1}`, `{"x":1}`, "events/sms", "/hooks/mango/anything/x"},
	}
	for _, tt := range same {
		if a, b := id(tt.suffixA, tt.a), id(tt.suffixB, tt.b); a != b {
			t.Errorf("%s: ids %s and %s differ", tt.name, a, b)
		}
	}
	differ := []struct{ name, a, b, suffixA, suffixB string }{
		{"next seq", leg("Connected"), strings.Replace(leg("Connected"), `"seq":3`, `"seq":4`, 1), "events/call", "events/call"},
		{"same seq, other state", leg("Appeared"), leg("Disconnected"), "events/call", "events/call"},
		{"other leg", leg("Appeared"), strings.Replace(leg("Appeared"), `"L1"`, `"L2"`, 1), "events/call", "events/call"},
		{"call and dtmf of one seq", leg("Appeared"), `{"call_id":"L1","seq":3,"dtmf":"1"}`, "events/call", "events/dtmf"},
		{"other recording", `{"recording_id":"R1"}`, `{"recording_id":"R2"}`, "events/record/added", "events/record/added"},
		{"unmapped, other payload", `{"x":1}`, `{"x":2}`, "events/sms", "events/sms"},
	}
	for _, tt := range differ {
		if a, b := id(tt.suffixA, tt.a), id(tt.suffixB, tt.b); a == b {
			t.Errorf("%s: same id %s", tt.name, a)
		}
	}
	other := Translate(event.Origin{PBX: "mango", Account: "branch"}, "events/call", []byte(leg("Appeared")), testReceived)
	if other[0].ID == office {
		t.Error("two accounts share an event id")
	}
}

func TestUnmapped(t *testing.T) {
	for _, tt := range []struct {
		name, suffix, payload, err string
		callID, legID, commandID   string
	}{
		{"invalid JSON", "events/call", `{"entry_id":`, "not a JSON object", "", "", ""},
		{"empty payload", "events/call", ``, "not a JSON object", "", "", ""},
		{"JSON array", "events/call", `[1]`, "not a JSON object", "", "", ""},
		{"JSON string", "events/summary", `"x"`, "not a JSON object", "", "", ""},
		{"sms", "events/sms", `{"command_id":"s1","timestamp":1,"reason":1000}`, `"events/sms"`, "", "", "s1"},
		{"record/tagged", "events/record/tagged", `{"entry_id":"E1","recording_id":"R1"}`, `"events/record/tagged"`, "E1", "", ""},
		{"result/stat", "result/stat", `{"key":"k","request_id":"r"}`, `"result/stat"`, "", "", ""},
		{"result/stats", "result/stats", `{"key":"k"}`, `"result/stats"`, "", "", ""},
		{"unknown suffix", "events/md", `{"entry_id":"E1"}`, `"events/md"`, "E1", "", ""},
		{"empty suffix", "", `{}`, `""`, "", "", ""},
		{"unknown call_state", "events/call", leg("Ringing"), `call_state "Ringing"`, "E1", "L1", ""},
		{"missing call_id", "events/call", `{"entry_id":"E1","call_state":"Appeared"}`, "missing call_id", "E1", "", ""},
		{"null payload", "events/call", `null`, "missing call_id", "", "", ""},
		{"seq an object", "events/call", strings.Replace(leg("Appeared"), `"seq":3`, `"seq":{}`, 1), "seq: want a non-negative integer", "E1", "L1", ""},
		{"seq negative", "events/call", strings.Replace(leg("Appeared"), `"seq":3`, `"seq":-1`, 1), "seq: want a non-negative integer", "E1", "L1", ""},
		{"seq fractional", "events/call", strings.Replace(leg("Appeared"), `"seq":3`, `"seq":1.5`, 1), "seq: want a non-negative integer", "E1", "L1", ""},
		{"seq words", "events/call", strings.Replace(leg("Appeared"), `"seq":3`, `"seq":"three"`, 1), "seq: want a non-negative integer", "E1", "L1", ""},
		{"timestamp in ms past 9999", "events/call", strings.Replace(leg("Appeared"), `1764065705`, `176406570500000`, 1), "timestamp: want epoch seconds", "E1", "L1", ""},
		{"call_id a bool", "events/call", `{"entry_id":"E1","call_id":true,"call_state":"Appeared"}`, "call_id: want a string", "E1", "", ""},
		{"from a string", "events/call", leg("Appeared", `"from":"79001234567"`), "from: want an object", "E1", "L1", ""},
		{"to.extension a bool", "events/call", leg("Appeared", `"to":{"extension":true}`), "to.extension: want a string", "E1", "L1", ""},
		{"was_transferred not a bool", "events/call", leg("Disconnected", `"from":{"was_transferred":"maybe"}`), "from.was_transferred: want a boolean", "E1", "L1", ""},
		{"dct a string", "events/call", leg("Appeared", `"dct":"x"`), "dct: want an object", "E1", "L1", ""},
		{"summary without entry_id", "events/summary", `{"talk_time":0}`, "missing entry_id", "", "", ""},
		{"summary talk_time a date", "events/summary", summaryOf(`"talk_time":"2014-05-12"`), "talk_time: want a non-negative integer", "E1", "", ""},
		{"recording not kept", "events/recording", `{"recording_id":"R1","recording_state":"Completed","completion_code":4002,"entry_id":"E1"}`, "completion_code 4002", "E1", "", ""},
		{"recording without id", "events/record/added", `{"entry_id":"E1"}`, "missing recording_id", "E1", "", ""},
		{"dtmf without digits", "events/dtmf", `{"call_id":"L1","entry_id":"E1","seq":1}`, "missing dtmf", "E1", "L1", ""},
		{"dtmf without call_id", "events/dtmf", `{"dtmf":"1"}`, "missing call_id", "", "", ""},
		{"result without command_id", "result/callback", `{"result":1000}`, "missing command_id", "", "", ""},
		{"result without result", "result/callback", `{"command_id":"c1"}`, "missing result", "", "", "c1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapped(t, tt.suffix, tt.payload, event.TypeUnmapped)
			d := ev.Data
			if !strings.Contains(d.Error, tt.err) {
				t.Errorf("error %q, want it to mention %q", d.Error, tt.err)
			}
			if d.CallID != tt.callID || d.LegID != tt.legID || d.CommandID != tt.commandID {
				t.Errorf("ids %q %q %q, want %q %q %q", d.CallID, d.LegID, d.CommandID, tt.callID, tt.legID, tt.commandID)
			}
			if len(d.Raw) == 0 {
				t.Error("no raw payload")
			}
		})
	}
}

func TestRaw(t *testing.T) {
	for _, tt := range []struct{ name, payload, want string }{
		{"compact JSON kept as sent", `{"z":1,"a":"х","n":"1"}`, `{"z":1,"a":"х","n":"1"}`},
		{"pretty JSON compacted", "{ \"z\" : 1,\n \"a\" : [ 1, 2 ] }", `{"z":1,"a":[1,2]}`},
		{"not JSON: a JSON string", `{"entry_id":`, `"{\"entry_id\":"`},
		{"empty: an empty string", ``, `""`},
		{"invalid UTF-8 replaced", "{\"a\":\"\xff\"}", `{"a":"` + "\uFFFD" + `"}`},
		{"secrets dropped", `{"sign":"abc","vpbx_api_key":"k","vpbx_api_salt":"s","api_salt":"s","entry_id":"E1"}`, `{"entry_id":"E1"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := decodeObject([]byte(tt.payload))
			if got := string(raw([]byte(tt.payload), f.m)); got != tt.want {
				t.Errorf("raw = %s, want %s", got, tt.want)
			}
		})
	}
	// And on a mapped event.
	ev := mapped(t, "events/call", leg("Appeared"), event.TypeRinging)
	if string(ev.Data.Raw) != leg("Appeared") {
		t.Errorf("raw = %s", ev.Data.Raw)
	}
}

// A translator panic becomes pbx.unmapped instead of losing the message.
func TestPanicIsUnmapped(t *testing.T) {
	kinds["events/test-panic"] = func(*message, fields) (event.Event, error) { panic("boom") }
	defer delete(kinds, "events/test-panic")
	ev := mapped(t, "events/test-panic", `{"entry_id":"E1"}`, event.TypeUnmapped)
	if !strings.Contains(ev.Data.Error, "boom") || ev.Data.CallID != "E1" {
		t.Errorf("got %+v", ev.Data)
	}
}

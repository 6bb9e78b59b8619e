package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// XVB's own COMPLETED carries neither type nor ext, often no callid: through the built binary,
// the CRM's call.completed takes direction and parties from the call it closes (joined by phone
// or by callid), names the agent that ANSWERED, and an inbound Cancel is missed.
func TestXVBCompletedTakesTheOpenCall(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startXVB(t, crm, newContactCRM(t))

	// Outbound, ext 104 calls a customer; COMPLETED without type, ext and callid.
	acceptXVB(t, g, "out INCOMING", formType, xvbForm("cmd", "event", "callid", "OUTwithoutCallid", "type", "out", "event", "INCOMING", "ext", "104", "phone", "79201119620"))
	acceptXVB(t, g, "out COMPLETED", formType, xvbForm("cmd", "event", "event", "COMPLETED", "status", "Success", "duration", "30", "phone", "89201119620"))
	// Outbound, COMPLETED with its callid but without type and ext.
	acceptXVB(t, g, "out INCOMING 2", formType, xvbForm("cmd", "event", "callid", "OUTwithCallid", "type", "out", "event", "INCOMING", "ext", "105", "phone", "79201119621"))
	acceptXVB(t, g, "out COMPLETED 2", formType, xvbForm("cmd", "event", "callid", "OUTwithCallid", "event", "COMPLETED", "status", "Busy", "duration", "0", "phone", "79201119621"))
	// Inbound, answered by ext 102; COMPLETED as in XVB's example.
	acceptXVB(t, g, "in INCOMING", formType, xvbForm("cmd", "event", "callid", "INanswered", "type", "in", "event", "INCOMING", "ext", "", "phone", "79201119622"))
	acceptXVB(t, g, "in ANSWERED", formType, xvbForm("cmd", "event", "callid", "INanswered", "type", "in", "event", "ANSWERED", "ext", "102", "phone", "79201119622"),
		"X-XVB-AC", xvbAccessCode)
	acceptXVB(t, g, "in COMPLETED", formType, xvbForm("cmd", "event", "event", "COMPLETED", "status", "Success", "duration", "16", "phone", "79201119622"))
	// Inbound, the caller hangs up before an answer.
	acceptXVB(t, g, "cancel INCOMING", formType, xvbForm("cmd", "event", "callid", "INcancelled", "type", "in", "event", "INCOMING", "ext", "", "phone", "79201119623"))
	acceptXVB(t, g, "cancel COMPLETED", formType, xvbForm("cmd", "event", "event", "COMPLETED", "status", "Cancel", "duration", "5", "phone", "79201119623"))

	ds := crm.WaitDelivered(t, 9, 30*time.Second)
	employee := func(ext string) event.Party { return event.Party{Extension: ext} }
	customer := func(n string) event.Party { return event.Party{Number: n} }
	for _, tt := range []struct {
		call, correlation string
		direction         string
		from, to          event.Party
		agent, result     string
		answered          bool // an ANSWERED came between INCOMING and COMPLETED
	}{
		{"OUTwithoutCallid", "weak", event.DirectionOutbound, employee("104"), customer("+79201119620"), "104", event.ResultAnswered, false},
		{"OUTwithCallid", "", event.DirectionOutbound, employee("105"), customer("+79201119621"), "105", event.ResultBusy, false},
		{"INanswered", "weak", event.DirectionInbound, customer("+79201119622"), employee("102"), "102", event.ResultAnswered, true},
		{"INcancelled", "weak", event.DirectionInbound, customer("+79201119623"), event.Party{}, "", event.ResultMissed, false},
	} {
		types := []string{event.TypeRinging, event.TypeCompleted}
		if tt.answered {
			types = []string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted}
		}
		got := checkCall(t, ds, tt.call, tt.correlation, types...)
		d := got[len(got)-1].Event.Data
		if d.Direction != tt.direction || d.From != tt.from || d.To != tt.to || d.Agent != tt.agent || d.Result != tt.result {
			t.Errorf("%s: call.completed direction %q from %+v to %+v agent %q result %q; want %q %+v %+v %q %q",
				tt.call, d.Direction, d.From, d.To, d.Agent, d.Result, tt.direction, tt.from, tt.to, tt.agent, tt.result)
		}
	}
}

// A caller the CRM routes out of Mango's IVR with commands/route gets an employee leg that
// carries the command's command_id: through the built binary, all its events stay inbound,
// while leg 1 of a click-to-call (commands/callback) is outbound.
func TestMangoRoutedLegStaysInbound(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startMango(t, crm, "127.0.0.1")
	post := func(suffix, payload string) {
		t.Helper()
		code, body := g.Post("/hooks/mango"+suffix, formType, mango.FormBody(testKey, testSalt, payload))
		if code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", suffix, payload, code, body)
		}
	}
	const entry = "Um91dGVkQ2FsbDE="
	now := time.Now().Unix() // Mango messages older than dedupe_window are refused
	at := func(offset int) string { return strconv.FormatInt(now+int64(offset), 10) }
	post("/events/call", `{"entry_id":"`+entry+`","call_id":"MTpJVlI6MQ==","timestamp":"`+at(0)+`","seq":"1","call_state":"Appeared","location":"ivr",`+
		`"from":{"number":"79161234567"},"to":{"number":"sip:ivr@vpbx400000000.mangosip.ru","line_number":"74951234567"}}`)
	for i, state := range []string{"Appeared", "Connected", "Disconnected"} {
		post("/events/call", `{"entry_id":"`+entry+`","call_id":"MTpFTVA6Mg==","timestamp":"`+at(10+i)+`","seq":"`+strconv.Itoa(1+i)+`",`+
			`"call_state":"`+state+`","location":"abonent","from":{"number":"79161234567","taken_from_call_id":"MTpJVlI6MQ=="},`+
			`"to":{"extension":"123","number":"sip:user123@vpbx400000000.mangosip.ru","line_number":"74951234567"},"command_id":"crm-route-42","disconnect_reason":"1110"}`)
	}
	post("/events/call", `{"entry_id":"Q2xpY2tUb0NhbGwx","call_id":"100:500:251","timestamp":"`+at(20)+`","seq":"1","call_state":"Appeared","location":"abonent",`+
		`"from":{"number":"74955404444"},"to":{"extension":"1234"},"command_id":"cmd.2.vpbx.12345.external.system.com.net"}`)

	ds := crm.WaitDelivered(t, 5, 30*time.Second)
	for _, d := range ds {
		want := event.DirectionInbound
		if d.Event.Data.CallID == "Q2xpY2tUb0NhbGwx" {
			want = event.DirectionOutbound
		}
		if d.Event.Data.Direction != want || !strings.Contains(string(d.Body), `"direction":"`+want+`"`) {
			t.Errorf("%s of leg %s (command_id %q): direction %q, want %q", d.Event.Type, d.Event.Data.LegID, d.Event.Data.CommandID, d.Event.Data.Direction, want)
		}
	}
}

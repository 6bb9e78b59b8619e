package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/amocrm/amocrmtest"
	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

const (
	amoToken    = "amo-e2e-long-lived-token-6c0d2f9e1a"
	amoRecToken = "amo-e2e-recordings-token-3b7a"
	amoUser101  = 504141
	amoUser102  = 504142
	// amoClient is the caller the fake account has a contact for; amoStranger it has not.
	amoClient   = "79123456789"
	amoStranger = "79035550011"
)

// amoGateway is a gateway whose target amo is the amoCRM account at amoURL (users 101 and 102,
// create_lead on), fed by the Mango account office (with signed recording links) and the XVB
// account main. A PBX re-send is a new event after 1 s, so a test can deliver a call again.
func amoGateway(amoURL string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			"dedupe_window 1s",
			gatewaytest.Block("target amo amocrm "+amoURL,
				"token {env.TEST_AMO_TOKEN}",
				gatewaytest.Block("users", fmt.Sprint("101 ", amoUser101), fmt.Sprint("102 ", amoUser102)),
				"create_lead on",
				gatewaytest.Block("retry", "backoff 20ms 200ms")),
			gatewaytest.Block("mango office", "api_key "+testKey, "api_salt {env.TEST_MANGO_SALT}", "sources 127.0.0.1", "forward amo"),
			gatewaytest.Block("xvb main", "access_code "+xvbAccessCode, "secret {env.TEST_XVB_KEY}", "sources 127.0.0.1", "forward amo"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("key"),
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /recordings/*", gatewaytest.Block("pbx_recordings", "token {env.TEST_AMO_REC_TOKEN}", "public_url {HTTP}/recordings")),
		},
	}.String()
}

func startAmo(t *testing.T, amo *amocrmtest.Account) *gatewaytest.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, amoGateway(amo.URL), "TEST_AMO_TOKEN="+amoToken, "TEST_MANGO_SALT="+testSalt,
		"TEST_XVB_KEY="+xvbWebhookKey, "TEST_AMO_REC_TOKEN="+amoRecToken)
	g.WaitReady()
	return g
}

// mangoSummary is Mango's /events/summary: direction 1 inbound (from client to ext), 2
// outbound (from ext to client); talk 0 is a call nobody answered.
func mangoSummary(entry string, direction int, client, ext string, talk int64, reason int) mango.Message {
	t := time.Now().Unix() - 60
	party := func(number string) string { return fmt.Sprintf(`{"number":%q}`, number) }
	employee := fmt.Sprintf(`{"extension":%q,"number":"sip:%s@vpbx400000000.mangosip.ru"}`, ext, ext)
	from, to := party(client), employee
	if direction == 2 {
		from, to = employee, party(client)
	}
	talkTime := int64(0)
	if talk > 0 {
		talkTime = t + 5
	}
	return mango.Message{Name: "summary " + entry, Suffix: "/events/summary", JSON: fmt.Sprintf(
		`{"entry_id":%q,"call_direction":%d,"from":%s,"to":%s,"line_number":"74951234567","create_time":%d,"forward_time":%d,"talk_time":%d,"end_time":%d,"entry_result":%d,"disconnect_reason":%d}`,
		entry, direction, from, to, t, t, talkTime, t+5+talk, min(talk, 1), reason)}
}

// mangoLegs are a leg's Appeared, Connected and Disconnected at extension ext.
func mangoLegs(entry, leg, client, ext string) []mango.Message {
	t := time.Now().Unix() - 60
	msg := func(seq int, state, extra string) mango.Message {
		return mango.Message{Name: state + " " + leg, Suffix: "/events/call", JSON: fmt.Sprintf(
			`{"entry_id":%q,"call_id":%q,"timestamp":%d,"seq":%d,"call_state":%q,"location":"abonent","from":{"number":%q},"to":{"extension":%q,"number":"sip:%s@vpbx400000000.mangosip.ru","line_number":"74951234567"}%s}`,
			entry, leg, t+int64(seq), seq, state, client, ext, ext, extra)}
	}
	return []mango.Message{msg(1, "Appeared", ""), msg(2, "Connected", ""), msg(3, "Disconnected", `,"disconnect_reason":1100`)}
}

func mangoRecordAdded(entry, recording string) mango.Message {
	return mango.Message{Name: "record/added " + entry, Suffix: "/events/record/added", JSON: fmt.Sprintf(
		`{"entry_id":%q,"product_id":300022532,"user_id":-1,"timestamp":%d,"recording_id":%q}`, entry, time.Now().Unix(), recording)}
}

// amoCallsOf are the calls the account has of uniq.
func amoCallsOf(amo *amocrmtest.Account, uniq string) []amocrmtest.Call {
	var out []amocrmtest.Call
	for _, c := range amo.Calls() {
		if c.UniqID == uniq {
			out = append(out, c)
		}
	}
	return out
}

// Mango and XVB calls reach amoCRM once each, with the fields docs/amocrm.md gives: inbound
// answered (after the recording, so with its signed link), missed, outbound, transferred
// (legs at 101 and 102, one call), a recording after the summary (the call stays without it),
// XVB's own record_link, and an unknown caller as an unsorted lead. Then the gateway is killed
// (-9) and restarted, and the summary sent again is a re-delivery that adds no second call.
func TestAmoCRMCalls(t *testing.T) {
	amo := amocrmtest.New(t, amoToken, amoUser101, amoUser102)
	amo.AddContact("Иван Петров", "+7 (912) 345-67-89", amoUser101)
	g := startAmo(t, amo)

	post := func(msgs ...mango.Message) {
		for _, m := range msgs {
			postMango(t, g, m, http.StatusOK)
		}
	}
	post(mangoRecordAdded("amo-answered", "rec-answered"))
	post(append(mangoLegs("amo-answered", "leg-1", amoClient, "101"), mangoSummary("amo-answered", 1, amoClient, "101", 42, 1100))...)
	post(mangoSummary("amo-missed", 1, amoClient, "101", 0, 1110))
	post(mangoSummary("amo-outbound", 2, amoClient, "102", 17, 1100))
	post(mangoLegs("amo-transferred", "leg-a", amoClient, "101")...)
	post(append(mangoLegs("amo-transferred", "leg-b", amoClient, "102"), mangoSummary("amo-transferred", 1, amoClient, "102", 65, 1100))...)
	post(mangoSummary("amo-late", 1, amoClient, "101", 30, 1100))
	post(mangoSummary("amo-stranger", 1, amoStranger, "101", 12, 1100))
	const xvbCall, xvbLink = "amo-xvb-1", "https://vpbx18.example.net/ui/msg_download/120/10019/a1.q722"
	for _, m := range [][]string{
		{"event", "INCOMING", "ext", ""},
		{"event", "ANSWERED", "ext", "102"},
		{"event", "COMPLETED", "ext", "102", "status", "Success", "duration", "25", "record_link", xvbLink},
	} {
		acceptXVB(t, g, m[1], formType, xvbForm(append([]string{"cmd", "event", "callid", xvbCall, "type", "in", "phone", "8" + amoClient[1:]}, m...)...))
	}
	gatewaytest.Eventually(t, 30*time.Second, "6 calls and an unsorted lead", func() bool {
		return len(amo.Calls()) >= 6 && len(amo.Unsorted()) >= 1
	})
	// The late recording comes once its call is in amoCRM.
	post(mangoRecordAdded("amo-late", "rec-late"))
	waitMetric(t, g, `pbxbridge_amocrm_recordings_total{outcome="late",target="amo"}`, 1)

	link := g.URL + "/recordings/office/rec-answered?exp="
	for _, tt := range []struct {
		uniq, phone string
		duration    int
		status      int
		user        int
		direction   string
		link        string
	}{
		{"amo-answered", "+" + amoClient, 42, 4, amoUser101, "inbound", link},
		{"amo-missed", "+" + amoClient, 0, 6, amoUser101, "inbound", ""},
		{"amo-outbound", "+" + amoClient, 17, 4, amoUser102, "outbound", ""},
		{"amo-transferred", "+" + amoClient, 65, 4, amoUser102, "inbound", ""},
		{"amo-late", "+" + amoClient, 30, 4, amoUser101, "inbound", ""},
		{xvbCall, "+" + amoClient, 25, 4, amoUser102, "inbound", xvbLink},
	} {
		calls := amoCallsOf(amo, tt.uniq)
		if len(calls) != 1 {
			t.Errorf("%s: %d calls in amoCRM, want 1", tt.uniq, len(calls))
			continue
		}
		c := calls[0]
		if c.Phone != tt.phone || *c.Duration != tt.duration || c.Status != tt.status || c.ResponsibleUserID != tt.user ||
			c.Direction != tt.direction || c.Source != "pbxbridge" || c.ContactID == 0 ||
			(tt.link == "" && c.Link != "") || !strings.HasPrefix(c.Link, tt.link) {
			t.Errorf("%s: %+v (duration %d)", tt.uniq, c, *c.Duration)
		}
	}
	if u := amo.Unsorted(); len(u) != 1 || u[0].Metadata["uniq"] != "amo-stranger" || u[0].Metadata["phone"] != "+"+amoStranger {
		t.Errorf("unsorted %+v", u)
	}

	g.Kill()
	g.Restart()
	g.WaitReady()
	again := mangoSummary("amo-outbound", 2, amoClient, "102", 17, 1100)
	gatewaytest.Eventually(t, 10*time.Second, "the summary accepted again once the dedupe window passed", func() bool {
		_, body := g.Post("/hooks/mango"+again.Suffix, formType, mango.FormBody(testKey, testSalt, again.JSON))
		return body == `{"status":"accepted"}`
	})
	waitMetric(t, g, `pbxbridge_amocrm_calls_total{outcome="duplicate",target="amo"}`, 1)
	if n := len(amoCallsOf(amo, "amo-outbound")); n != 1 {
		t.Errorf("after the re-delivery amoCRM has %d calls of amo-outbound, want 1", n)
	}
	if n := amo.OverLimit(); n != 0 {
		t.Errorf("%d requests over amoCRM's 7 a second", n)
	}
	if strings.Contains(g.Logs(), amoToken) {
		t.Error("the amoCRM token is in the log")
	}
}

// A revoked token opens the target's circuit with amoCRM's answer as the reason in
// /pbx/status, and nothing is dead-lettered; a new token (here: the old one taken again)
// delivers what waited. A validation error dead-letters the call with amoCRM's text.
func TestAmoCRMRevokedToken(t *testing.T) {
	amo := amocrmtest.New(t, amoToken, amoUser101)
	amo.AddContact("Иван Петров", "+"+amoClient, amoUser101)
	amo.Revoke(true)
	g := startAmo(t, amo)
	postMango(t, g, mangoSummary("amo-revoked", 1, amoClient, "101", 10, 1100), http.StatusOK)

	var target delivery.TargetStatus
	gatewaytest.Eventually(t, 30*time.Second, "the circuit open with a reason", func() bool {
		var st delivery.Status
		g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &st)
		for _, ts := range st.Targets {
			if ts.Name == "amo" {
				target = ts
			}
		}
		return target.CircuitOpen && target.CircuitReason != ""
	})
	if !strings.Contains(target.CircuitReason, "401") || !strings.Contains(target.CircuitReason, "long-lived token") || strings.Contains(target.CircuitReason, amoToken) {
		t.Errorf("circuit_reason %q", target.CircuitReason)
	}
	if target.DeadLetters != 0 || len(listDeadLetters(t, g, "?target=amo")) != 0 {
		t.Errorf("dead letters with a revoked token: %+v", target)
	}
	amo.Revoke(false)
	gatewaytest.Eventually(t, 30*time.Second, "the call once the token works", func() bool { return len(amo.Calls()) == 1 })

	// Extension 102's user is unknown to this account: amoCRM refuses the call, and the dead
	// letter says why in amoCRM's words.
	postMango(t, g, mangoSummary("amo-invalid", 1, amoClient, "102", 10, 1100), http.StatusOK)
	var dls []delivery.DeadLetter
	gatewaytest.Eventually(t, 30*time.Second, "a dead letter", func() bool {
		dls = listDeadLetters(t, g, "?target=amo")
		return len(dls) == 1
	})
	if want := "amoCRM 400 on /api/v4/calls: Request validation failed; 0.responsible_user_id: NotSupportedChoice"; !strings.Contains(dls[0].LastError, want) {
		t.Errorf("dead letter error %q, want it to contain %q", dls[0].LastError, want)
	}
}

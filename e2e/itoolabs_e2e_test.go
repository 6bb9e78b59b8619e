package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/itoolabs"
)

const (
	// Secrets of the test config; none of them may appear in the gateway's log.
	itoolabsCRMToken     = "itoolabs-crm-token-3f9a1c7e5b2d8046"
	itoolabsAPIToken     = "itoolabs-api-token-b6e2d4f08a1c3957"
	itoolabsWrongToken   = "itoolabs-api-token-revoked-0000"
	itoolabsCommandToken = "crm-command-token-itoolabs-4711"
	itoolabsLookupAuth   = "crm-lookup-token-itoolabs-2e8c"

	// itoolabsEmployee is the one user the fake PBX knows.
	itoolabsEmployee = "ivanov@example.megapbx.ru"
)

// itoolabsGateway is a Caddyfile with the ITooLabs account `main` (crm_token, makeCall at
// apiURL, lookup at lookupURL) and the account `revoked`, whose makeCall token the PBX no
// longer takes; both forward to crmURL. The access log keeps crm_token (a GET history's query)
// and token (a robot's command) out, as docs/security.md says. The account `elsewhere` takes
// webhooks only from an address the tests never send from.
func itoolabsGateway(crmURL, apiURL, lookupURL string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			crmTarget(crmURL),
			gatewaytest.Block("itoolabs main",
				"crm_token {env.TEST_ITOOLABS_CRM_TOKEN}",
				"sources 127.0.0.1",
				"api_url "+apiURL,
				"token {env.TEST_ITOOLABS_TOKEN}",
				gatewaytest.Block("lookup "+lookupURL, `header Authorization "Bearer {env.TEST_LOOKUP_TOKEN}"`, "timeout "+lookupTimeout.String()),
				"forward crm"),
			gatewaytest.Block("itoolabs revoked", "crm_token revoked-crm-token", "sources any", "api_url "+apiURL, "token "+itoolabsWrongToken, "forward crm"),
			gatewaytest.Block("itoolabs elsewhere", "crm_token {env.TEST_ITOOLABS_CRM_TOKEN}", "sources 198.51.100.7", "forward crm"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("crm_token", "token"),
			gatewaytest.Block("route /hooks/itoolabs", "pbx_webhook main"),
			gatewaytest.Block("route /hooks/itoolabs-elsewhere", "pbx_webhook elsewhere"),
			gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token {env.CRM_COMMAND_TOKEN}", "timeout 2s")),
		},
	}.String()
}

// itoolabsSetup is a gateway with its CRM, lookup endpoint and fake PBX API.
type itoolabsSetup struct {
	g      *gatewaytest.Gateway
	crm    *gatewaytest.CRM
	lookup *contactCRM
	api    *fakeITooLabsAPI
}

func startITooLabs(t *testing.T) *itoolabsSetup {
	t.Helper()
	s := &itoolabsSetup{crm: gatewaytest.NewCRM(t, nil), lookup: newContactCRM(t), api: newFakeITooLabsAPI(t)}
	s.g = gatewaytest.Start(t, itoolabsGateway(s.crm.URL+"/events", s.api.URL+fakeITooLabsPath, s.lookup.URL+"/api/pbx/contact"),
		"TEST_ITOOLABS_CRM_TOKEN="+itoolabsCRMToken, "TEST_ITOOLABS_TOKEN="+itoolabsAPIToken,
		"TEST_LOOKUP_TOKEN="+itoolabsLookupAuth, "CRM_COMMAND_TOKEN="+itoolabsCommandToken)
	s.g.WaitReady()
	return s
}

// post sends an ITooLabs message as the PBX does and returns the status and body of the answer.
func (s *itoolabsSetup) post(t *testing.T, contentType, body string) (int, string) {
	t.Helper()
	resp, b := gatewaytest.Request(t, http.MethodPost, s.g.URL+"/hooks/itoolabs", contentType, body)
	return resp.StatusCode, string(b)
}

// accept posts one message and fails unless it is accepted.
func (s *itoolabsSetup) accept(t *testing.T, name, body string) {
	t.Helper()
	if code, answer := s.post(t, formType, body); code != http.StatusOK || answer != `{"status":"accepted"}` {
		t.Fatalf("%s: %d %s", name, code, answer)
	}
}

// lookupContact asks who phone is as the PBX does, and returns the answer and how long it took.
func (s *itoolabsSetup) lookupContact(t *testing.T, phone, callID string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, b := gatewaytest.Request(t, http.MethodPost, s.g.URL+"/hooks/itoolabs", formType,
		itoolabsForm("cmd", "contact", "phone", phone, "callid", callID))
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("contact lookup: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return string(b), took
}

// itoolabsForm is a form body of account main, signed with its crm_token; kv are further fields.
func itoolabsForm(kv ...string) string {
	v := url.Values{"crm_token": {itoolabsCRMToken}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// checkMetrics fails unless each series has its value.
func checkMetrics(t *testing.T, g *gatewaytest.Gateway, want map[string]float64) {
	t.Helper()
	text := g.MetricsText()
	for series, value := range want {
		if v, ok := gatewaytest.Metric(text, series); !ok || v != value {
			t.Errorf("%s = %g (present %v), want %g", series, v, ok, value)
		}
	}
}

// checkNoSecrets fails if a secret of the test config is in the gateway's log.
func checkNoSecrets(t *testing.T, g *gatewaytest.Gateway) {
	t.Helper()
	logs := g.Logs()
	for name, secret := range map[string]string{
		"crm_token": itoolabsCRMToken, "token": itoolabsAPIToken, "revoked token": itoolabsWrongToken,
		"command token": itoolabsCommandToken, "lookup token": itoolabsLookupAuth,
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the log", name)
		}
	}
}

// A whole ITooLabs call as the PBX posts it (itoolabs.SampleCall: contact, INCOMING, ACCEPTED,
// COMPLETED, history with a recording link), and the same sample as `pbxbridge simulate
// itoolabs` plays it, each reach the CRM as one call_id in order, the contact answered and never
// queued. The history sent again as a GET with a query string is accepted as the duplicate it
// is, and a history first sent as a GET reaches the CRM. Every counter says pbx="itoolabs", and
// no secret reaches the log, the access log included.
func TestITooLabsCallEndToEnd(t *testing.T) {
	s := startITooLabs(t)
	const call = "28187487-edcf-4d23-9f95-c8591fbd9936"
	start := time.Date(2026, 11, 25, 7, 10, 0, 0, time.UTC)
	messages := itoolabs.SampleCall(itoolabsCRMToken, call, start)
	for _, m := range messages {
		code, answer := s.post(t, formType, m.Body)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, answer)
		}
		if m.Name == "contact" && answer != "{}" { // the sample's caller is unknown to the CRM
			t.Errorf("contact: %s, want {}", answer)
		}
	}
	history := messages[len(messages)-1]
	resp, b := gatewaytest.Request(t, http.MethodGet, s.g.URL+"/hooks/itoolabs?"+history.Body, "", "")
	if resp.StatusCode != http.StatusOK || string(b) != `{"status":"duplicate"}` {
		t.Errorf("the history again, as a GET: %d %s", resp.StatusCode, b)
	}
	const getCall = "a6f1e0c2-9b7d-4c35-8e21-7d0f9b4a6c13"
	getHistory := itoolabsForm("cmd", "history", "callid", getCall, "type", "out", "user", itoolabsEmployee, "ext", "701",
		"phone", "74957654321", "start", "20261125T072000Z", "duration", "0", "status", "Busy")
	resp, b = gatewaytest.Request(t, http.MethodGet, s.g.URL+"/hooks/itoolabs?"+getHistory, "", "")
	if resp.StatusCode != http.StatusOK || string(b) != `{"status":"accepted"}` {
		t.Fatalf("a GET history: %d %s", resp.StatusCode, b)
	}
	out, errOut, status := cli(t, "simulate", "itoolabs", "--url", s.g.URL+"/hooks/itoolabs", "--token", itoolabsCRMToken)
	if status != 0 {
		t.Fatalf("simulate itoolabs: exit %d\n%s%s", status, out, errOut)
	}
	_, simulated, _ := strings.Cut(out, "callid=")
	simulated, _, _ = strings.Cut(simulated, "\n")

	ds := s.crm.WaitDelivered(t, 11, 30*time.Second)
	want := []string{event.TypeRinging, event.TypeAnswered, event.TypeLegEnded, event.TypeCompleted, event.TypeRecordingReady}
	var got []gatewaytest.Delivery
	for _, c := range []string{call, simulated} {
		got = callEvents(ds, c)
		var types []string
		for _, d := range got {
			types = append(types, d.Event.Type)
			if err := eventtest.Validate(d.Body); err != nil {
				t.Errorf("%s does not validate: %v", d.Event.Type, err)
			}
			if e := d.Event; e.Source != "/pbx/itoolabs/main" || e.Subject != c || e.Data.PBX != "itoolabs" ||
				e.Data.Direction != event.DirectionInbound || e.Data.Agent != "701" || e.Data.From.Number != "+79161234567" {
				t.Errorf("%s: %+v", e.Type, e)
			}
			if strings.Contains(string(d.Body), itoolabsCRMToken) {
				t.Errorf("%s carries crm_token: %s", d.Event.Type, d.Body)
			}
		}
		if strings.Join(types, " ") != strings.Join(want, " ") {
			t.Fatalf("call %q: types %v, want %v", c, types, want)
		}
	}
	got = callEvents(ds, call)
	const recording = "https://records.example.megapbx.ru/" + call + ".mp3"
	completed := got[3].Event.Data
	if completed.Result != event.ResultAnswered || completed.DurationS == nil || *completed.DurationS != 42 ||
		completed.StartedAt == nil || !completed.StartedAt.Equal(start) || completed.RecordingURL != recording ||
		completed.Line != "+74951234567" {
		t.Errorf("completed %+v", completed)
	}
	if rec := got[4].Event.Data; rec.RecordingURL != recording {
		t.Errorf("recording.ready %+v", rec)
	}
	outbound := callEvents(ds, getCall)
	if len(outbound) != 1 || outbound[0].Event.Type != event.TypeCompleted || outbound[0].Event.Data.Direction != event.DirectionOutbound ||
		outbound[0].Event.Data.Result != event.ResultBusy || outbound[0].Event.Data.To.Number != "+74957654321" {
		t.Errorf("the GET history delivered %+v", outbound)
	}
	for _, d := range s.crm.Requests() {
		if d.Event.Type == event.TypeUnmapped {
			t.Errorf("CRM got %s: %s", d.Event.Type, d.Body)
		}
	}
	if reqs := s.lookup.received("+79161234567"); len(reqs) != 2 || !strings.Contains(reqs[1].body, `"call_id":"`+simulated+`"`) {
		t.Errorf("lookups %+v", reqs)
	}

	checkMetrics(t, s.g, map[string]float64{
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="itoolabs"}`:  9,
		`pbxbridge_webhooks_received_total{account="main",outcome="duplicate",pbx="itoolabs"}`: 1,
		`pbxbridge_events_total{pbx="itoolabs",type="call.ringing"}`:                           2,
		`pbxbridge_events_total{pbx="itoolabs",type="call.completed"}`:                         3,
		`pbxbridge_events_total{pbx="itoolabs",type="recording.ready"}`:                        2,
		`pbxbridge_contact_lookups_total{account="main",outcome="not_found"}`:                  2,
		`pbxbridge_ingest_duration_seconds_count{account="main",pbx="itoolabs"}`:               12,
	})
	if !strings.Contains(s.g.Logs(), `"uri":"/hooks/itoolabs?callid=`+getCall) {
		t.Error("the GET history is not in the access log (without crm_token)")
	}
	checkNoSecrets(t, s.g)
}

// Refusals carry the bodies the PBX reads, exactly: 401 {"error":"Invalid token"} for a wrong or
// missing crm_token (a GET history's too), 400 {"error":"Invalid parameters"} for a malformed
// message; a sender not in sources gets 403 with pbxbridge's own body; `pbxbridge simulate itoolabs` with a wrong token exits 1. Nothing refused reaches the
// CRM or the lookup; the log says why, by path, without the token that was sent.
func TestITooLabsRejections(t *testing.T) {
	s := startITooLabs(t)
	const call = "c0ffee00-1111-4222-8333-444455556666"
	incoming := func(ext string) url.Values {
		v, _ := url.ParseQuery(itoolabsForm("cmd", "event", "type", "INCOMING", "direction", "in", "callid", call, "phone", "79201119613", "ext", ext))
		return v
	}
	// with sets name to value in v, or leaves it out for "", and encodes v.
	with := func(v url.Values, name, value string) string {
		v.Set(name, value)
		if value == "" {
			v.Del(name)
		}
		return v.Encode()
	}
	const invalidToken, invalidParameters = `{"error":"Invalid token"}`, `{"error":"Invalid parameters"}`
	for _, tt := range []struct {
		name, method, contentType, body string
		status                          int
		answer                          string
	}{
		{"wrong crm_token", http.MethodPost, formType, with(incoming("701"), "crm_token", itoolabsWrongToken), http.StatusUnauthorized, invalidToken},
		{"no crm_token", http.MethodPost, formType, with(incoming("702"), "crm_token", ""), http.StatusUnauthorized, invalidToken},
		{"wrong crm_token in JSON", http.MethodPost, "application/json",
			`{"cmd":"event","type":"INCOMING","callid":"` + call + `","phone":"79201119613","ext":"703","crm_token":"` + itoolabsWrongToken + `"}`, http.StatusUnauthorized, invalidToken},
		{"a GET history with a wrong crm_token", http.MethodGet, "",
			url.Values{"cmd": {"history"}, "type": {"in"}, "callid": {call}, "phone": {"79201119613"}, "crm_token": {itoolabsWrongToken}}.Encode(), http.StatusUnauthorized, invalidToken},
		{"a contact lookup with a wrong crm_token", http.MethodPost, formType,
			url.Values{"cmd": {"contact"}, "phone": {"79201119613"}, "crm_token": {itoolabsWrongToken}}.Encode(), http.StatusUnauthorized, invalidToken},
		{"no cmd", http.MethodPost, formType, with(incoming("705"), "cmd", ""), http.StatusBadRequest, invalidParameters},
		{"crm_token twice", http.MethodPost, formType, incoming("706").Encode() + "&crm_token=" + itoolabsWrongToken, http.StatusBadRequest, invalidParameters},
		{"nested JSON", http.MethodPost, "application/json", `{"cmd":"event","callid":{"id":"` + call + `"},"crm_token":"` + itoolabsCRMToken + `"}`, http.StatusBadRequest, invalidParameters},
		{"empty body", http.MethodPost, formType, "", http.StatusBadRequest, invalidParameters},
		{"not UTF-8", http.MethodPost, formType, with(incoming("707"), "groupRealName", "\xcf\xf0\xee\xe4\xe0\xe6\xe8"), http.StatusBadRequest, invalidParameters},
	} {
		t.Run(tt.name, func(t *testing.T) {
			target, body := s.g.URL+"/hooks/itoolabs", tt.body
			if tt.method == http.MethodGet {
				target, body = target+"?"+body, ""
			}
			resp, b := gatewaytest.Request(t, tt.method, target, tt.contentType, body)
			if resp.StatusCode != tt.status || string(b) != tt.answer || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%d %s %q, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), b, tt.status, tt.answer)
			}
		})
	}
	// A refusal of the gateway's own, before the account reads the message, has its own body.
	resp, b := gatewaytest.Request(t, http.MethodPost, s.g.URL+"/hooks/itoolabs-elsewhere", formType, incoming("708").Encode())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `"reason":"source"`) {
		t.Errorf("not from sources: %d %s", resp.StatusCode, b)
	}

	// `pbxbridge simulate itoolabs` with a wrong token: every message refused, exit status 1.
	out, errOut, status := cli(t, "simulate", "itoolabs", "--url", s.g.URL+"/hooks/itoolabs", "--token", itoolabsWrongToken)
	if steps := len(itoolabs.SampleCall("", "", time.Time{})); status != 1 || strings.Count(out, " 401 ") != steps {
		t.Errorf("simulate with a wrong token: exit %d, want 1 and %d refusals\n%s%s", status, steps, out, errOut)
	}

	// The call's lane delivers in order: once the accepted INCOMING is there, anything refused
	// before it would have been delivered before it.
	s.accept(t, "INCOMING", incoming("700").Encode())
	ds := s.crm.WaitDelivered(t, 1, 30*time.Second)
	if got := callEvents(ds, call); len(got) != 1 || got[0].Event.Data.Agent != "700" {
		t.Fatalf("delivered %+v, want the accepted INCOMING only", got)
	}
	if n := len(s.crm.Requests()); n != 1 {
		t.Errorf("CRM got %d requests, want the 1 accepted event", n)
	}
	if n := len(s.lookup.received(xvbKnownPhone)) + len(s.lookup.received("+79161234567")); n != 0 {
		t.Errorf("CRM got %d lookups from refused contacts", n)
	}
	checkMetrics(t, s.g, map[string]float64{
		`pbxbridge_webhooks_rejected_total{account="main",pbx="itoolabs",reason="auth"}`:        10,
		`pbxbridge_webhooks_rejected_total{account="main",pbx="itoolabs",reason="malformed"}`:   5,
		`pbxbridge_webhooks_received_total{account="main",outcome="rejected",pbx="itoolabs"}`:   15,
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="itoolabs"}`:   1,
		`pbxbridge_events_total{pbx="itoolabs",type="call.ringing"}`:                            1,
		`pbxbridge_webhooks_rejected_total{account="elsewhere",pbx="itoolabs",reason="source"}`: 1,
	})
	logs := s.g.Logs()
	for _, want := range []string{`"reason":"auth"`, `"reason":"malformed"`, `"error":"crm_token does not match the account"`, `"path":"/hooks/itoolabs"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	checkNoSecrets(t, s.g)
}

// cmd=contact is answered from the CRM's lookup, with the call's id passed on, well within the
// lookup's timeout; a CRM that hangs costs the caller the timeout and the answer is {}.
func TestITooLabsContactLookup(t *testing.T) {
	s := startITooLabs(t)
	const call = "5b0e3c1d-7a29-4f86-b4d2-0c9e8a7f6b15"
	answer, took := s.lookupContact(t, "89201119613", call)
	if want := `{"contact_name":"` + xvbCRMName + `","responsible":"100"}`; answer != want {
		t.Errorf("answer %s, want %s", answer, want)
	}
	if took >= lookupTimeout {
		t.Errorf("a CRM that answers at once: answered after %s, the lookup's timeout is %s", took, lookupTimeout)
	}
	reqs := s.lookup.received(xvbKnownPhone)
	if len(reqs) != 1 {
		t.Fatalf("CRM got %d lookups, want 1", len(reqs))
	}
	if want := `{"pbx":"itoolabs","account":"main","phone":"` + xvbKnownPhone + `","call_id":"` + call + `"}`; reqs[0].body != want {
		t.Errorf("lookup body %s, want %s", reqs[0].body, want)
	}
	if h := reqs[0].header; h.Get("Authorization") != "Bearer "+itoolabsLookupAuth {
		t.Errorf("lookup headers %v", h)
	}

	answer, took = s.lookupContact(t, "79200000001", call)
	if answer != "{}" {
		t.Errorf("hanging CRM: answer %s, want {}", answer)
	}
	// As in TestXVBContactLookupFailures: the bound tells the timeout from something longer.
	if took < lookupTimeout || took > lookupTimeout+time.Second {
		t.Errorf("hanging CRM: answered after %s, want the timeout %s (+1s at most)", took, lookupTimeout)
	}
	checkMetrics(t, s.g, map[string]float64{
		`pbxbridge_contact_lookups_total{account="main",outcome="found"}`:                     1,
		`pbxbridge_contact_lookups_total{account="main",outcome="timeout"}`:                   1,
		`pbxbridge_contact_lookup_duration_seconds_count{account="main"}`:                     2,
		`pbxbridge_ingest_duration_seconds_count{account="main",pbx="itoolabs"}`:              2,
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="itoolabs"}`: 0,
	})
	if n := len(s.crm.Requests()); n != 0 {
		t.Errorf("CRM got %d events; a lookup is never queued", n)
	}
}

// fakeITooLabsPath is where MegaFon's REST API for CRM is (docs/itoolabs.md, Click-to-call).
const fakeITooLabsPath = "/sys/crm_api.wcgp"

// fakeITooLabsAPI is the PBX's makeCall (docs/itoolabs.md, Click-to-call): a form POST with
// cmd=makeCall, token, user, phone and optional clid. It answers {"uuid":…}, 401 {"error":"Invalid
// token"} to another token, 400 {"error":"Invalid parameters"} to anything else, a user it does
// not know included.
type fakeITooLabsAPI struct {
	*httptest.Server

	mu    sync.Mutex
	calls []url.Values // every request that reached it
}

func newFakeITooLabsAPI(t testing.TB) *fakeITooLabsAPI {
	f := &fakeITooLabsAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(raw))
		f.mu.Lock()
		f.calls = append(f.calls, form)
		n := len(f.calls)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		valid := err == nil && r.Method == http.MethodPost && r.URL.Path == fakeITooLabsPath &&
			r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" && form.Get("cmd") == "makeCall"
		for name := range form {
			valid = valid && strings.Contains(" cmd token user phone clid ", " "+name+" ")
		}
		switch {
		case valid && form.Get("token") != itoolabsAPIToken:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"Invalid token"}`)
		case !valid || form.Get("user") != itoolabsEmployee || form.Get("phone") == "":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"Invalid parameters"}`)
		default:
			fmt.Fprintf(w, `{"uuid":"fake-call-%d"}`, n)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeITooLabsAPI) received() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.calls...)
}

// pbx_originate reaches the PBX's makeCall with the documented fields: from → user, to → phone
// (digits), line → clid, the account's token. The PBX's 400 and 401 are the CRM's 502, the 401
// saying which setting to check; a hangup is refused without asking the PBX.
func TestITooLabsOriginate(t *testing.T) {
	s := startITooLabs(t)
	command := func(body string) (int, string) {
		t.Helper()
		resp, b := gatewaytest.Request(t, http.MethodPost, s.g.URL+"/calls", "application/json", body,
			"Authorization", "Bearer "+itoolabsCommandToken)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name, body string
		status     int
		answer     string     // a part of the gateway's answer
		sent       url.Values // what the PBX got; nil: nothing
	}{
		{"accepted", `{"account":"main","from":"` + itoolabsEmployee + `","to":"8 (916) 123-45-67","command_id":"crm-1"}`,
			http.StatusOK, `{"command_id":"crm-1","status":"accepted"}`,
			url.Values{"cmd": {"makeCall"}, "token": {itoolabsAPIToken}, "user": {itoolabsEmployee}, "phone": {"79161234567"}}},
		{"with a caller id", `{"account":"main","from":"` + itoolabsEmployee + `","to":"+79161234568","line":"+7 495 123-45-67"}`,
			http.StatusOK, `"status":"accepted"`,
			url.Values{"cmd": {"makeCall"}, "token": {itoolabsAPIToken}, "user": {itoolabsEmployee}, "phone": {"79161234568"}, "clid": {"74951234567"}}},
		{"the PBX refuses the user", `{"account":"main","from":"petrov","to":"79161234569"}`,
			http.StatusBadGateway, `"error":"the PBX refused the call: the PBX refused user or phone (400 Invalid parameters)","pbx_status":400`,
			url.Values{"cmd": {"makeCall"}, "token": {itoolabsAPIToken}, "user": {"petrov"}, "phone": {"79161234569"}}},
		{"the PBX refuses the token", `{"account":"revoked","from":"` + itoolabsEmployee + `","to":"79161234570"}`,
			http.StatusBadGateway, `"error":"the PBX refused the call: the PBX refused the account's token (401 Invalid token): check token","pbx_status":401`,
			url.Values{"cmd": {"makeCall"}, "token": {itoolabsWrongToken}, "user": {itoolabsEmployee}, "phone": {"79161234570"}}},
		{"no hangup", `{"account":"main","action":"hangup","leg_id":"L1"}`,
			http.StatusBadRequest, "no hangup command", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.api.received())
			code, answer := command(tt.body)
			if code != tt.status || !strings.Contains(answer, tt.answer) {
				t.Errorf("%d %s, want %d with %s", code, answer, tt.status, tt.answer)
			}
			got := s.api.received()[before:]
			switch {
			case tt.sent == nil && len(got) != 0:
				t.Errorf("the PBX got %v", got)
			case tt.sent != nil && (len(got) != 1 || got[0].Encode() != tt.sent.Encode()):
				t.Errorf("the PBX got %v, want %v", got, tt.sent)
			}
		})
	}
	checkMetrics(t, s.g, map[string]float64{
		`pbxbridge_commands_total{account="main",command="make_call",outcome="accepted"}`:   2,
		`pbxbridge_commands_total{account="main",command="make_call",outcome="refused"}`:    1,
		`pbxbridge_commands_total{account="revoked",command="make_call",outcome="refused"}`: 1,
		// The series of an account exist from the start, under its kind.
		`pbxbridge_webhooks_received_total{account="revoked",outcome="accepted",pbx="itoolabs"}`: 0,
		`pbxbridge_webhooks_rejected_total{account="revoked",pbx="itoolabs",reason="auth"}`:      0,
	})
	checkNoSecrets(t, s.g)
}

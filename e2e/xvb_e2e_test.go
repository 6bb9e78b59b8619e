package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

const (
	xvbAccessCode = "10019"
	// Secrets of the test config; none of them may appear in the gateway's log.
	xvbWebhookKey = "xvb-webhook-key-5e1f0c7a9b2d4e6f"
	xvbToken      = "xvb-c2c-token-8a3b6c1d0e9f2a4b"
	xvbLookupAuth = "crm-lookup-token-7d2c9e4f1a0b3c5d"

	// The lookup stand-in's numbers (as the gateway sends them) and what it does for each.
	xvbKnownPhone   = "+79201119613" // answers the contact
	xvbBenchPhones  = "+7921"        // answers the contact for every number so prefixed
	xvbHangPhone    = "+79200000001" // never answers
	xvbMissingPhone = "+79200000002" // 404
	xvbGarbagePhone = "+79200000003" // 200 with a body that is not JSON
	xvbCRMName      = "Вася/Рога и Копыта"
	// lookupTimeout is the lookup's timeout in the test config.
	lookupTimeout = 300 * time.Millisecond
)

// xvbGateway is a Caddyfile with the XVB account `main` (webhook key, token, lookup at
// lookupURL) forwarding to crmURL, and the account `elsewhere` that takes webhooks only from an
// address the tests never send from. The access log keeps the webhook key out, as docs/xvb.md
// recommends. /baseline is a plain `respond` route, what the benchmarks compare against.
func xvbGateway(crmURL, lookupURL string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			crmTarget(crmURL),
			gatewaytest.Block("xvb main",
				"access_code "+xvbAccessCode,
				"secret {env.TEST_XVB_KEY}",
				"sources 127.0.0.1",
				"token {env.TEST_XVB_TOKEN}",
				gatewaytest.Block("lookup "+lookupURL, `header Authorization "Bearer {env.TEST_LOOKUP_TOKEN}"`, "timeout "+lookupTimeout.String(), "cache 60s"),
				"forward crm"),
			gatewaytest.Block("xvb elsewhere", "access_code 10020", "sources 198.51.100.7", "forward crm"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("key"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /hooks/xvb-elsewhere", "pbx_webhook elsewhere"),
			gatewaytest.Block("route /baseline", `respond "accepted" 200`),
		},
	}.String()
}

func startXVB(t testing.TB, crm *gatewaytest.CRM, lookup *contactCRM) *gatewaytest.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, xvbGateway(crm.URL+"/events", lookup.URL+"/api/pbx/contact"),
		"TEST_XVB_KEY="+xvbWebhookKey, "TEST_XVB_TOKEN="+xvbToken, "TEST_LOOKUP_TOKEN="+xvbLookupAuth)
	g.WaitReady()
	return g
}

// contactCRM is the CRM's lookup endpoint: it records every request and answers by phone.
type contactCRM struct {
	*httptest.Server
	mu       sync.Mutex
	requests []contactRequest
}

type contactRequest struct {
	header http.Header
	body   string
	phone  string
}

func newContactCRM(t testing.TB) *contactCRM {
	c := &contactCRM{}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *contactCRM) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var q struct{ Phone string }
	_ = json.Unmarshal(body, &q)
	c.mu.Lock()
	c.requests = append(c.requests, contactRequest{header: r.Header.Clone(), body: string(body), phone: q.Phone})
	c.mu.Unlock()
	switch {
	case q.Phone == xvbHangPhone:
		<-r.Context().Done() // until the gateway gives up
	case q.Phone == xvbGarbagePhone:
		_, _ = io.WriteString(w, "<html>502 Bad Gateway</html>")
	case q.Phone == xvbKnownPhone, strings.HasPrefix(q.Phone, xvbBenchPhones):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"name":"`+xvbCRMName+`","responsible":"100"}`)
	default:
		http.NotFound(w, r)
	}
}

// received returns the lookups the CRM got for phone.
func (c *contactCRM) received(phone string) []contactRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []contactRequest
	for _, r := range c.requests {
		if r.phone == phone {
			out = append(out, r)
		}
	}
	return out
}

// xvbForm is an XVB form body of account main; kv are further fields.
func xvbForm(kv ...string) string {
	v := url.Values{"access_code": {xvbAccessCode}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// postXVB posts to the gateway as XVB does (to path, ?key= added unless the path has a query)
// and returns the status, body and headers of the answer.
func postXVB(t testing.TB, g *gatewaytest.Gateway, path, contentType, body string, header ...string) (int, string, http.Header) {
	t.Helper()
	if !strings.Contains(path, "?") {
		path += "?key=" + xvbWebhookKey
	}
	resp, b := gatewaytest.Request(t, http.MethodPost, g.URL+path, contentType, body, header...)
	return resp.StatusCode, string(b), resp.Header
}

// acceptXVB posts one event message and fails unless it is accepted.
func acceptXVB(t *testing.T, g *gatewaytest.Gateway, name, contentType, body string, header ...string) {
	t.Helper()
	code, answer, _ := postXVB(t, g, "/hooks/xvb", contentType, body, header...)
	if code != http.StatusOK || answer != `{"status":"accepted"}` {
		t.Fatalf("%s: %d %s", name, code, answer)
	}
}

// lookupContact asks the gateway as XVB does and returns the answer and how long it took.
func lookupContact(t *testing.T, g *gatewaytest.Gateway, contentType, body string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	code, answer, header := postXVB(t, g, "/hooks/xvb", contentType, body)
	took := time.Since(start)
	if code != http.StatusOK {
		t.Fatalf("contact lookup: %d %s", code, answer)
	}
	if ct := header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("contact answer Content-Type %q", ct)
	}
	return answer, took
}

// callEvents are the deliveries of call, in arrival order, first attempts only.
func callEvents(ds []gatewaytest.Delivery, call string) []gatewaytest.Delivery {
	var out []gatewaytest.Delivery
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Event.Data.CallID == call && !seen[d.Event.ID] {
			seen[d.Event.ID] = true
			out = append(out, d)
		}
	}
	return out
}

// checkCall fails unless the CRM got exactly the types of call, in that order, each a valid
// event of account main, and the closing ones (completed, recording) with correlation.
func checkCall(t *testing.T, ds []gatewaytest.Delivery, call, correlation string, types ...string) []gatewaytest.Delivery {
	t.Helper()
	got := callEvents(ds, call)
	var gotTypes []string
	for _, d := range got {
		gotTypes = append(gotTypes, d.Event.Type)
		if err := eventtest.Validate(d.Body); err != nil {
			t.Errorf("call %s: %s does not validate: %v", call, d.Event.Type, err)
		}
		if d.Event.Source != "/pbx/xvb/main" || d.Event.Subject != call {
			t.Errorf("call %s: %s envelope %+v", call, d.Event.Type, d.Event)
		}
		want := ""
		if d.Event.Type == event.TypeCompleted || d.Event.Type == event.TypeRecordingReady {
			want = correlation
		}
		if d.Event.Data.Correlation != want {
			t.Errorf("call %s: %s correlation %q, want %q", call, d.Event.Type, d.Event.Data.Correlation, want)
		}
		if want != "" && !strings.Contains(string(d.Body), `"correlation":"`+want+`"`) {
			t.Errorf("call %s: %s body lacks correlation %s: %s", call, d.Event.Type, want, d.Body)
		}
	}
	if strings.Join(gotTypes, " ") != strings.Join(types, " ") {
		t.Fatalf("call %s: types %v, want %v", call, gotTypes, types)
	}
	return got
}

// A whole XVB call as XVB posts it — INCOMING with an 8-prefixed number, the contact lookup,
// ANSWERED with X-XVB-AC, COMPLETED without callid and with the 7-prefixed number — reaches the
// CRM as one call in order, COMPLETED joined by phone (weak). The lookup goes to the CRM with
// the exact query, its answer reaches the PBX as strict UTF-8 JSON, the second lookup comes
// from the cache, and no lookup is ever queued. The JSON data format works like the form, and
// a COMPLETED whose INCOMING never came gets a derived call.
func TestXVBCallEndToEnd(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	lookup := newContactCRM(t)
	g := startXVB(t, crm, lookup)

	const call = "DVzqd2I5zmRev0vLvxVevw"
	const recording = "https://vpbx18-dev/ui/msg_download/120/10019/f92H16GAUDE7R10EMOLYYw.q722"
	acceptXVB(t, g, "INCOMING", formType, xvbForm("cmd", "event", "callid", call, "type", "in", "event", "INCOMING", "ext", "", "phone", "89201119613"))
	answer, _ := lookupContact(t, g, formType, xvbForm("cmd", "contact", "phone", "89201119613"))
	if want := `{"contact_name":"` + xvbCRMName + `","responsible":"100"}`; answer != want {
		t.Errorf("contact answer %s, want %s", answer, want)
	}
	reqs := lookup.received(xvbKnownPhone)
	if len(reqs) != 1 {
		t.Fatalf("CRM got %d lookups, want 1", len(reqs))
	}
	if want := `{"pbx":"xvb","account":"main","phone":"+79201119613"}`; reqs[0].body != want {
		t.Errorf("lookup body %s, want %s", reqs[0].body, want)
	}
	if h := reqs[0].header; h.Get("Authorization") != "Bearer "+xvbLookupAuth || h.Get("Content-Type") != "application/json" {
		t.Errorf("lookup headers %v", h)
	}
	acceptXVB(t, g, "ANSWERED", formType, xvbForm("cmd", "event", "callid", call, "type", "in", "event", "ANSWERED", "ext", "100", "phone", "89201119613"),
		"X-XVB-AC", xvbAccessCode)
	acceptXVB(t, g, "COMPLETED", formType, xvbForm("cmd", "event", "event", "COMPLETED", "status", "Success", "duration", "16", "phone", "79201119613", "record_link", recording))

	// The second lookup of the number, here in the JSON data format, comes from the cache.
	if again, _ := lookupContact(t, g, "application/json", `{"access_code":10019,"cmd":"contact","phone":"79201119613"}`); again != answer {
		t.Errorf("cached answer %s, want %s", again, answer)
	}
	if n := len(lookup.received(xvbKnownPhone)); n != 1 {
		t.Errorf("CRM got %d lookups, want 1 (the second from the cache)", n)
	}

	// A call in the JSON data format (a number given as a JSON number), and a COMPLETED without
	// callid from a number with no open call.
	const jsonCall = "gZAoszZQZI_A6HDwYnKxPg"
	for _, ev := range []string{"INCOMING", "ANSWERED"} {
		acceptXVB(t, g, "JSON "+ev, "application/json",
			`{"access_code":"10019","cmd":"event","callid":"`+jsonCall+`","type":"in","event":"`+ev+`","ext":"101","phone":79201119614}`)
	}
	acceptXVB(t, g, "JSON COMPLETED", "application/json; charset=utf-8",
		`{"cmd":"event","status":"Success","duration":"20","event":"COMPLETED","phone":"79201119614","access_code":"10019"}`)
	acceptXVB(t, g, "orphan COMPLETED", formType, xvbForm("cmd", "event", "event", "COMPLETED", "status", "missed", "duration", "0", "phone", "79201119615"))

	// Accepted synchronously with each 200: no lookup was queued.
	metrics := g.MetricsText()
	if v, ok := gatewaytest.Metric(metrics, `pbxbridge_events_total{pbx="xvb",type="pbx.unmapped"}`); ok && v != 0 {
		t.Errorf("%g pbx.unmapped events queued; contact lookups must never be", v)
	}
	for series, want := range map[string]float64{
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="xvb"}`: 7,
		`pbxbridge_events_total{pbx="xvb",type="call.completed"}`:                        3,
		`pbxbridge_contact_lookups_total{account="main",outcome="found"}`:                1,
		`pbxbridge_contact_lookups_total{account="main",outcome="cached"}`:               1,
		`pbxbridge_contact_lookup_duration_seconds_count{account="main"}`:                2,
	} {
		if v, ok := gatewaytest.Metric(metrics, series); !ok || v != want {
			t.Errorf("%s = %g (present %v), want %g", series, v, ok, want)
		}
	}

	ds := crm.WaitDelivered(t, 8, 30*time.Second)
	first := checkCall(t, ds, call, "weak",
		event.TypeRinging, event.TypeAnswered, event.TypeCompleted, event.TypeRecordingReady)
	ringing, answered, completed := first[0].Event.Data, first[1].Event.Data, first[2].Event.Data
	if ringing.From.Number != xvbKnownPhone || ringing.Direction != event.DirectionInbound {
		t.Errorf("ringing %+v", ringing)
	}
	if answered.Agent != "100" || answered.To.Extension != "100" {
		t.Errorf("answered %+v", answered)
	}
	if completed.Result != event.ResultAnswered || completed.DurationS == nil || *completed.DurationS != 16 ||
		completed.RecordingURL != recording || completed.From.Number != xvbKnownPhone {
		t.Errorf("completed %+v", completed)
	}
	if rec := first[3].Event.Data; rec.RecordingURL != recording {
		t.Errorf("recording.ready %+v", rec)
	}
	second := checkCall(t, ds, jsonCall, "weak", event.TypeRinging, event.TypeAnswered, event.TypeCompleted)
	if d := second[0].Event.Data; d.From.Number != "+79201119614" {
		t.Errorf("JSON ringing %+v", d)
	}
	var orphan []gatewaytest.Delivery
	for _, d := range ds {
		if strings.HasPrefix(d.Event.Data.CallID, "derived-") {
			orphan = append(orphan, d)
		}
	}
	if len(orphan) == 0 {
		t.Fatalf("no derived call for the COMPLETED without INCOMING")
	}
	checkCall(t, ds, orphan[0].Event.Data.CallID, "derived", event.TypeCompleted)
	if d := orphan[0].Event.Data; d.Result != event.ResultMissed {
		t.Errorf("orphan completed %+v", d)
	}
	for _, d := range crm.Requests() {
		if d.Event.Type == event.TypeUnmapped {
			t.Errorf("CRM got %s: %s", d.Event.Type, d.Body)
		}
	}
}

// The lookup answers {} whatever goes wrong at the CRM, and in time: a CRM that hangs costs
// the caller the lookup's timeout and no more.
func TestXVBContactLookupFailures(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	lookup := newContactCRM(t)
	g := startXVB(t, crm, lookup)

	answer, took := lookupContact(t, g, formType, xvbForm("cmd", "contact", "phone", "89200000001"))
	if answer != "{}" {
		t.Errorf("hanging CRM: answer %s, want {}", answer)
	}
	// The bound only tells "the lookup's timeout" from "something longer" (the webhook's 2 s
	// store budget, the CRM's hang): on a loaded machine scheduling alone adds tens of ms, and
	// the overhead itself is measured by BenchmarkXVB.
	if took < lookupTimeout || took > lookupTimeout+time.Second {
		t.Errorf("hanging CRM: answered after %s, want the timeout %s (+1s at most)", took, lookupTimeout)
	}
	for _, tt := range []struct{ name, phone string }{
		{"404", "79200000002"},
		{"garbage", "79200000003"},
		{"unknown to the CRM", "79200000004"},
	} {
		if answer, _ := lookupContact(t, g, formType, xvbForm("cmd", "contact", "phone", tt.phone)); answer != "{}" {
			t.Errorf("%s: answer %s, want {}", tt.name, answer)
		}
	}
	for _, phone := range []string{xvbHangPhone, xvbMissingPhone, xvbGarbagePhone} {
		if n := len(lookup.received(phone)); n != 1 {
			t.Errorf("CRM got %d lookups for %s, want 1", n, phone)
		}
	}
	metrics := g.MetricsText()
	for series, want := range map[string]float64{
		`pbxbridge_contact_lookups_total{account="main",outcome="timeout"}`:   1,
		`pbxbridge_contact_lookups_total{account="main",outcome="not_found"}`: 3, // 404, garbage, 404
		`pbxbridge_contact_lookup_duration_seconds_count{account="main"}`:     4,
	} {
		if v, ok := gatewaytest.Metric(metrics, series); !ok || v != want {
			t.Errorf("%s = %g (present %v), want %g", series, v, ok, want)
		}
	}
	if v, ok := gatewaytest.Metric(metrics, `pbxbridge_events_total{pbx="xvb",type="pbx.unmapped"}`); ok && v != 0 {
		t.Errorf("%g lookups queued", v)
	}
}

// Who may post: the access_code and X-XVB-AC must be the account's, ?key= must be the secret,
// the address must be in sources. Refusals are clear JSON and logged without secrets; an
// authentic message of an unknown kind is accepted and reaches the CRM as pbx.unmapped.
func TestXVBRejections(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	lookup := newContactCRM(t)
	g := startXVB(t, crm, lookup)

	incoming := xvbForm("cmd", "event", "callid", "R1", "type", "in", "event", "INCOMING", "phone", "79201119613")
	for _, tt := range []struct {
		name, path, body string
		header           []string
		want             int
	}{
		{"wrong access_code", "/hooks/xvb", strings.Replace(incoming, "access_code=10019", "access_code=10018", 1), nil, http.StatusUnauthorized},
		{"X-XVB-AC disagrees", "/hooks/xvb", incoming, []string{"X-XVB-AC", "10018"}, http.StatusUnauthorized},
		{"no key", "/hooks/xvb?", incoming, nil, http.StatusUnauthorized},
		{"wrong key", "/hooks/xvb?key=" + xvbWebhookKey[:len(xvbWebhookKey)-1], incoming, nil, http.StatusUnauthorized},
		{"no access_code", "/hooks/xvb", "cmd=event&event=INCOMING", nil, http.StatusBadRequest},
		{"not from sources", "/hooks/xvb-elsewhere", strings.Replace(incoming, "10019", "10020", 1), nil, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := postXVB(t, g, tt.path, formType, tt.body, tt.header...)
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, body, tt.want)
			}
			var answer map[string]string
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer["reason"] == "" || answer["error"] == "" {
				t.Errorf("answer %q is not a clear JSON error", body)
			}
		})
	}
	// Refused lookups ask the CRM nothing.
	if code, body, _ := postXVB(t, g, "/hooks/xvb?key=wrong", formType, xvbForm("cmd", "contact", "phone", "79201119613")); code != http.StatusUnauthorized {
		t.Errorf("lookup with a wrong key: %d %s", code, body)
	}
	if n := len(lookup.received(xvbKnownPhone)); n != 0 {
		t.Errorf("CRM got %d lookups from refused requests", n)
	}

	// The right key, and X-XVB-AC agreeing, pass; so does an unknown cmd, as pbx.unmapped.
	acceptXVB(t, g, "right key", formType, incoming, "X-XVB-AC", xvbAccessCode)
	acceptXVB(t, g, "unknown cmd", formType, xvbForm("cmd", "rating", "callid", "R1", "rating", "5", "phone", "79201119613"))
	ds := crm.WaitDelivered(t, 2, 30*time.Second)
	got := callEvents(ds, "R1")
	if len(got) != 2 || got[0].Event.Type != event.TypeRinging || got[1].Event.Type != event.TypeUnmapped {
		t.Fatalf("delivered %+v", got)
	}
	unmapped := got[1].Event.Data
	if !strings.Contains(unmapped.Error, "unknown cmd") || !strings.Contains(string(unmapped.Raw), `"rating":"5"`) {
		t.Errorf("pbx.unmapped error %q raw %s", unmapped.Error, unmapped.Raw)
	}
	if len(crm.Requests()) != 2 {
		t.Errorf("CRM got %d requests, want only the 2 accepted events", len(crm.Requests()))
	}

	metrics := g.MetricsText()
	for series, want := range map[string]float64{
		`pbxbridge_webhooks_rejected_total{account="main",pbx="xvb",reason="auth"}`:           5,
		`pbxbridge_webhooks_rejected_total{account="main",pbx="xvb",reason="malformed"}`:      1,
		`pbxbridge_webhooks_rejected_total{account="elsewhere",pbx="xvb",reason="source"}`:    1,
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="xvb"}`:      2,
		`pbxbridge_events_total{pbx="xvb",type="pbx.unmapped"}`:                               1,
		`pbxbridge_webhooks_received_total{account="elsewhere",outcome="rejected",pbx="xvb"}`: 1,
	} {
		if v, ok := gatewaytest.Metric(metrics, series); !ok || v != want {
			t.Errorf("%s = %g (present %v), want %g", series, v, ok, want)
		}
	}
	logs := g.Logs()
	for _, want := range []string{`"reason":"auth"`, `"reason":"source"`, `"client_ip":"127.0.0.1"`, "did not map"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for name, secret := range map[string]string{"webhook key": xvbWebhookKey, "token": xvbToken, "lookup token": xvbLookupAuth} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the log", name)
		}
	}
}

// `pbxbridge simulate xvb` plays a call the gateway accepts whole: exit status 0, and the CRM
// gets it as one call.
func TestXVBSimulate(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	lookup := newContactCRM(t)
	g := startXVB(t, crm, lookup)

	out, errOut, status := cli(t, "simulate", "xvb", "--url", g.URL+"/hooks/xvb", "--access-code", xvbAccessCode, "--key", xvbWebhookKey)
	if status != 0 {
		t.Fatalf("simulate xvb: exit %d\n%s%s", status, out, errOut)
	}
	if !strings.Contains(out, xvbCRMName) {
		t.Errorf("simulate did not print the contact answer:\n%s", out)
	}
	ds := crm.WaitDelivered(t, 4, 30*time.Second)
	call := ds[0].Event.Data.CallID
	checkCall(t, ds, call, "weak",
		event.TypeRinging, event.TypeAnswered, event.TypeCompleted, event.TypeRecordingReady)
	if n := len(lookup.received(xvbKnownPhone)); n != 1 {
		t.Errorf("CRM got %d lookups, want 1", n)
	}
}

// An xvb account without sources does not load, with a message that says why and what to
// write; with `sources any` the same config does.
func TestXVBConfigNeedsSources(t *testing.T) {
	dir := t.TempDir()
	config := func(sources string) string {
		path := filepath.Join(dir, "Caddyfile")
		body := fmt.Sprintf("{\n\tpbx {\n\t\tdata_dir %s\n\t\ttarget crm http://127.0.0.1:9/events\n\t\txvb main {\n\t\t\taccess_code 10019\n\t\t\t%s\n\t\t\tforward crm\n\t\t}\n\t}\n}\n",
			filepath.Join(dir, "store"), sources)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	out, errOut, status := cli(t, "validate", "--config", config(""), "--adapter", "caddyfile")
	if status == 0 {
		t.Fatalf("a config without sources validated:\n%s%s", out, errOut)
	}
	if want := "xvb main: sources is required: XVB signs nothing and publishes no addresses"; !strings.Contains(errOut+out, want) {
		t.Errorf("error does not say %q:\n%s%s", want, out, errOut)
	}
	if out, errOut, status := cli(t, "validate", "--config", config("sources any"), "--adapter", "caddyfile"); status != 0 {
		t.Errorf("with `sources any`: exit %d\n%s%s", status, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
		t.Errorf("validate touched the store: %v", err)
	}
}

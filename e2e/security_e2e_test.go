package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// The probes of docs/security.md, through the built binary. Each fails on a
// gateway without the check it names.

// The lookup follows no redirect: a CRM lookup endpoint answering 307 to another port of
// 127.0.0.1 gets the caller's number and the lookup's Authorization nowhere else, and the PBX
// gets {} in time.
func TestLookupFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"name":"from the redirect"}`))
	}))
	defer other.Close()
	redirecting := httptest.NewServer(http.RedirectHandler(other.URL+"/steal", http.StatusTemporaryRedirect))
	defer redirecting.Close()
	crm := gatewaytest.NewCRM(t, nil)
	g := gatewaytest.Start(t, xvbGateway(crm.URL+"/events", redirecting.URL+"/api/pbx/contact"),
		"TEST_XVB_KEY="+xvbWebhookKey, "TEST_XVB_TOKEN="+xvbToken, "TEST_LOOKUP_TOKEN="+xvbLookupAuth)
	g.WaitReady()
	if answer, _ := lookupContact(t, g, formType, xvbForm("cmd", "contact", "phone", "79201119613")); answer != "{}" {
		t.Errorf("answer %s, want {}", answer)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect's target got %d requests", n)
	}
	if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_contact_lookups_total{account="main",outcome="error"}`); v != 1 {
		t.Errorf("lookups counted as error: %g, want 1", v)
	}
}

// A record_link a CRM would render as script is dropped: the call is reported, with the
// reason in its error field, and no recording.ready carries the link.
func TestUnsafeRecordLinkNeverReachesTheCRM(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startXVB(t, crm, newContactCRM(t))
	links := []string{"javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>", "//evil.example/x"}
	for i, link := range links {
		acceptXVB(t, g, link, formType, xvbForm("cmd", "event", "callid", "JS"+string(rune('0'+i)), "type", "in", "event", "COMPLETED",
			"status", "Success", "duration", "5", "phone", "79201119613", "record_link", link))
	}
	// Counted when queued, before the 200: no recording.ready was queued at all.
	if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_events_total{pbx="xvb",type="recording.ready"}`); v != 0 {
		t.Fatalf("%g recording.ready events queued", v)
	}
	for _, d := range crm.WaitDelivered(t, len(links), 30*time.Second) {
		if d.Event.Type != event.TypeCompleted || d.Event.Data.RecordingURL != "" || !strings.Contains(d.Event.Data.Error, "record_link dropped") {
			t.Errorf("%s: recording_url %q, error %q", d.Event.Type, d.Event.Data.RecordingURL, d.Event.Data.Error)
		}
		if err := eventtest.Validate(d.Body); err != nil {
			t.Errorf("%s does not validate: %v", d.Event.Type, err)
		}
	}
	for _, d := range crm.Requests() {
		for _, link := range links {
			if strings.Contains(string(d.Body), strings.ReplaceAll(link, "<", `\u003c`)) || strings.Contains(string(d.Body), link) {
				t.Errorf("the CRM got %q in %s", link, d.Body)
			}
		}
	}
}

// tokenGateway has pbx_originate and pbx_recordings with one token, and a Mango account whose
// API is never reached by a refused request.
var tokenGateway = gatewaytest.Caddyfile{
	PBX: []string{
		"target crm http://127.0.0.1:9/events",
		gatewaytest.Block("mango office", "api_key k", "api_salt s", "api_url http://127.0.0.1:9/vpbx", "sources any", "forward crm"),
	},
	Site: []string{
		gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token {env.TEST_TOKEN}")),
		gatewaytest.Block("route /recordings/*", gatewaytest.Block("pbx_recordings", "token {env.TEST_TOKEN}")),
	},
}

// One rule for every bearer token: the scheme, one space, exactly the token; ?token= exactly
// the token. Each variant is refused with 401 on both routes that take a token.
func TestTokensMatchExactly(t *testing.T) {
	const token = "e2e-token-0123456789abcdef"
	g := gatewaytest.Start(t, tokenGateway.String(), "TEST_TOKEN="+token)
	command := `{"account":"office","from":"101","to":"+79001234567"}`
	for _, tt := range []struct {
		name, query string
		header      []string
	}{
		{"two spaces", "", []string{"Authorization", "Bearer  " + token}},
		{"tab", "", []string{"Authorization", "Bearer\t" + token}},
		{"no space", "", []string{"Authorization", "Bearer" + token}},
		{"one character short", "", []string{"Authorization", "Bearer " + token[1:]}},
		{"another scheme", "", []string{"Authorization", "Basic " + token}},
		{"query with a leading space", "?token=%20" + token, nil},
		{"query with a trailing space", "?token=" + token + "%20", nil},
	} {
		for _, route := range []string{"/calls", "/recordings/office/rec-1"} {
			method, contentType, body := http.MethodPost, "application/json", command
			if strings.HasPrefix(route, "/recordings") {
				method, contentType, body = http.MethodGet, "", ""
				if tt.query != "" {
					continue // recordings take a bearer token or a signed link, never ?token=
				}
			}
			resp, answer := gatewaytest.Request(t, method, g.URL+route+tt.query, contentType, body, tt.header...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: %d %s, want 401", tt.name, route, resp.StatusCode, answer)
			}
		}
	}
	// The exact token passes both checks (and then fails on the unreachable PBX, not on 401).
	for _, target := range []string{g.URL + "/calls", g.URL + "/calls?token=" + url.QueryEscape(token)} {
		header := []string{"Authorization", "bearer " + token}
		if strings.Contains(target, "?") {
			header = nil
		}
		if resp, answer := gatewaytest.Request(t, http.MethodPost, target, "application/json", command, header...); resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s: exact token refused: %s", target, answer)
		}
	}
	if resp, answer := gatewaytest.Request(t, http.MethodGet, g.URL+"/recordings/office/rec-1", "", "", "Authorization", "Bearer "+token); resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("recordings: exact token refused: %s", answer)
	}
}

// Mango's sign does not cover the URL suffix: a signed /events/call body re-posted under
// another suffix is refused (its payload cannot belong there), and, with stale_after, one
// older than that is refused (its re-send could no longer be recognised). A body without the
// mark of any kind, re-posted under another path, is one event.
func TestMangoReplaysUnderOtherSuffixes(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startMangoGateway(t, mangoGateway(crm.URL+"/events", "127.0.0.1", "stale_after 24h"))
	now := time.Now()
	call := mango.SampleCall("E-replay", "L-replay", now)
	post := func(path, json string) (int, string) {
		return g.Post("/hooks/mango"+path, formType, mango.FormBody(testKey, testSalt, json))
	}
	if code, body := post("/events/call", call[0].JSON); code != http.StatusOK {
		t.Fatalf("genuine: %d %s", code, body)
	}
	for _, tt := range []struct{ path, json string }{
		{"/events/summary", call[0].JSON},
		{"/events/dtmf", call[0].JSON},
		{"/anything/x", call[0].JSON},
		{"/events/call", call[3].JSON}, // the summary as a leg
		{"/events/call", mango.SampleCall("E-old", "L-old", now.Add(-25*time.Hour))[0].JSON},
	} {
		if code, body := post(tt.path, tt.json); code != http.StatusBadRequest || !strings.Contains(body, `"reason":"replay"`) {
			t.Errorf("%s %.60s: %d %s, want 400 replay", tt.path, tt.json, code, body)
		}
	}
	unmarked := fmt.Sprintf(`{"command_id":"sms-1","timestamp":%d,"reason":1000}`, now.Unix())
	if code, body := post("/events/sms", unmarked); code != http.StatusOK || !strings.Contains(body, "accepted") {
		t.Fatalf("sms: %d %s", code, body)
	}
	if code, body := post("/anything/y", unmarked); code != http.StatusOK || !strings.Contains(body, "duplicate") {
		t.Fatalf("sms under another path: %d %s, want a duplicate", code, body)
	}
	if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_webhooks_rejected_total{account="office",pbx="mango",reason="replay"}`); v != 5 {
		t.Errorf("replays counted %g, want 5", v)
	}
	got := crm.WaitDelivered(t, 2, 30*time.Second)
	if len(got) != 2 || got[0].Event.Type != event.TypeRinging || got[1].Event.Type != event.TypeUnmapped {
		t.Fatalf("CRM got %d events, want call.ringing and one pbx.unmapped", len(got))
	}
}

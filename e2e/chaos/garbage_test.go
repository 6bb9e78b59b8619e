package chaos

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// mangoRawForm is a signed Mango form whose json value is sent unescaped, as a sloppy client
// might: deep nesting then fits the body limit. json must hold no '&', '+', '%' or '='.
func mangoRawForm(json string) string {
	return "vpbx_api_key=" + mangoKey + "&sign=" + mango.Sign(mangoKey, json, mangoSalt) + "&json=" + json
}

// Authentic messages that are garbage inside — nesting past encoding/json's depth limit, huge
// numbers, invalid UTF-8, NUL bytes, duplicate keys, not an object, unknown kinds — are accepted,
// as docs/delivery.md (Ingest) wants of anything authentic, and reach both CRMs as valid events
// (pbx.unmapped with the reason where they do not map): strict UTF-8 JSON that the schema accepts.
// Nothing panics, nothing is dropped.
func TestChaosAuthenticGarbage(t *testing.T) {
	h := start(t, baseConfig)
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	huge := "1" + strings.Repeat("0", 400)
	xvbForm := func(kv ...string) string {
		v := url.Values{"access_code": {xvbAccessCode}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	messages := []struct{ name, path, contentType, body string }{
		{"mango nested past the depth limit", "/hooks/mango/events/call", formType,
			mangoRawForm(`{"entry_id":"G-DEEP","call_id":"L","x":` + deep(12000) + `}`)},
		{"mango huge numbers", "/hooks/mango/events/call", formType, mango.FormBody(mangoKey, mangoSalt,
			`{"entry_id":"G-HUGE","call_id":"L","timestamp":1e999999,"seq":`+huge+`,"call_state":"Appeared"}`)},
		{"mango invalid utf-8", "/hooks/mango/events/call", formType, mango.FormBody(mangoKey, mangoSalt,
			"{\"entry_id\":\"G-UTF\xff\",\"call_id\":\"L\xfe\",\"timestamp\":"+strconv.FormatInt(time.Now().Unix(), 10)+",\"seq\":1,\"call_state\":\"Appeared\",\"from\":{\"number\":\"\xc3\x28\"}}")},
		{"mango NUL and duplicate keys", "/hooks/mango/events/summary", formType, mango.FormBody(mangoKey, mangoSalt,
			`{"entry_id":"G-NUL\u0000","entry_id":"G-DUP","talk_time":"x","end_time":-1}`)},
		{"mango not an object", "/hooks/mango/events/call", formType, mango.FormBody(mangoKey, mangoSalt, `[1,"two",null]`)},
		{"mango unknown kind", "/hooks/mango/events/weather", formType, mango.FormBody(mangoKey, mangoSalt, `{"entry_id":"G-KIND"}`)},
		{"xvb huge duration", "/hooks/xvb", formType, xvbForm("cmd", "event", "event", "COMPLETED", "callid", "G-XHUGE", "duration", huge, "status", "Success")},
		{"xvb cp1251", "/hooks/xvb", formType, "access_code=" + xvbAccessCode + "&cmd=event&event=INCOMING&callid=G-1251&phone=\xcd\xee\xec\xe5\xf0"},
		{"xvb unknown cmd", "/hooks/xvb", formType, xvbForm("cmd", "rating\x00", "callid", "G-XCMD", "rating", huge)},
		{"xvb json null and bool", "/hooks/xvb", "application/json",
			`{"access_code":"` + xvbAccessCode + `","cmd":"event","event":"ANSWERED","callid":"G-XJSON","ext":null,"phone":true}`},
	}
	for _, m := range messages {
		target := h.g.URL + m.path
		if strings.HasPrefix(m.path, "/hooks/xvb") {
			target = h.xvbURL(m.path)
		}
		if resp, body := gatewaytest.Request(t, http.MethodPost, target, m.contentType, m.body); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", m.name, resp.StatusCode, body)
		}
	}

	events := h.metricSum("pbxbridge_events_total")
	if int(events) < len(messages) {
		t.Fatalf("%g events stored for %d authentic messages", events, len(messages))
	}
	for _, f := range []*front{h.crm, h.erp} {
		for _, d := range f.crm.WaitDelivered(t, int(events), 30*time.Second) {
			if !utf8.Valid(d.Body) || !json.Valid(d.Body) {
				t.Errorf("delivered body is not UTF-8 JSON: %q", d.Body)
			}
			if err := eventtest.Validate(d.Body); err != nil {
				t.Errorf("%s does not validate: %v\n%s", d.Event.Type, err, d.Body)
			}
			if d.Event.Type == event.TypeUnmapped && d.Event.Data.Error == "" {
				t.Errorf("pbx.unmapped without a reason: %s", d.Body)
			}
		}
	}
}

package chaos

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// Every secret at work with debug logging on: commands by bearer token and by ?token=, with
// the PBX APIs unreachable (their errors are logged); recordings by token and by signed link;
// XVB's contact lookup with its header token; events whose payload carries XVB's token and key
// (an operator's mistake) and Mango's key and sign; wrong tokens and keys. The scan when the
// test ends finds none of the secrets in the log, /config/, the autosave file, the metrics or
// what the CRMs received.
func TestChaosSecrets(t *testing.T) {
	h := start(t, baseConfig)
	bearer := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	for _, tc := range []struct {
		name, method, target, contentType, body string
		header                                  []string
		want                                    int
		answer                                  string
	}{
		{"mango command, API unreachable", "POST", "/calls", "application/json", `{"account":"office","from":"101","to":"+79001234567"}`,
			bearer(commandToken), http.StatusServiceUnavailable, "unreachable"},
		{"xvb command by robot, API unreachable", "POST", "/calls?" + url.Values{"token": {commandToken}, "account": {"main"},
			"from": {"101"}, "to": {"79001234567"}}.Encode(), "", "", nil, http.StatusServiceUnavailable, "unreachable"},
		{"command with a wrong token", "POST", "/calls", "application/json", `{"account":"office","from":"101","to":"+79001234567"}`,
			bearer(commandToken + "x"), http.StatusUnauthorized, ""},
		{"recording, Mango API unreachable", "GET", "/recordings/office/REC-1", "", "", bearer(recordingToken), http.StatusBadGateway, "unreachable"},
		{"recording with a wrong token", "GET", "/recordings/office/REC-1", "", "", bearer(xvbToken), http.StatusUnauthorized, ""},
		{"recording with the token in the query", "GET", "/recordings/office/REC-1?token=" + recordingToken, "", "", nil, http.StatusUnauthorized, ""},
		{"xvb contact lookup", "POST", "/hooks/xvb?key=" + xvbKey, formType,
			url.Values{"access_code": {xvbAccessCode}, "cmd": {"contact"}, "phone": {"79201234567"}}.Encode(), nil, http.StatusOK, "Chaos Monkey"},
		{"xvb event carrying the token and key", "POST", "/hooks/xvb?key=" + xvbKey, formType,
			xvbIncoming("SECRETS") + "&" + url.Values{"token": {xvbToken}, "key": {xvbKey}}.Encode(), nil, http.StatusOK, "accepted"},
		{"xvb with a wrong key", "POST", "/hooks/xvb?key=" + xvbToken, formType, xvbIncoming("SECRETS-2"), nil, http.StatusUnauthorized, ""},
		{"mango event", "POST", "/hooks/mango/events/call", formType, mango.FormBody(mangoKey, mangoSalt, mango.SampleCall("SECRETS", "SECRETS-leg", time.Now())[0].JSON),
			nil, http.StatusOK, "accepted"},
		{"mango recording", "POST", "/hooks/mango/events/record/added", formType, mango.FormBody(mangoKey, mangoSalt,
			fmt.Sprintf(`{"entry_id":"SECRETS","timestamp":%d,"recording_id":"REC-1"}`, time.Now().Unix())), nil, http.StatusOK, "accepted"},
		{"mango signed with the wrong salt", "POST", "/hooks/mango/events/call", formType,
			mango.FormBody(mangoKey, xvbKey, mango.SampleCall("SECRETS-2", "L", time.Now())[0].JSON), nil, http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := gatewaytest.Request(t, tc.method, h.g.URL+tc.target, tc.contentType, tc.body, tc.header...)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.answer) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, body, tc.want, tc.answer)
			}
		})
	}

	// The signed link of the recording works without credentials, and carries none.
	var link string
	for n := 1; link == ""; n++ {
		for _, d := range h.crm.crm.WaitDelivered(t, n, 30*time.Second) {
			if d.Event.Type == event.TypeRecordingReady {
				link = d.Event.Data.RecordingURL
			}
		}
	}
	if !strings.Contains(link, "sig=") {
		t.Errorf("recording link %s is not signed", link)
	}
	if resp, body := gatewaytest.Request(t, http.MethodGet, link, "", ""); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("signed link: %d %s, want 502 (the Mango API is unreachable)", resp.StatusCode, body)
	}
	h.crm.crm.WaitDelivered(t, 3, 30*time.Second) // both calls' ringing, the recording
	h.erp.crm.WaitDelivered(t, 3, 30*time.Second)
}

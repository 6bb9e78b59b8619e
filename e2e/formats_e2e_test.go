package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// Two secrets while rotating: the old one and the new one.
const (
	secretOld = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretNew = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// TestTargetFormatsAndSignatures runs three targets on one account: CloudEvents binary mode
// signed with two secrets, the flat jq mapping of docs/events.md, and a jq program that fails at run
// time for one type.
func TestTargetFormatsAndSignatures(t *testing.T) {
	binary := gatewaytest.NewCRM(t, nil)
	flat := gatewaytest.NewCRM(t, nil)
	failing := gatewaytest.NewCRM(t, nil)
	config := gatewaytest.Caddyfile{
		PBX: []string{
			gatewaytest.Block("target binary "+binary.URL, "format cloudevents-binary", "secret "+secretOld, "secret {env.TEST_NEW_SECRET}"),
			gatewaytest.Block("target flat "+flat.URL, "format jq `"+delivery.FlatJQExample+"`", "events call.ringing call.answered call.completed"),
			gatewaytest.Block("target failing "+failing.URL,
				"format jq `"+`if .type == "call.answered" then error("no answers here") else {id} end`+"`",
				gatewaytest.Block("retry", "backoff 20ms 100ms")),
			gatewaytest.Block("mango office", "api_key "+testKey, "api_salt {env.TEST_MANGO_SALT}", "sources 127.0.0.1", "forward binary flat failing"),
		},
		Site: []string{gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office")},
	}
	g := gatewaytest.Start(t, config.String(), "TEST_MANGO_SALT="+testSalt, "TEST_NEW_SECRET="+secretNew)
	g.WaitReady()
	// A Cyrillic subject exercises the binding's percent-encoding.
	postCall(t, g, "звонок-1")

	t.Run("cloudevents-binary, signed with both secrets", func(t *testing.T) {
		got := binary.WaitDelivered(t, 4, 30*time.Second)
		for _, d := range got {
			var data event.Data
			if err := json.Unmarshal(d.Body, &data); err != nil || data.CallID != "звонок-1" {
				t.Errorf("body is not the event's data: %s", d.Body)
			}
			if ct := d.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			subject, err := url.PathUnescape(d.Header.Get("ce-subject"))
			if err != nil || subject != "звонок-1" || !strings.Contains(d.Header.Get("ce-subject"), "%D0%B7") {
				t.Errorf("ce-subject %q not the percent-encoded UTF-8 of the call id", d.Header.Get("ce-subject"))
			}
			for _, h := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "ce-dataschema"} {
				if d.Header.Get(h) == "" {
					t.Errorf("missing %s", h)
				}
			}
			sig := d.Header.Get("webhook-signature")
			if n := len(strings.Fields(sig)); n != 2 {
				t.Errorf("%d signatures while rotating, want 2: %q", n, sig)
			}
			for _, secret := range []string{secretOld, secretNew} {
				if err := d.VerifySignature(secret); err != nil {
					t.Errorf("signature does not verify with %s: %v", secret[:10], err)
				}
			}
		}
	})
	t.Run("jq flat shape", func(t *testing.T) {
		got := flat.WaitDelivered(t, 3, 30*time.Second)
		var statuses []string
		for _, d := range got {
			var row map[string]any
			if err := json.Unmarshal(d.Body, &row); err != nil {
				t.Fatalf("not JSON: %s", d.Body)
			}
			statuses = append(statuses, row["status"].(string))
			if row["call_id"] != "звонок-1" || row["from"] != "+79123456789" || row["direction"] != "in" {
				t.Errorf("row %v", row)
			}
			if row["status"] == "end" && (row["duration"] != float64(2) || row["disconnect_reason"] != "caller_hangup") {
				t.Errorf("end row %v", row)
			}
		}
		if strings.Join(statuses, " ") != "start answer end" {
			t.Errorf("statuses %v", statuses)
		}
	})
	t.Run("jq runtime error dead-letters with reason mapping", func(t *testing.T) {
		failing.WaitDelivered(t, 3, 30*time.Second) // the other three types map
		var dls []delivery.DeadLetter
		gatewaytest.Eventually(t, 30*time.Second, "the answered event's dead letter", func() bool {
			_, body := g.Admin(http.MethodGet, "/pbx/dead-letters?target=failing")
			return json.Unmarshal(body, &dls) == nil && len(dls) == 1
		})
		if dls[0].Type != event.TypeAnswered || dls[0].Reason != "mapping" || !strings.Contains(dls[0].LastError, "no answers here") {
			t.Errorf("dead letter %+v", dls[0])
		}
		if n := len(failing.Requests()); n != 3 {
			t.Errorf("the failing target got %d requests; a mapping error must not reach it", n)
		}
	})
	_, cfg := g.Admin(http.MethodGet, "/config/")
	if strings.Contains(string(cfg), secretNew) || strings.Contains(string(cfg), testSalt) ||
		!strings.Contains(string(cfg), "{env.TEST_NEW_SECRET}") || !strings.Contains(string(cfg), "{env.TEST_MANGO_SALT}") {
		t.Errorf("/config/ must keep the placeholders, never the secrets: %s", cfg)
	}
	if logs := g.Logs(); strings.Contains(logs, secretNew) || strings.Contains(logs, strings.TrimPrefix(secretOld, "whsec_")) {
		t.Error("a webhook secret appears in the log")
	}
}

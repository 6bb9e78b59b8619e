package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

const (
	testKey  = "testkey0123456789abcdefghijklmnop"
	testSalt = "testsalt0123456789abcdefghijklmno"
	formType = "application/x-www-form-urlencoded"
)

// mangoGateway is a gateway with the Mango account office (mangoOffice, taking webhooks from
// sources, with accountOptions) forwarding to crmTarget at crmURL; /healthz is pbx_health.
func mangoGateway(crmURL, sources string, accountOptions ...string) gatewaytest.Caddyfile {
	return gatewaytest.Caddyfile{
		PBX: []string{crmTarget(crmURL), mangoOffice(sources, accountOptions...)},
		Site: []string{
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /healthz", "pbx_health"),
		},
	}
}

// mangoOffice is the Mango account office with the test key and salt, taking webhooks from
// sources and forwarding to crm, with more options.
func mangoOffice(sources string, options ...string) string {
	return gatewaytest.Block("mango office", slices.Concat([]string{
		"api_key " + testKey,
		"api_salt {env.TEST_MANGO_SALT}",
		"sources " + sources,
		"forward crm",
	}, options)...)
}

// crmTarget is the target crm at url, retrying within milliseconds so that retries do not
// slow the tests down.
func crmTarget(url string) string {
	return gatewaytest.Block("target crm "+url, gatewaytest.Block("retry", "backoff 20ms 200ms"))
}

// startMango runs mangoGateway with the global options global (e.g. a servers block).
func startMango(t *testing.T, crm *gatewaytest.CRM, sources string, global ...string) *gatewaytest.Gateway {
	t.Helper()
	config := mangoGateway(crm.URL+"/events", sources)
	config.Global = global
	return startMangoGateway(t, config)
}

// startMangoGateway runs config, a gateway with mangoOffice, and waits until it is ready.
func startMangoGateway(t *testing.T, config gatewaytest.Caddyfile) *gatewaytest.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, config.String(), "TEST_MANGO_SALT="+testSalt)
	g.WaitReady()
	return g
}

// postCall posts one sample call and returns the ids the gateway accepted, in order.
func postCall(t *testing.T, g *gatewaytest.Gateway, entry string, header ...string) {
	t.Helper()
	for _, m := range mango.SampleCall(entry, entry+"-leg", time.Now()) {
		code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON), header...)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, body)
		}
	}
}

func TestMangoCallReachesCRMInOrder(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startMango(t, crm, "127.0.0.1")
	postCall(t, g, "MTYxNzM5NjY0OTE=")

	got := crm.WaitDelivered(t, 4, 30*time.Second)
	var types []string
	for _, d := range got {
		types = append(types, d.Event.Type)
		if err := eventtest.Validate(d.Body); err != nil {
			t.Errorf("%s does not validate: %v", d.Event.Type, err)
		}
		if d.Header.Get("webhook-id") != d.Event.ID || d.Header.Get("webhook-timestamp") == "" {
			t.Errorf("headers %v", d.Header)
		}
		if !strings.HasPrefix(d.Header.Get("User-Agent"), "pbxbridge/") {
			t.Errorf("User-Agent %q", d.Header.Get("User-Agent"))
		}
		if ct := d.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
			t.Errorf("Content-Type %q", ct)
		}
	}
	want := []string{event.TypeRinging, event.TypeAnswered, event.TypeLegEnded, event.TypeCompleted}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("types %v, want %v", types, want)
	}
	ringing := got[0].Event
	if ringing.Source != "/pbx/mango/office" || ringing.Subject != "MTYxNzM5NjY0OTE=" || ringing.DataSchema != event.DataSchema {
		t.Errorf("envelope %+v", ringing)
	}
	d := ringing.Data
	if d.CallID != "MTYxNzM5NjY0OTE=" || d.LegID != "MTYxNzM5NjY0OTE=-leg" || d.Seq != 1 || d.Direction != "inbound" ||
		d.From.Number != "+79123456789" || d.To.Extension != "101" || d.To.Group != "303" || d.Line != "+74951234567" || d.Agent != "101" {
		t.Errorf("ringing data %+v", d)
	}
	if d.Raw != nil {
		t.Errorf("raw sent to a target without `raw on`: %s", d.Raw)
	}
	completed := got[3].Event.Data
	if completed.Result != event.ResultAnswered || completed.DurationS == nil || *completed.DurationS != 4 || completed.TalkS == nil || *completed.TalkS != 2 {
		t.Errorf("completed data %+v", completed)
	}
}

func TestMangoRejections(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startMango(t, crm, "127.0.0.1")
	msg := mango.SampleCall("E-reject", "L", time.Now())[0]
	good := mango.FormBody(testKey, testSalt, msg.JSON)
	for _, tt := range []struct {
		name, path, body string
		want             int
	}{
		{"wrong sign", "/hooks/mango/events/call", mango.FormBody(testKey, "not-the-salt", msg.JSON), http.StatusUnauthorized},
		{"wrong key", "/hooks/mango/events/call", mango.FormBody("other-key", testSalt, msg.JSON), http.StatusUnauthorized},
		{"not a form", "/hooks/mango/events/call", "%zz", http.StatusBadRequest},
		{"no json field", "/hooks/mango/events/call", "vpbx_api_key=" + testKey, http.StatusBadRequest},
		{"too large", "/hooks/mango/events/call", good + "&pad=" + strings.Repeat("x", 70<<10), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := g.Post(tt.path, formType, tt.body)
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, body, tt.want)
			}
			var answer map[string]string
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer["reason"] == "" || answer["error"] == "" {
				t.Errorf("answer %q is not a clear JSON error", body)
			}
		})
	}
	// The ping of the cabinet's connection test: 200, signed or not, nothing queued.
	if code, body := g.Post("/hooks/mango/ping", formType, "anything"); code != http.StatusOK {
		t.Errorf("ping: %d %s", code, body)
	}
	// A good message after the bad ones is the only thing delivered.
	if code, body := g.Post("/hooks/mango/events/call", formType, good); code != http.StatusOK {
		t.Fatalf("good message: %d %s", code, body)
	}
	got := crm.WaitDelivered(t, 1, 30*time.Second)
	if len(got) != 1 || got[0].Event.Data.CallID != "E-reject" {
		t.Fatalf("delivered %+v", got)
	}
	logs := g.Logs()
	if !strings.Contains(logs, `"reason":"auth"`) || !strings.Contains(logs, "webhook rejected") {
		t.Errorf("no log line for the rejected webhooks")
	}
	if strings.Contains(logs, testSalt) {
		t.Errorf("the api_salt appears in the log")
	}
	metrics := g.MetricsText()
	for _, want := range []string{
		`pbxbridge_webhooks_rejected_total{account="office",pbx="mango",reason="auth"} 2`,
		`pbxbridge_webhooks_rejected_total{account="office",pbx="mango",reason="malformed"} 2`,
		`pbxbridge_webhooks_rejected_total{account="office",pbx="mango",reason="too_large"} 1`,
		`pbxbridge_webhooks_received_total{account="office",outcome="accepted",pbx="mango"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMangoSourceCheck(t *testing.T) {
	msg := mango.SampleCall("E-src", "L", time.Now())[0]
	body := mango.FormBody(testKey, testSalt, msg.JSON)
	const mangoAddr = "81.88.80.132"

	t.Run("outside the list", func(t *testing.T) {
		crm := gatewaytest.NewCRM(t, nil)
		g := startMango(t, crm, "mango")
		if code, answer := g.Post("/hooks/mango/events/call", formType, body); code != http.StatusForbidden {
			t.Fatalf("%d %s, want 403", code, answer)
		}
		// Without trusted_proxies a forged X-Forwarded-For is not believed.
		if code, answer := g.Post("/hooks/mango/events/call", formType, body, "X-Forwarded-For", mangoAddr); code != http.StatusForbidden {
			t.Fatalf("forged X-Forwarded-For: %d %s, want 403", code, answer)
		}
		if n := len(crm.Requests()); n != 0 {
			t.Fatalf("CRM got %d requests", n)
		}
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		crm := gatewaytest.NewCRM(t, nil)
		g := startMango(t, crm, "mango", gatewaytest.Block("servers", "trusted_proxies static 127.0.0.1/32"))
		if code, answer := g.Post("/hooks/mango/events/call", formType, body, "X-Forwarded-For", mangoAddr); code != http.StatusOK {
			t.Fatalf("forwarded Mango address: %d %s, want 200", code, answer)
		}
		if code, answer := g.Post("/hooks/mango/events/call", formType, body, "X-Forwarded-For", "203.0.113.9"); code != http.StatusForbidden {
			t.Fatalf("forwarded stranger: %d %s, want 403", code, answer)
		}
		// What nginx or a load balancer forwards when the client sent its own X-Forwarded-For:
		// the forged entry first, the address the proxy saw last. Only the last counts.
		for _, xff := range [][]string{
			{mangoAddr + ", 203.0.113.9"},
			{mangoAddr, "203.0.113.9"}, // two headers, the forged one first
			{mangoAddr + ",garbage, 203.0.113.9"},
		} {
			if code, answer := postForwarded(t, g, body, xff...); code != http.StatusForbidden || !strings.Contains(answer, "trusted_proxies_strict") {
				t.Errorf("forged X-Forwarded-For %q: %d %s, want 403 naming trusted_proxies_strict", xff, code, answer)
			}
		}
		if code, answer := postForwarded(t, g, body, "203.0.113.9, "+mangoAddr); code != http.StatusOK {
			t.Fatalf("Mango behind a client-written entry: %d %s, want 200", code, answer)
		}
		crm.WaitDelivered(t, 1, 30*time.Second)
		if n := len(crm.Requests()); n != 1 {
			t.Fatalf("CRM got %d requests, want 1", n)
		}
	})
	t.Run("behind a chain of trusted proxies, strict", func(t *testing.T) {
		crm := gatewaytest.NewCRM(t, nil)
		g := startMango(t, crm, "mango", gatewaytest.Block("servers", "trusted_proxies static 127.0.0.1/32 10.0.0.0/8", "trusted_proxies_strict"))
		if code, answer := postForwarded(t, g, body, mangoAddr+", 203.0.113.9, 10.1.2.3"); code != http.StatusForbidden {
			t.Fatalf("forged entry: %d %s, want 403", code, answer)
		}
		if code, answer := postForwarded(t, g, body, "203.0.113.9, "+mangoAddr+", 10.1.2.3"); code != http.StatusOK {
			t.Fatalf("Mango through two proxies: %d %s, want 200", code, answer)
		}
		crm.WaitDelivered(t, 1, 30*time.Second)
	})
}

// postForwarded posts a Mango webhook with one X-Forwarded-For header per value.
func postForwarded(t *testing.T, g *gatewaytest.Gateway, body string, xff ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.URL+"/hooks/mango/events/call", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", formType)
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRetriesDuplicatesAndDeadLetters(t *testing.T) {
	crm := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		switch {
		case ev.Data.CallID == "E-503" && attempt <= 2:
			return http.StatusServiceUnavailable
		case ev.Data.CallID == "E-422":
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	g := startMango(t, crm, "127.0.0.1")
	retried := mango.SampleCall("E-503", "L1", time.Now())[0]
	rejected := mango.SampleCall("E-422", "L2", time.Now())[0]
	for _, m := range []mango.Message{retried, retried, rejected} { // the second is a re-send
		if code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON)); code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
	}
	got := crm.WaitDelivered(t, 1, 30*time.Second)
	if got[0].Event.Data.CallID != "E-503" {
		t.Fatalf("delivered %+v", got[0].Event)
	}
	var dls []map[string]any
	gatewaytest.Eventually(t, 30*time.Second, "a dead letter for the 422", func() bool {
		_, body := g.Admin(http.MethodGet, "/pbx/dead-letters?target=crm")
		return json.Unmarshal(body, &dls) == nil && len(dls) == 1
	})
	if dls[0]["call_id"] != "E-422" || dls[0]["status"] != float64(422) || !strings.HasPrefix(dls[0]["id"].(string), "crm/") {
		t.Errorf("dead letter %v", dls[0])
	}
	if n := len(gatewaytest.UniqueIDs(crm.Delivered())); n != 1 {
		t.Errorf("%d events delivered, want 1 (the re-send is a duplicate)", n)
	}
	attempts := 0
	for _, r := range crm.Requests() {
		if r.Event.Data.CallID == "E-503" {
			attempts++
		}
	}
	if attempts != 3 {
		t.Errorf("CRM saw %d attempts of the retried event, want 3", attempts)
	}
	if m := g.MetricsText(); !strings.Contains(m, `pbxbridge_webhooks_received_total{account="office",outcome="duplicate",pbx="mango"} 1`) {
		t.Errorf("duplicate not counted")
	}
}

func TestAcknowledgedSurvivesKill9WhileCRMDown(t *testing.T) {
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusServiceUnavailable })
	g := startMango(t, crm, "127.0.0.1")
	postCall(t, g, "E-kill")
	gatewaytest.Eventually(t, 30*time.Second, "a failed attempt", func() bool { return len(crm.Requests()) > 0 })
	g.Kill()
	crm.SetRespond(nil)
	g.Restart()
	got := crm.WaitDelivered(t, 4, 60*time.Second)
	// The sample call's events were accepted in this order.
	order := map[string]int{event.TypeRinging: 0, event.TypeAnswered: 1, event.TypeLegEnded: 2, event.TypeCompleted: 3}
	position := map[string]int{}
	for _, d := range got {
		position[d.Event.ID] = order[d.Event.Type]
	}
	gatewaytest.CheckCallOrder(t, got, position)
	if t.Failed() {
		for _, d := range crm.Requests() {
			t.Logf("CRM got %s %s -> %d", d.Event.Type, d.Event.ID, d.Status)
		}
	}
}

func TestReloadKeepsMetricsAndQueue(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := startMango(t, crm, "127.0.0.1")
	postCall(t, g, "E-reload-1")
	crm.WaitDelivered(t, 4, 30*time.Second)
	config, err := os.ReadFile(g.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	// A changed config: another timeout for the target.
	changed := strings.Replace(string(config), "retry {", "timeout 5s\n\t\t\tretry {", 1)
	if err := g.Reload(changed); err != nil {
		t.Fatal(err)
	}
	postCall(t, g, "E-reload-2")
	crm.WaitDelivered(t, 8, 30*time.Second)
	for _, want := range []string{
		`pbxbridge_webhooks_received_total{account="office",outcome="accepted",pbx="mango"} 8`,
		// Counted once the CRM's answer is read, a moment after the CRM has the event.
		`pbxbridge_delivery_attempts_total{result="success",target="crm"} 8`,
	} {
		gatewaytest.Eventually(t, 10*time.Second, "metrics after the reload to show "+want, func() bool {
			return strings.Contains(g.MetricsText(), want)
		})
	}
	if strings.Count(g.Logs(), `"msg":"queue ready"`) != 2 {
		t.Errorf("expected the queue to be applied twice (start and reload)")
	}
}

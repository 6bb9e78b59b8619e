package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// Secrets and codes of the click-to-call tests' config.
const (
	originateToken = "crm-command-token-0123456789"
	fakeMangoKey   = "fakemangokey0123456789abcdefghij"
	fakeMangoSalt  = "fakemangosalt0123456789abcdefghi"
	fakeXVBToken   = "xvb-c2c-secret-token"
	fakeXVBCode    = "10019"
)

// originateGateway has a Mango and an XVB account whose APIs are at mangoAPI and xvbAPI, and
// pbx_originate at /calls; the access log keeps a robot's token out.
func originateGateway(crmURL, mangoAPI, xvbAPI string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			crmTarget(crmURL),
			gatewaytest.Block("mango office", "api_key "+fakeMangoKey, "api_salt {env.TEST_MANGO_SALT}", "api_url "+mangoAPI, "sources any", "forward crm"),
			gatewaytest.Block("xvb main", "access_code "+fakeXVBCode, "api_url "+xvbAPI, "token {env.TEST_XVB_TOKEN}", "sources any", "forward crm"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("token"),
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token {env.CRM_COMMAND_TOKEN}", "timeout 2s")),
		},
	}.String()
}

// sendCommand sends a command to the gateway as a CRM does: JSON with the bearer token, or,
// with body "", as a robot does: query parameters with ?token=.
func sendCommand(t *testing.T, g *gatewaytest.Gateway, body string, query url.Values) (int, string, http.Header) {
	t.Helper()
	target, contentType := g.URL+"/calls", "application/json"
	if query != nil {
		target, contentType = target+"?"+query.Encode(), ""
	}
	var header []string
	if contentType != "" {
		header = []string{"Authorization", "Bearer " + originateToken}
	}
	resp, b := gatewaytest.Request(t, http.MethodPost, target, contentType, body, header...)
	return resp.StatusCode, string(b), resp.Header
}

// The whole loop through the built binary: the CRM starts a call, Mango's result and the
// call's legs come back to the CRM with the CRM's command_id; repetitions call nobody twice,
// also after a reload and a restart; Mango's lock-out outlives a reload; a burst keeps to
// Mango's 4/s; the token stays out of the access log.
func TestOriginateEndToEnd(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	fakeMango, fakeXVB := gatewaytest.NewMangoAPI(t, fakeMangoKey, fakeMangoSalt), gatewaytest.NewXVBAPI(t, fakeXVBCode, fakeXVBToken)
	config := originateGateway(crm.URL+"/events", fakeMango.APIURL(), fakeXVB.APIURL())
	g := gatewaytest.Start(t, config,
		"TEST_MANGO_SALT="+fakeMangoSalt, "TEST_XVB_TOKEN="+fakeXVBToken, "CRM_COMMAND_TOKEN="+originateToken)
	g.WaitReady()

	const first = `{"account":"office","from":"101","to":"+7 (900) 123-45-67","command_id":"crm-42"}`
	const accepted = `{"command_id":"crm-42","status":"accepted"}` + "\n"
	code, body, _ := sendCommand(t, g, first, nil)
	if code != http.StatusOK || body != accepted {
		t.Fatalf("callback: %d %s", code, body)
	}
	if got := fakeMango.Received(); len(got) != 1 || got[0].JSON != `{"command_id":"crm-42","from":{"extension":"101","number":""},"to_number":"79001234567"}` {
		t.Fatalf("Mango got %+v", got)
	}

	robot := url.Values{"token": {originateToken}, "account": {"main"}, "from": {"102"}, "to": {"8 (900) 765-43-21"}}
	if code, body, _ := sendCommand(t, g, "", robot); code != http.StatusOK || !strings.Contains(body, `"status":"accepted"`) {
		t.Fatalf("robot makeCall: %d %s", code, body)
	}
	if got := fakeXVB.Received(); len(got) != 1 || got[0].Get("to") != "79007654321" || got[0].Get("from") != "102" {
		t.Fatalf("XVB got %v", got)
	}
	if code, _, _ := sendCommand(t, g, "", url.Values{"account": {"main"}, "from": {"102"}, "to": {"79007654321"}}); code != http.StatusUnauthorized || len(fakeXVB.Received()) != 1 {
		t.Fatalf("without a token: %d", code)
	}
	if !strings.Contains(g.MetricsText(), `pbxbridge_commands_total{account="main",command="make_call",outcome="accepted"} 1`) {
		t.Error("the robot's makeCall is not counted")
	}

	t.Run("result and legs carry the command_id", func(t *testing.T) {
		for _, m := range []struct{ suffix, json string }{
			{"/result/callback", `{"command_id":"crm-42","result":1000}`},
			{"/events/call", `{"entry_id":"E42","call_id":"L42","timestamp":` + strconv.FormatInt(time.Now().Unix(), 10) + `,"seq":1,"call_state":"Appeared","location":"abonent",` +
				`"from":{"number":"79001234567"},"to":{"extension":"101"},"command_id":"crm-42"}`},
		} {
			if code, body := g.Post("/hooks/mango"+m.suffix, "application/x-www-form-urlencoded", mango.FormBody(fakeMangoKey, fakeMangoSalt, m.json)); code != http.StatusOK {
				t.Fatalf("%s: %d %s", m.suffix, code, body)
			}
		}
		types := map[string]event.Data{}
		for _, d := range crm.WaitDelivered(t, 2, 30*time.Second) {
			types[d.Event.Type] = d.Event.Data
		}
		if r := types[event.TypeCommandResult]; r.CommandID != "crm-42" || r.Command != "callback" || r.Reason != event.ReasonCompleted {
			t.Errorf("command.result: %+v", r)
		}
		if leg := types[event.TypeRinging]; leg.CommandID != "crm-42" || leg.Agent != "101" {
			t.Errorf("call.ringing: %+v", leg)
		}
	})

	repeatOnce := func(t *testing.T, when string) {
		t.Helper()
		before := fakeMango.Requests()
		code, body, header := sendCommand(t, g, first, nil)
		if code != http.StatusOK || body != accepted || header.Get("Idempotent-Replayed") != "true" || fakeMango.Requests() != before {
			t.Errorf("%s: %d %s replayed=%q, Mango got %d more", when, code, body, header.Get("Idempotent-Replayed"), fakeMango.Requests()-before)
		}
	}
	t.Run("a repeated command_id calls once, across a reload and a restart", func(t *testing.T) {
		repeatOnce(t, "repeated")
		if err := g.Reload(config); err != nil {
			t.Fatal(err)
		}
		repeatOnce(t, "after a reload")
		g.Stop()
		g.Restart()
		g.WaitReady()
		repeatOnce(t, "after a restart")
	})

	t.Run("a burst keeps to Mango's 4/s", func(t *testing.T) {
		before := len(fakeMango.Received())
		codes := make([]int, 20)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, _ = sendCommand(t, g, fmt.Sprintf(`{"account":"office","from":"101","to":"7900555%04d"}`, i), nil)
			}()
		}
		wg.Wait()
		ok := 0
		for _, c := range codes {
			if c == http.StatusOK {
				ok++
			} else if c != http.StatusTooManyRequests {
				t.Errorf("answer %d", c)
			}
		}
		fakeMango.CheckNoViolations(t)
		if sent := len(fakeMango.Received()) - before; sent != ok || ok < 4 {
			t.Errorf("%d accepted, Mango got %d", ok, sent)
		}
		t.Logf("burst of 20 through the binary: %d accepted, %d answered 429", ok, 20-ok)
	})

	t.Run("Mango's lock-out outlives a reload", func(t *testing.T) {
		fakeMango.Play("401")
		code, body, header := sendCommand(t, g, `{"account":"office","from":"101","to":"79001112233"}`, nil)
		if code != http.StatusServiceUnavailable || header.Get("Retry-After") == "" {
			t.Fatalf("401 from Mango: %d %s", code, body)
		}
		if err := g.Reload(config); err != nil {
			t.Fatal(err)
		}
		before := fakeMango.Requests()
		code, body, _ = sendCommand(t, g, `{"account":"office","from":"101","to":"79001112234"}`, nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "locked") || fakeMango.Requests() != before {
			t.Errorf("after a reload during the lock-out: %d %s, Mango got %d more", code, body, fakeMango.Requests()-before)
		}
	})

	metricsText := g.MetricsText()
	for _, series := range []string{
		`pbxbridge_commands_total{account="office",command="callback",outcome="accepted"}`,
		`pbxbridge_commands_total{account="office",command="callback",outcome="duplicate"}`,
		`pbxbridge_commands_total{account="office",command="callback",outcome="locked_out"}`,
		`pbxbridge_command_duration_seconds_count{account="office",command="callback"}`,
	} {
		if !strings.Contains(metricsText, series+" ") {
			t.Errorf("no %s in the metrics", series)
		}
	}
	logs := g.Logs()
	if strings.Contains(logs, originateToken) || strings.Contains(logs, fakeXVBToken) || strings.Contains(logs, fakeMangoSalt) {
		t.Error("a secret in the gateway's log")
	}
	if !strings.Contains(logs, `"uri":"/calls?account=main`) {
		t.Error("the robot's request is not in the access log (without its token)")
	}
}

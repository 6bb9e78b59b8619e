package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/itoolabs"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

const b24ITooLabsToken = "itoolabs-crm-token-0123456789"

// bitrix24Gateway has a Bitrix24 target for portal p (its OAuth server too), the Mango account
// office (commands to mangoAPI), the XVB account main and the ITooLabs account megafon forwarding to it, and the
// application's handler at /bitrix24. The fake's limit is scaled by the caller.
func bitrix24Gateway(p *bitrix24test.Portal, mangoAPI string, rate int, site ...string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			"outbound_allow 127.0.0.1/32",
			gatewaytest.Block("target b24 bitrix24 "+p.URL,
				"client_id "+p.ClientID, "client_secret {env.TEST_B24_SECRET}", "oauth_url "+p.URL,
				gatewaytest.Block("lines", "+74951234567 office"),
				"rate "+strconv.Itoa(rate), "burst 50", "concurrency 16",
				gatewaytest.Block("retry", "backoff 20ms 1s")),
			gatewaytest.Block("mango office", "api_key "+fakeMangoKey, "api_salt {env.TEST_MANGO_SALT}", "api_url "+mangoAPI, "sources any", "forward b24"),
			gatewaytest.Block("xvb main", "access_code "+fakeXVBCode, "sources any", "forward b24"),
			gatewaytest.Block("itoolabs megafon", "crm_token "+b24ITooLabsToken, "sources any", "forward b24"),
		},
		Site: append([]string{
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /hooks/itoolabs", "pbx_webhook megafon"),
			gatewaytest.Block("route /bitrix24", "pbx_crm b24"),
		}, site...),
	}.String()
}

func startBitrix24(t *testing.T, p *bitrix24test.Portal, rate int) (*gatewaytest.Gateway, *gatewaytest.MangoAPI) {
	t.Helper()
	fakeMango := gatewaytest.NewMangoAPI(t, fakeMangoKey, fakeMangoSalt)
	return installBitrix24(t, p, bitrix24Gateway(p, fakeMango.APIURL(), rate)), fakeMango
}

// installBitrix24 starts a gateway on config and installs the application through it.
func installBitrix24(t *testing.T, p *bitrix24test.Portal, config string) *gatewaytest.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, config, "TEST_B24_SECRET="+p.ClientSecret, "TEST_MANGO_SALT="+fakeMangoSalt, "TEST_RECORDINGS_TOKEN=recordings-token-0123456789")
	g.WaitReady()
	resp, err := p.Install(context.Background(), g.URL+"/bitrix24")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("install: %v %v\n%s", resp, err, g.Logs())
	}
	return g
}

// finishedCalls waits until the portal has finished n calls.
func finishedCalls(t *testing.T, p *bitrix24test.Portal, n int, timeout time.Duration) []bitrix24test.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.WaitFinished(ctx, n); err != nil {
		t.Fatalf("%d calls not finished in %s", n, timeout)
	}
	return p.Calls()
}

// Through the built binary: the installation binds the events to the gateway and adds the
// line; a Mango, an XVB and an ITooLabs call each appear as one registered and finished call with the
// employee's user, type, talk time, status and record; a click on a number with a wrong
// application token originates nothing, with the right one Mango gets one callback and the
// call's events finish Bitrix24's CALL_ID; after the uninstall the circuit opens with the
// reason in /pbx/status and the backlog is kept.
func TestBitrix24EndToEnd(t *testing.T) {
	p := bitrix24test.New(t, bitrix24test.Options{})
	p.AddUser("7", "101")
	p.AddUser("8", "701")
	p.AddUser("9", "100")
	g, fakeMango := startBitrix24(t, p, 2)
	st := p.Stats()
	if st.Handlers["ONEXTERNALCALLSTART"] != g.URL+"/bitrix24" || st.Handlers["ONAPPUNINSTALL"] != g.URL+"/bitrix24" {
		t.Errorf("handlers = %v", st.Handlers)
	}
	if len(st.Lines) != 1 || st.Lines[0] != "+74951234567" {
		t.Errorf("lines = %v", st.Lines)
	}

	gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", fakeMangoKey, fakeMangoSalt, "b24", 1, 1, time.Now().Add(30*time.Second))
	gatewaytest.XVBLoad(t, g.URL+"/hooks/xvb", fakeXVBCode, "b24-xvb", 1, 1, time.Now().Add(30*time.Second))
	for _, m := range itoolabs.SampleCall(b24ITooLabsToken, "b24-itoolabs", time.Now()) {
		if code, out := g.Post("/hooks/itoolabs", "application/x-www-form-urlencoded", m.Body); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, out)
		}
	}
	calls := finishedCalls(t, p, 3, 30*time.Second)
	want := map[string]bitrix24test.Call{
		"b24-itoolabs": {Type: "2", Phone: "+79161234567", UserID: "8", FinishUser: "8", Duration: 42, StatusCode: "200", Line: "+74951234567",
			Record: "https://records.example.megapbx.ru/b24-itoolabs.mp3"},
		"b24-0": {Type: "2", Phone: "+79123456789", UserID: "7", FinishUser: "7", Duration: 2, StatusCode: "200", Line: "+74951234567"},
		// XVB's INCOMING names no employee (the default user's card), ANSWERED names ext 100.
		"b24-xvb-0": {Type: "2", UserID: "1", FinishUser: "9", Duration: 16, StatusCode: "200",
			Record: "https://pbx.example.net/ui/msg_download/120/" + fakeXVBCode + "/b24-xvb-0.q722"},
	}
	if len(calls) != 3 {
		t.Fatalf("calls = %+v", calls)
	}
	for _, c := range calls {
		w, ok := want[c.ExternalCallID]
		if !ok || c.Type != w.Type || c.UserID != w.UserID || c.FinishUser != w.FinishUser || c.Duration != w.Duration ||
			c.StatusCode != w.StatusCode || c.Finishes != 1 || (w.Phone != "" && c.Phone != w.Phone) || (w.Line != "" && c.Line != w.Line) {
			t.Errorf("call %s = %+v\nwant %+v", c.ExternalCallID, c, w)
		}
		if w.Record != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := p.WaitCalls(ctx, func(cs []bitrix24test.Call) bool {
				for _, x := range cs {
					if x.ExternalCallID == c.ExternalCallID {
						return x.Record == w.Record
					}
				}
				return false
			})
			cancel()
			if err != nil {
				t.Errorf("call %s: no record %s", c.ExternalCallID, w.Record)
			}
		}
	}

	ctx := context.Background()
	if _, resp, err := p.ClickToCall(ctx, "7", "+79001234567", "+74951234567", "wrong-token"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("click with a wrong token: %v %v, want 401", resp, err)
	}
	if n := len(fakeMango.Received()); n != 0 {
		t.Fatalf("Mango got %d commands after a wrong token", n)
	}
	clicked, resp, err := p.ClickToCall(ctx, "7", "+79001234567", "+74951234567", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("click: %v %v", resp, err)
	}
	// The portal's repeat of the event (the same CALL_ID) places nothing twice.
	if again, resp, err := p.ClickToCall(ctx, "7", "+79001234567", "+74951234567", ""); err != nil || resp.StatusCode != http.StatusOK || again != clicked {
		t.Fatalf("repeated click: %v %v, CALL_ID %s want %s", resp, err, again, clicked)
	}
	got := fakeMango.Received()
	if len(got) != 1 || got[0].Name != "callback" || !strings.Contains(got[0].JSON, `"extension":"101"`) || !strings.Contains(got[0].JSON, `"to_number":"79001234567"`) {
		t.Fatalf("Mango got %+v, want one callback from 101 to 79001234567", got)
	}
	commandID, _ := got[0].Body["command_id"].(string)
	// Mango's legs of the callback carry its command_id.
	legs := mango.SampleCall("b24-click", "b24-click-leg", time.Now())
	for _, m := range legs {
		body := strings.Replace(m.JSON, `"entry_id":"b24-click"`, `"entry_id":"b24-click","command_id":"`+commandID+`"`, 1)
		if code, out := g.Post("/hooks/mango"+m.Suffix, "application/x-www-form-urlencoded", mango.FormBody(fakeMangoKey, fakeMangoSalt, body)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, out)
		}
	}
	calls = finishedCalls(t, p, 4, 30*time.Second)
	for _, c := range calls {
		if c.CallID == clicked && c.Finishes != 1 {
			t.Errorf("the clicked call was finished %d times", c.Finishes)
		}
		if c.ExternalCallID == "b24-click" {
			t.Errorf("the clicked call was registered again: %+v", c)
		}
	}

	// `pbxbridge simulate bitrix24 click` posts the same click: with the application's token
	// it places a call, with another it gets 401.
	simulate := func(token string) (string, error) {
		out, err := exec.Command(gatewaytest.Binary(t), "simulate", "bitrix24", "click", "--url", g.URL+"/bitrix24",
			"--domain", p.Domain, "--member-id", p.MemberID, "--application-token", token,
			"--user", "7", "--phone", "+79001234568", "--line", "+74951234567").CombinedOutput()
		return string(out), err
	}
	if out, err := simulate("wrong-token"); err == nil || !strings.Contains(out, "ONEXTERNALCALLSTART 401") {
		t.Errorf("simulate with a wrong token: %v\n%s", err, out)
	}
	if out, err := simulate(p.ApplicationToken()); err != nil || len(fakeMango.Received()) != 2 {
		t.Errorf("simulate: %v, Mango got %d commands\n%s", err, len(fakeMango.Received()), out)
	}

	if resp, err := p.Uninstall(ctx); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("uninstall: %v %v", resp, err)
	}
	gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", fakeMangoKey, fakeMangoSalt, "b24-after", 1, 1, time.Now().Add(30*time.Second))
	var status delivery.Status
	gatewaytest.Eventually(t, 20*time.Second, "the circuit opens with the uninstall as its reason", func() bool {
		g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &status)
		return len(status.Targets) == 1 && status.Targets[0].CircuitOpen && strings.Contains(status.Targets[0].CircuitReason, "uninstalled")
	})
	if ts := status.Targets[0]; ts.DeadLetters != 0 || ts.Depth == 0 {
		t.Errorf("after the uninstall: %d dead letters, depth %d; want the backlog kept", ts.DeadLetters, ts.Depth)
	}
	if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_bitrix24_calls_total{target="b24",step="finished"}`); v != 4 {
		t.Errorf("pbxbridge_bitrix24_calls_total{step=finished} = %v, want 4", v)
	}
}

// 500 Mango calls from 16 workers against the portal's limit (Bitrix24's: 2 requests a second
// drained, 50 at most): every call registered
// once and finished once, none finished before registered, no limit refusal left unrecovered,
// and the waiting calls' methods batched.
func TestBitrix24Load(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	p := bitrix24test.New(t, bitrix24test.Options{})
	p.AddUser("7", "101")
	g, _ := startBitrix24(t, p, 2)
	start := time.Now()
	gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", fakeMangoKey, fakeMangoSalt, "load", n, 16, time.Now().Add(60*time.Second))
	calls := finishedCalls(t, p, n, 90*time.Second)
	took := time.Since(start)
	if len(calls) != n {
		t.Fatalf("%d calls registered, want %d", len(calls), n)
	}
	for _, c := range calls {
		if c.Registrations != 1 || c.Finishes != 1 || c.Duration != 2 || c.StatusCode != "200" || c.FinishUser != "7" {
			t.Fatalf("call %+v: want registered once, finished once, 2 s, 200, user 7", c)
		}
	}
	st := p.Stats()
	if st.Refused["ERROR_CORE"] != 0 {
		t.Errorf("%d methods refused with ERROR_CORE", st.Refused["ERROR_CORE"])
	}
	most, carried := 0, 0
	for _, b := range st.Batches {
		most, carried = max(most, b), carried+b
	}
	if most < 2 {
		t.Errorf("no batch carried several calls' methods: %v", st.Batches)
	}
	var status delivery.Status
	g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &status)
	if ts := status.Targets[0]; ts.DeadLetters != 0 {
		t.Errorf("%d dead letters", ts.DeadLetters)
	}
	t.Logf("%d calls in %s (%.0f calls/min at 2 requests/s): %d requests, %d batches carrying %d methods (most %d), %d QUERY_LIMIT_EXCEEDED (all retried)",
		n, took.Round(time.Millisecond), float64(n)/took.Minutes(), st.Requests, len(st.Batches), carried, most, st.Refused["QUERY_LIMIT_EXCEEDED"])
}

// kill -9 between a call's register and its finish: the finish after the restart uses the
// stored CALL_ID, and the restarted gateway uses the stored token pair.
func TestBitrix24KillBetweenRegisterAndFinish(t *testing.T) {
	p := bitrix24test.New(t, bitrix24test.Options{})
	p.AddUser("7", "101")
	g, _ := startBitrix24(t, p, 2)
	post := func(m mango.Message) {
		t.Helper()
		if code, out := g.Post("/hooks/mango"+m.Suffix, "application/x-www-form-urlencoded", mango.FormBody(fakeMangoKey, fakeMangoSalt, m.JSON)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, out)
		}
	}
	msgs := mango.SampleCall("killed", "killed-leg", time.Now())
	post(msgs[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitCalls(ctx, func(cs []bitrix24test.Call) bool { return len(cs) == 1 }); err != nil {
		t.Fatal("the call was not registered")
	}
	gatewaytest.Eventually(t, 20*time.Second, "the ringing is delivered", func() bool {
		v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_delivery_attempts_total{target="b24",result="success"}`)
		return v >= 1
	})
	g.Kill()
	g.Restart()
	g.WaitReady()
	for _, m := range msgs[1:] {
		post(m)
	}
	calls := finishedCalls(t, p, 1, 30*time.Second)
	if len(calls) != 1 || calls[0].Registrations != 1 || calls[0].Finishes != 1 {
		t.Fatalf("calls = %+v, want one registered once and finished once", calls)
	}
	if n := p.Stats().Refreshes; n != 0 {
		t.Errorf("%d token refreshes after the restart, want 0 (the stored pair)", n)
	}
}

// The portal down: calls wait in the queue, nothing is dead-lettered, and all are finished
// once it is back.
func TestBitrix24PortalDown(t *testing.T) {
	p := bitrix24test.New(t, bitrix24test.Options{})
	p.AddUser("7", "101")
	g, _ := startBitrix24(t, p, 2)
	p.SetDown(true)
	gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", fakeMangoKey, fakeMangoSalt, "down", 20, 4, time.Now().Add(30*time.Second))
	gatewaytest.Eventually(t, 20*time.Second, "deliveries fail while the portal is down", func() bool {
		return gatewaytest.MetricSum(g.MetricsText(), "pbxbridge_delivery_attempts_total", `target="b24"`, `result="retry"`) >= 3
	})
	p.SetDown(false)
	calls := finishedCalls(t, p, 20, 60*time.Second)
	if len(calls) != 20 {
		t.Errorf("%d calls, want 20", len(calls))
	}
	var status delivery.Status
	g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &status)
	if ts := status.Targets[0]; ts.DeadLetters != 0 {
		t.Errorf("%d dead letters", ts.DeadLetters)
	}
}

// A Mango recording reaches Bitrix24 as pbxbridge's signed pbx_recordings link, which the
// portal fetches without PBX credentials (the fake portal fetches it and refuses a link that
// does not answer 200), after the call's finish.
func TestBitrix24Recording(t *testing.T) {
	recordings := gatewaytest.NewMangoRecordings(t, fakeMangoKey, fakeMangoSalt)
	const id = "MToxMDAwNjA4NTo1MDA5/NDExMDIy+OjE="
	recordings.Add(id, 50_000)
	p := bitrix24test.New(t, bitrix24test.Options{FetchRecords: true})
	p.AddUser("7", "101")
	g := installBitrix24(t, p, bitrix24Gateway(p, recordings.APIURL(), 2,
		gatewaytest.Block("route /recordings/*", gatewaytest.Block("pbx_recordings", "token {env.TEST_RECORDINGS_TOKEN}", "public_url {HTTP}/recordings"))))
	for _, m := range mango.SampleCall("rec-call", "rec-leg", time.Now()) {
		if code, out := g.Post("/hooks/mango"+m.Suffix, "application/x-www-form-urlencoded", mango.FormBody(fakeMangoKey, fakeMangoSalt, m.JSON)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, out)
		}
	}
	added := fmt.Sprintf(`{"entry_id":"rec-call","product_id":300022532,"user_id":-1,"timestamp":%d,"recording_id":%q}`, time.Now().Unix(), id)
	if code, out := g.Post("/hooks/mango/events/record/added", "application/x-www-form-urlencoded", mango.FormBody(fakeMangoKey, fakeMangoSalt, added)); code != http.StatusOK {
		t.Fatalf("record/added: %d %s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.WaitCalls(ctx, func(cs []bitrix24test.Call) bool { return len(cs) == 1 && cs[0].Record != "" })
	if err != nil {
		t.Fatalf("no record attached: %+v", p.Calls())
	}
	if c := p.Calls()[0]; !strings.HasPrefix(c.Record, g.URL+"/recordings/office/") || !strings.Contains(c.Record, "sig=") || c.Finishes != 1 {
		t.Errorf("call %+v: want one finish and a signed pbx_recordings link", c)
	}
}

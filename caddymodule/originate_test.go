package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

const (
	originateToken = "crm-command-token-0123456789"
	fakeMangoKey   = "fakemangokey0123456789abcdefghij"
	fakeMangoSalt  = "fakemangosalt0123456789abcdefghi"
	fakeXVBToken   = "xvb-c2c-secret-token"
	fakeXVBCode    = "10019"
)

// originateFixture is a pbx_originate handler on 127.0.0.1 with a real queue engine (for the
// command bucket): account office is Mango at the fake Mango, main is XVB at the fake XVB.
type originateFixture struct {
	url   string
	h     *Originate
	mango *gatewaytest.MangoAPI
	xvb   *gatewaytest.XVBAPI
	logs  *observer.ObservedLogs
}

func newOriginateFixture(t *testing.T, timeout time.Duration) *originateFixture {
	t.Helper()
	fx := &originateFixture{mango: gatewaytest.NewMangoAPI(t, fakeMangoKey, fakeMangoSalt), xvb: gatewaytest.NewXVBAPI(t, fakeXVBCode, fakeXVBToken)}
	eng, err := delivery.Open(delivery.Config{DataDir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	office := delivery.Account{PBX: "mango", Account: "office"}
	if err := eng.Apply(context.Background(), delivery.Config{}, []delivery.Target{{Name: "crm", URL: "http://127.0.0.1:1", Accounts: []delivery.Account{office}}}); err != nil {
		t.Fatal(err)
	}
	app := &App{engine: new(atomic.Pointer[delivery.Engine]), accounts: map[string]pbx.Account{
		"office": provisioned(t, "mango", "office", &mango.Config{APIKey: fakeMangoKey, APISalt: fakeMangoSalt, APIURL: fx.mango.APIURL(), Forward: []string{"crm"}}),
		"main":   provisioned(t, "xvb", "main", &xvb.Config{AccessCode: fakeXVBCode, Token: fakeXVBToken, APIURL: fx.xvb.APIURL(), Sources: []string{"any"}, Forward: []string{"crm"}}),
		"bare":   provisioned(t, "xvb", "bare", &xvb.Config{AccessCode: fakeXVBCode, Sources: []string{"any"}, Forward: []string{"crm"}}),
	}}
	app.engine.Store(eng)
	core, logs := observer.New(zapcore.DebugLevel)
	fx.h, fx.logs = &Originate{Token: originateToken, Timeout: caddy.Duration(timeout)}, logs
	if err := fx.h.provision(app, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = fx.h.ServeHTTP(w, r, nil) }))
	t.Cleanup(srv.Close)
	fx.url = srv.URL + "/calls"
	return fx
}

type commandReply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends a request; query is appended to the URL, body sent with contentType.
func (fx *originateFixture) do(t testing.TB, method, query, contentType, body string, header ...string) commandReply {
	t.Helper()
	target := fx.url
	if query != "" {
		target += "?" + query
	}
	resp, raw := gatewaytest.Request(t, method, target, contentType, body, header...)
	reply := commandReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &reply.body)
	return reply
}

// postJSON sends a JSON command with the bearer token.
func (fx *originateFixture) postJSON(t testing.TB, body string) commandReply {
	t.Helper()
	return fx.do(t, http.MethodPost, "", "application/json", body, "Authorization", "Bearer "+originateToken)
}

func commandsCounted(account, command, outcome string) float64 {
	var m dto.Metric
	_ = metrics.commands.WithLabelValues(account, command, outcome).Write(&m)
	return m.GetCounter().GetValue()
}

func TestOriginateToken(t *testing.T) {
	fx := newOriginateFixture(t, time.Second)
	body := `{"account":"office","from":"101","to":"+79001234567"}`
	for _, tt := range []struct {
		name   string
		query  string
		header []string
		want   int
	}{
		{"no token", "", nil, http.StatusUnauthorized},
		{"wrong bearer", "", []string{"Authorization", "Bearer wrong"}, http.StatusUnauthorized},
		{"token in another scheme", "", []string{"Authorization", "Basic " + originateToken}, http.StatusUnauthorized},
		{"wrong query token", "token=wrong", nil, http.StatusUnauthorized},
		{"a wrong bearer is not saved by a right query token", "token=" + originateToken, []string{"Authorization", "Bearer wrong"}, http.StatusUnauthorized},
		{"bearer", "", []string{"Authorization", "Bearer " + originateToken}, http.StatusOK},
		{"query token", "token=" + originateToken, nil, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := fx.mango.Requests()
			r := fx.do(t, http.MethodPost, tt.query, "application/json", body, tt.header...)
			if r.status != tt.want {
				t.Fatalf("%d %s, want %d", r.status, r.raw, tt.want)
			}
			sent := fx.mango.Requests() - before
			if tt.want == http.StatusUnauthorized {
				if sent != 0 || r.header.Get("WWW-Authenticate") == "" || r.body["error"] == "" {
					t.Errorf("sent %d, WWW-Authenticate %q, body %s", sent, r.header.Get("WWW-Authenticate"), r.raw)
				}
			} else if sent != 1 {
				t.Errorf("Mango got %d requests", sent)
			}
		})
	}
	for _, e := range fx.logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, originateToken) || strings.Contains(line, fakeMangoSalt) {
			t.Errorf("a secret in the log: %s", line)
		}
	}
	fx.mango.CheckNoViolations(t)
}

func TestOriginateBadRequests(t *testing.T) {
	fx := newOriginateFixture(t, time.Second)
	for _, tt := range []struct {
		name, contentType, body string
		method                  string
		want                    int
		says                    string
	}{
		{"no account", "application/json", `{"from":"101","to":"79001234567"}`, "", 400, "account is required"},
		{"unknown account", "application/json", `{"account":"nope","from":"101","to":"79001234567"}`, "", 400, `no account named "nope"`},
		{"no from", "application/json", `{"account":"office","to":"79001234567"}`, "", 400, "from is required"},
		{"no to", "application/json", `{"account":"office","from":"101"}`, "", 400, "to is required"},
		{"callback_group without a line", "application/json", `{"account":"office","from_group":"303","to":"79001234567"}`, "", 400, "line is required for a group call"},
		{"both groups", "application/json", `{"account":"office","from_group":"303","to_group":"304","line":"74951234567"}`, "", 400, "from_group or to_group, not both"},
		{"from_group with from", "application/json", `{"account":"office","from_group":"303","from":"101","to":"79001234567","line":"74951234567"}`, "", 400, "from does not apply"},
		{"hangup without leg_id", "application/json", `{"account":"office","action":"hangup"}`, "", 400, "leg_id is required"},
		{"hangup with numbers", "application/json", `{"account":"office","action":"hangup","leg_id":"L1","to":"79001234567"}`, "", 400, "to does not apply"},
		{"leg_id on a call", "application/json", `{"account":"office","from":"101","to":"79001234567","leg_id":"L1"}`, "", 400, "leg_id does not apply"},
		{"from is a phone number", "application/json", `{"account":"office","from":"+79001234567","to":"79001234568"}`, "", 400, "must be the employee's internal number"},
		{"to is not a number", "application/json", `{"account":"office","from":"101","to":"Вася"}`, "", 400, "is not a phone number"},
		{"unknown action", "application/json", `{"account":"office","action":"transfer","leg_id":"L1"}`, "", 400, `action "transfer"`},
		{"unknown field", "application/json", `{"account":"office","from":"101","to":"79001234567","form":"x"}`, "", 400, `unknown field "form"`},
		{"a field of the wrong type", "application/json", `{"account":"office","from":["101"],"to":"79001234567"}`, "", 400, "from must be a string"},
		{"a fraction", "application/json", `{"account":"office","from":101.5,"to":"79001234567"}`, "", 400, "not a whole number"},
		{"not an object", "application/json", `["office"]`, "", 400, "not a JSON object"},
		{"command_id too long", "application/json", `{"account":"office","from":"101","to":"79001234567","command_id":"` + strings.Repeat("x", 129) + `"}`, "", 400, "longer than 128 bytes"},
		{"xvb hangup", "application/json", `{"account":"main","action":"hangup","leg_id":"L1"}`, "", 400, "XVB has no hangup"},
		{"xvb with a line", "application/json", `{"account":"main","from":"101","to":"79001234567","line":"74951234567"}`, "", 400, "makeCall takes from and to only"},
		{"xvb without api_url", "application/json", `{"account":"bare","from":"101","to":"79001234567"}`, "", 400, "has no api_url and token"},
		{"a form field twice", "application/x-www-form-urlencoded", `account=office&from=101&to=79001234567&to=79001234568`, "", 400, "to given 2 times"},
		{"plain text", "text/plain", `call 79001234567`, "", 415, "content type"},
		{"too large", "application/json", `{"account":"office","pad":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413, "body over"},
		{"PUT", "application/json", `{}`, http.MethodPut, 405, "method PUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := fx.do(t, method, "", tt.contentType, tt.body, "Authorization", "Bearer "+originateToken)
			if msg, _ := r.body["error"].(string); r.status != tt.want || !strings.Contains(msg, tt.says) {
				t.Errorf("%d %s, want %d saying %q", r.status, r.raw, tt.want, tt.says)
			}
		})
	}
	if n := fx.mango.Requests(); n != 0 {
		t.Errorf("Mango got %d requests for bad ones", n)
	}
	if n := len(fx.xvb.Received()); n != 0 {
		t.Errorf("XVB got %d requests for bad ones", n)
	}
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestOriginateMangoCommands(t *testing.T) {
	fx := newOriginateFixture(t, time.Second)
	acceptedBefore := commandsCounted("office", "callback", "accepted")
	for _, tt := range []struct {
		name     string
		send     func() commandReply
		id       string // "" = generated
		command  string
		wantJSON string // with %s for the command id
	}{
		{"JSON, number normalised, with a line", func() commandReply {
			return fx.postJSON(t, `{"account":"office","from":"101","to":"+7 (900) 123-45-67","line":"8 495 123-45-67","command_id":"crm-1"}`)
		}, "crm-1", "callback", `{"command_id":"%s","from":{"extension":"101","number":""},"to_number":"79001234567","line_number":"74951234567"}`},
		{"JSON numbers as numbers", func() commandReply {
			return fx.postJSON(t, `{"account":"office","from":101,"to":79001234567}`)
		}, "", "callback", `{"command_id":"%s","from":{"extension":"101","number":""},"to_number":"79001234567"}`},
		{"query parameters (a robot's POST)", func() commandReply {
			q := url.Values{"token": {originateToken}, "account": {"office"}, "from": {"102"}, "to": {"8 900 123 45 67"}}
			return fx.do(t, http.MethodPost, q.Encode(), "", "")
		}, "", "callback", `{"command_id":"%s","from":{"extension":"102","number":""},"to_number":"79001234567"}`},
		{"query parameters (a robot's GET)", func() commandReply {
			q := url.Values{"token": {originateToken}, "account": {"office"}, "from": {"103"}, "to": {"+79001234567"}, "command_id": {"robot-1"}}
			return fx.do(t, http.MethodGet, q.Encode(), "", "")
		}, "robot-1", "callback", `{"command_id":"%s","from":{"extension":"103","number":""},"to_number":"79001234567"}`},
		{"form fields", func() commandReply {
			return fx.do(t, http.MethodPost, "token="+originateToken, "application/x-www-form-urlencoded",
				url.Values{"account": {"office"}, "to_group": {"303"}, "from": {"+7 900 123-45-67"}, "line": {"74951234567"}, "command_id": {"grp-1"}}.Encode())
		}, "grp-1", "callback_group", `{"command_id":"%s","from":"79001234567","to":"303","line_number":"74951234567"}`},
		{"callback_group from a group", func() commandReply {
			return fx.postJSON(t, `{"account":"office","from_group":"303","to":"79001234567","line":"74951234567","command_id":"grp-2"}`)
		}, "grp-2", "callback_group", `{"command_id":"%s","from":"303","to":"79001234567","line_number":"74951234567"}`},
		{"hangup", func() commandReply {
			return fx.postJSON(t, `{"account":"office","action":"hangup","leg_id":"MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5","command_id":"h-1"}`)
		}, "h-1", "call/hangup", `{"command_id":"%s","call_id":"MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fx.mango.Received())
			r := tt.send()
			if r.status != http.StatusOK || r.body["status"] != "accepted" || len(r.body) != 2 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			id, _ := r.body["command_id"].(string)
			if tt.id != "" && id != tt.id || tt.id == "" && !generatedID.MatchString(id) {
				t.Errorf("command_id %q", id)
			}
			got := fx.mango.Received()
			if len(got) != before+1 {
				t.Fatalf("Mango got %d commands", len(got)-before)
			}
			if c := got[len(got)-1]; c.Name != tt.command || c.JSON != fmt.Sprintf(tt.wantJSON, id) {
				t.Errorf("Mango got %s %s\nwant %s %s", c.Name, c.JSON, tt.command, fmt.Sprintf(tt.wantJSON, id))
			}
		})
	}
	if n := commandsCounted("office", "callback", "accepted") - acceptedBefore; n != 4 {
		t.Errorf("pbxbridge_commands_total{command=callback,outcome=accepted} grew by %v, want 4", n)
	}
	fx.mango.CheckNoViolations(t)
}

// Mango's answers, mapped; answers that say "later" are not kept, so a retry sends again.
func TestOriginateMangoAnswers(t *testing.T) {
	fx := newOriginateFixture(t, 400*time.Millisecond)
	call := func(id string) commandReply {
		return fx.postJSON(t, `{"account":"office","from":"101","to":"79001234567","command_id":"`+id+`"}`)
	}

	t.Run("3102 refused, kept", func(t *testing.T) {
		fx.mango.Play("3102")
		r := call("sign-1")
		if r.status != http.StatusBadGateway || r.body["status"] != "refused" || r.body["code"] != 3102.0 ||
			r.body["meaning"] != "signature mismatch (check api_key and api_salt)" || r.body["command_id"] != "sign-1" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		before := fx.mango.Requests()
		if again := call("sign-1"); again.raw != r.raw || again.status != r.status || again.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("repetition: %d %s", again.status, again.raw)
		}
		if fx.mango.Requests() != before {
			t.Error("a repeated command_id reached Mango")
		}
	})
	t.Run("timeout, kept", func(t *testing.T) {
		fx.mango.Play("timeout")
		start := time.Now()
		r := call("slow-1")
		if r.status != http.StatusGatewayTimeout || r.body["status"] != "error" || !strings.Contains(r.body["error"].(string), "may or may not") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("answered after %s with a 400ms timeout", took)
		}
		before := fx.mango.Requests()
		if again := call("slow-1"); again.status != http.StatusGatewayTimeout || fx.mango.Requests() != before {
			t.Errorf("repeating a command whose outcome is unknown: %d, Mango got %d more", again.status, fx.mango.Requests()-before)
		}
	})
	t.Run("429 passed on, not kept", func(t *testing.T) {
		fx.mango.Play("429")
		r := call("busy-1")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || r.body["status"] != "refused" {
			t.Fatalf("%d %s %v", r.status, r.raw, r.header)
		}
		// Mango said "too many": the account pauses, and the pause is answered here.
		before := fx.mango.Requests()
		if again := call("busy-2"); again.status != http.StatusTooManyRequests || fx.mango.Requests() != before {
			t.Errorf("during the pause: %d, Mango got %d more", again.status, fx.mango.Requests()-before)
		}
		time.Sleep(pbx.BusyPause) // the pause is a duration; nothing signals its end
		if again := call("busy-1"); again.status != http.StatusOK || fx.mango.Requests() != before+1 {
			t.Errorf("retry after the pause: %d %s, Mango got %d more", again.status, again.raw, fx.mango.Requests()-before)
		}
	})
	t.Run("5001 overloaded, not kept", func(t *testing.T) {
		fx.mango.Play("5001")
		if r := call("over-1"); r.status != http.StatusServiceUnavailable || r.body["code"] != 5001.0 || r.header.Get("Retry-After") == "" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("401 locks the account out", func(t *testing.T) {
		time.Sleep(pbx.BusyPause) // the 5001's pause
		fx.mango.Play("401")
		r := call("lock-1")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "120" || !strings.Contains(r.body["error"].(string), "locked") {
			t.Fatalf("%d %s %v", r.status, r.raw, r.header)
		}
		before := fx.mango.Requests()
		again := call("lock-2")
		if again.status != http.StatusServiceUnavailable || again.body["command_id"] != "lock-2" || fx.mango.Requests() != before {
			t.Errorf("during the lock-out: %d %s, Mango got %d more", again.status, again.raw, fx.mango.Requests()-before)
		}
		if ra := again.header.Get("Retry-After"); ra != "120" && ra != "119" {
			t.Errorf("Retry-After %q", ra)
		}
		// Another account is not paused.
		if r := fx.postJSON(t, `{"account":"main","from":"101","to":"79001234567"}`); r.status != http.StatusOK {
			t.Errorf("xvb during Mango's lock-out: %d %s", r.status, r.raw)
		}
	})
	fx.mango.CheckNoViolations(t)
}

// A CRM that repeats a command, at once or later, calls the agent once.
func TestOriginateIdempotency(t *testing.T) {
	fx := newOriginateFixture(t, 2*time.Second)
	body := `{"account":"office","from":"101","to":"79001234567","command_id":"retry-1"}`

	fx.mango.Play("slow")
	replies := make([]commandReply, 6)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Add(1)
		go func() { defer wg.Done(); replies[i] = fx.postJSON(t, body) }()
	}
	wg.Wait()
	replays := 0
	for _, r := range replies {
		if r.status != http.StatusOK || r.raw != `{"command_id":"retry-1","status":"accepted"}`+"\n" {
			t.Errorf("%d %q", r.status, r.raw)
		}
		if r.header.Get("Idempotent-Replayed") == "true" {
			replays++
		}
	}
	if n := len(fx.mango.Received()); n != 1 || replays != len(replies)-1 {
		t.Errorf("6 concurrent identical requests: Mango got %d, %d replays", n, replays)
	}
	// The same request written differently is the same request.
	if r := fx.postJSON(t, `{"account":"office","from":101,"to":"+7 900 123-45-67","command_id":"retry-1"}`); r.status != http.StatusOK || len(fx.mango.Received()) != 1 {
		t.Errorf("later repetition: %d %s, Mango got %d", r.status, r.raw, len(fx.mango.Received()))
	}
	// Another request under the same id is refused, not answered with the first answer.
	r := fx.postJSON(t, `{"account":"office","from":"101","to":"79001234500","command_id":"retry-1"}`)
	if r.status != http.StatusConflict || len(fx.mango.Received()) != 1 {
		t.Errorf("another request, same id: %d %s", r.status, r.raw)
	}
	// Ids are per account.
	if r := fx.postJSON(t, `{"account":"main","from":"101","to":"79001234567","command_id":"retry-1"}`); r.status != http.StatusOK || len(fx.xvb.Received()) != 1 {
		t.Errorf("same id, other account: %d %s", r.status, r.raw)
	}
}

// A burst of 20: Mango never sees more than 4 a second; what cannot wait about a second gets
// 429 with Retry-After.
func TestOriginateRateLimit(t *testing.T) {
	fx := newOriginateFixture(t, 2*time.Second)
	replies := make([]commandReply, 20)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = fx.postJSON(t, fmt.Sprintf(`{"account":"office","from":"101","to":"7900123%04d"}`, i))
		}()
	}
	wg.Wait()
	took := time.Since(start)
	accepted, limited := 0, 0
	for _, r := range replies {
		switch {
		case r.status == http.StatusOK:
			accepted++
		case r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != "" && r.body["status"] == "error":
			limited++
		default:
			t.Errorf("%d %s", r.status, r.raw)
		}
	}
	fx.mango.CheckNoViolations(t)
	if got := len(fx.mango.Received()); got != accepted || accepted < 4 || accepted+limited != 20 {
		t.Errorf("accepted %d, rate limited %d, Mango got %d", accepted, limited, got)
	}
	t.Logf("burst of 20: %d accepted, %d answered 429, in %s", accepted, limited, took)
}

func TestOriginateXVB(t *testing.T) {
	fx := newOriginateFixture(t, time.Second)
	q := url.Values{"token": {originateToken}, "account": {"main"}, "from": {"101"}, "to": {"+7 (900) 123-45-67"}, "command_id": {"x-1"}}
	r := fx.do(t, http.MethodPost, q.Encode(), "", "")
	if r.status != http.StatusOK || r.raw != `{"command_id":"x-1","status":"accepted"}`+"\n" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	got := fx.xvb.Received()
	want := url.Values{"cmd": {"makeCall"}, "token": {fakeXVBToken}, "from": {"101"}, "to": {"79001234567"}}
	if len(got) != 1 || got[0].Encode() != want.Encode() {
		t.Errorf("XVB got %v", got)
	}

	fx.xvb.Answer(http.StatusInternalServerError, "no such extension\nstack trace")
	r = fx.postJSON(t, `{"account":"main","from":"109","to":"79001234567"}`)
	if r.status != http.StatusBadGateway || r.body["status"] != "refused" || r.body["pbx_status"] != 500.0 ||
		r.body["error"] != "XVB refused the call: HTTP 500: no such extension" {
		t.Errorf("%d %s", r.status, r.raw)
	}
}

func TestOriginateCaddyfile(t *testing.T) {
	var h Originate
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("pbx_originate {\n token {env.CRM_COMMAND_TOKEN}\n timeout 5s\n}")); err != nil {
		t.Fatal(err)
	}
	if h.Token != "{env.CRM_COMMAND_TOKEN}" || h.Timeout != caddy.Duration(5*time.Second) {
		t.Errorf("got %+v", h)
	}
	for _, bad := range []string{
		"pbx_originate office",
		"pbx_originate {\n token\n}",
		"pbx_originate {\n timeout soon\n}",
		"pbx_originate {\n rate 4\n}",
	} {
		var h Originate
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// Without a token nobody could use it, or anybody could: provisioning refuses.
	t.Setenv("EMPTY_TOKEN", "")
	for _, token := range []string{"", "{env.EMPTY_TOKEN}"} {
		if err := (&Originate{Token: token}).provision(&App{}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "token is required") {
			t.Errorf("token %q: %v", token, err)
		}
	}
	// The directive needs no `order` line, and the token stays a placeholder in the JSON.
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`
example.com {
	pbx_originate {
		token {env.CRM_COMMAND_TOKEN}
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(adapted, []byte(`"handler":"pbx_originate","token":"{env.CRM_COMMAND_TOKEN}"`)) {
		t.Errorf("adapted: %s", adapted)
	}
}

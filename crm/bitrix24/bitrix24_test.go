package bitrix24_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

var office = event.Origin{PBX: "mango", Account: "office", Region: "RU"}

// connector is a Bitrix24 connector: it delivers and takes the portal's posts.
type connector interface {
	crm.Connector
	http.Handler
}

// gateway is one pbxbridge gateway's Bitrix24 target: its connector, served as pbx_crm
// serves it, on a store that gateways of a cluster share.
type gateway struct {
	conn connector
	srv  *httptest.Server

	mu         sync.Mutex
	originated []pbx.CommandRequest
	ttls       map[string]bool // "<kind of key> <TTL>" written to the state
}

// notingState is the store's state, noting the TTL each kind of key is written with.
type notingState struct {
	crm.State
	g *gateway
}

func (s notingState) Put(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	kind, _, _ := strings.Cut(key, ".")
	s.g.mu.Lock()
	s.g.ttls[kind+" "+ttl.String()] = true
	s.g.mu.Unlock()
	return s.State.Put(ctx, key, value, revision, ttl)
}

// openStore is a delivery engine's crm state, in a real JetStream.
func openStore(t testing.TB) *delivery.Engine {
	t.Helper()
	e, err := delivery.Open(delivery.Config{DataDir: t.TempDir()}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func applyTargets(t testing.TB, e *delivery.Engine, targets ...delivery.Target) {
	t.Helper()
	if err := e.Apply(context.Background(), delivery.Config{}, targets); err != nil {
		t.Fatal(err)
	}
}

func newGateway(t testing.TB, p *bitrix24test.Portal, e *delivery.Engine, configure func(*bitrix24.Config)) *gateway {
	t.Helper()
	cfg := &bitrix24.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, OAuthURL: p.URL,
		Lines: map[string]string{"+74951234567": "office"}}
	if configure != nil {
		configure(cfg)
	}
	g := &gateway{ttls: map[string]bool{}}
	env := crm.Env{
		State: func(context.Context) (crm.State, error) {
			st, err := e.CRMState("b24")
			if err != nil {
				return nil, err
			}
			return notingState{st, g}, nil
		},
		Accounts: map[string]event.Origin{"office": office},
		Logger:   zaptest.NewLogger(t),
		Originate: func(_ context.Context, req pbx.CommandRequest) pbx.Answer {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.originated = append(g.originated, req)
			return pbx.Answer{Status: 200, Outcome: "accepted", Body: pbx.AnswerBody{CommandID: req.CommandID, Status: "accepted"}}
		},
	}
	conn, err := cfg.Provision("b24", p.URL, env)
	if err != nil {
		t.Fatal(err)
	}
	g.conn = conn.(connector)
	g.srv = httptest.NewServer(g.conn)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) commands() []pbx.CommandRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]pbx.CommandRequest(nil), g.originated...)
}

// installed is a portal with users 101 (inner 101) and 102 (inner 102), a store, and a
// gateway the application is installed on.
func installed(t testing.TB, opts bitrix24test.Options, configure func(*bitrix24.Config)) (*bitrix24test.Portal, *delivery.Engine, *gateway) {
	t.Helper()
	p := bitrix24test.New(t, opts)
	p.AddUser("101", "101")
	p.AddUser("102", "102")
	e := openStore(t)
	g := newGateway(t, p, e, configure)
	applyTargets(t, e, delivery.Target{Name: "b24", Connector: g.conn, Accounts: []delivery.Account{{PBX: "mango", Account: "office"}}})
	resp, err := p.Install(context.Background(), g.srv.URL+"/bitrix24")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("install: HTTP %d", resp.StatusCode)
	}
	return p, e, g
}

// The installation binds the events to the URL it came to, adds the lines and stores the
// pair; a second installation binds nothing twice; another portal's is refused.
func TestInstall(t *testing.T) {
	p, _, g := installed(t, bitrix24test.Options{}, nil)
	st := p.Stats()
	for _, ev := range []string{"ONEXTERNALCALLSTART", "ONAPPUNINSTALL"} {
		if st.Handlers[ev] != g.srv.URL+"/bitrix24" {
			t.Errorf("%s bound to %q, want %s/bitrix24", ev, st.Handlers[ev], g.srv.URL)
		}
	}
	if len(st.Lines) != 1 || st.Lines[0] != "+74951234567" {
		t.Errorf("lines = %v", st.Lines)
	}
	in, err := bitrix24.Installation(context.Background(), g.conn)
	if err != nil || in == nil || in.Status != "installed" || in.MemberID != p.MemberID || in.ApplicationToken != p.ApplicationToken() {
		t.Fatalf("stored installation = %+v, %v", in, err)
	}
	if resp, err := p.Install(context.Background(), g.srv.URL+"/bitrix24"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("second install: %v %v", resp, err)
	}
	if n := p.Stats().Refused["ERROR_CORE"]; n != 0 {
		t.Errorf("the second installation was refused %d times (bound or added twice)", n)
	}
	other := bitrix24test.New(t, bitrix24test.Options{})
	resp, err := other.Install(context.Background(), g.srv.URL+"/bitrix24")
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another portal's install: %v %v, want 403", resp, err)
	}
	// A forged installation for this portal: the portal does not take its token.
	forged := url.Values{"event": {"ONAPPINSTALL"}, "auth[domain]": {p.Domain}, "auth[member_id]": {p.MemberID},
		"auth[access_token]": {"forged"}, "auth[refresh_token]": {"forged"}, "auth[application_token]": {"forged"}}
	if resp, err := http.PostForm(g.srv.URL+"/bitrix24", forged); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged install: %v %v, want 403", resp, err)
	}
	if in2, _ := bitrix24.Installation(context.Background(), g.conn); in2.AccessToken == "" || in2.MemberID != p.MemberID {
		t.Fatalf("the refused installation replaced the stored one: %+v", in2)
	}
}

func ptr[T any](v T) *T { return &v }

func at(sec int) time.Time { return time.Date(2026, 12, 4, 10, 0, sec, 0, time.UTC) }

func newEvent(typ, call string, seq int, mutate func(*event.Data)) *event.Event {
	ev := office.New(typ, call+typ+string(rune('a'+seq)), call, at(seq))
	ev.Data.Line = "+74951234567"
	mutate(&ev.Data)
	return &ev
}

func inbound(d *event.Data) {
	d.Direction = event.DirectionInbound
	d.From = event.Party{Number: "+79161234567"}
	d.To = event.Party{Extension: "101"}
}

func completed(result string, talk int64) func(*event.Data) {
	return func(d *event.Data) {
		d.Result = result
		d.StartedAt, d.DurationS, d.TalkS = ptr(at(0)), ptr(talk+5), ptr(talk)
	}
}

func deliverAll(t *testing.T, g *gateway, evs ...*event.Event) {
	t.Helper()
	for _, ev := range evs {
		if res := g.conn.Deliver(context.Background(), ev); res.Outcome != crm.Delivered {
			t.Fatalf("%s: %+v", ev.Type, res)
		}
	}
}

// Each kind of call is one registered and finished call with its type, user, talk time,
// status code and record.
func TestCalls(t *testing.T) {
	both := func(fs ...func(*event.Data)) func(*event.Data) {
		return func(d *event.Data) {
			for _, f := range fs {
				f(d)
			}
		}
	}
	p, _, g := installed(t, bitrix24test.Options{}, nil)
	for _, tt := range []struct {
		name   string
		events func(call string) []*event.Event
		want   bitrix24test.Call
	}{
		{"inbound answered", func(c string) []*event.Event {
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, inbound),
				newEvent(event.TypeAnswered, c, 1, both(inbound, func(d *event.Data) { d.Agent = "101" })),
				newEvent(event.TypeCompleted, c, 2, both(inbound, completed(event.ResultAnswered, 42), func(d *event.Data) { d.Agent = "101" })),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "101", Duration: 42, StatusCode: "200"}},
		{"inbound missed", func(c string) []*event.Event {
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, inbound),
				newEvent(event.TypeCompleted, c, 1, both(inbound, completed(event.ResultMissed, 0))),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "101", Duration: 0, StatusCode: "304"}},
		{"outbound busy", func(c string) []*event.Event {
			out := func(d *event.Data) {
				d.Direction = event.DirectionOutbound
				d.From = event.Party{Extension: "102"}
				d.To = event.Party{Number: "+79031112233"}
			}
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, out),
				newEvent(event.TypeCompleted, c, 1, both(out, completed(event.ResultBusy, 0))),
			}
		}, bitrix24test.Call{Type: "1", Phone: "+79031112233", UserID: "102", FinishUser: "102", StatusCode: "486"}},
		{"transferred to a second employee", func(c string) []*event.Event {
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, inbound),
				newEvent(event.TypeAnswered, c, 1, both(inbound, func(d *event.Data) { d.Agent = "101" })),
				newEvent(event.TypeRinging, c, 2, both(inbound, func(d *event.Data) { d.To.Extension = "102" })),
				newEvent(event.TypeAnswered, c, 3, both(inbound, func(d *event.Data) { d.Agent = "102" })),
				newEvent(event.TypeCompleted, c, 4, both(inbound, completed(event.ResultAnswered, 60), func(d *event.Data) { d.Agent = "102" })),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "102", Duration: 60, StatusCode: "200", Shown: []string{"102"}}},
		{"group call: the card closes for the employee who did not answer", func(c string) []*event.Event {
			to := func(ext string) func(*event.Data) {
				return both(inbound, func(d *event.Data) { d.To.Extension = ext })
			}
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, to("101")),
				newEvent(event.TypeRinging, c, 1, to("102")),
				newEvent(event.TypeAnswered, c, 2, both(to("102"), func(d *event.Data) { d.Agent = "102" })),
				newEvent(event.TypeLegEnded, c, 3, to("101")),
				newEvent(event.TypeLegEnded, c, 4, both(to("102"), func(d *event.Data) { d.Agent = "102" })),
				newEvent(event.TypeCompleted, c, 5, both(inbound, completed(event.ResultAnswered, 9), func(d *event.Data) { d.Agent = "102" })),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "102", Duration: 9, StatusCode: "200", Shown: []string{"102"}, Hidden: []string{"101"}}},
		{"recording after the summary", func(c string) []*event.Event {
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, inbound),
				newEvent(event.TypeCompleted, c, 1, both(inbound, completed(event.ResultAnswered, 7))),
				newEvent(event.TypeRecordingReady, c, 2, func(d *event.Data) { d.RecordingURL = "https://gw.example/pbx/recordings/x.mp3?sig=1" }),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "101", Duration: 7, StatusCode: "200", Record: "https://gw.example/pbx/recordings/x.mp3?sig=1"}},
		{"first seen at completed", func(c string) []*event.Event {
			return []*event.Event{newEvent(event.TypeCompleted, c, 0, both(inbound, completed(event.ResultCancelled, 0)))}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "101", FinishUser: "101", StatusCode: "603-S", Show: "0"}},
		{"unknown extension goes to the default user", func(c string) []*event.Event {
			return []*event.Event{
				newEvent(event.TypeRinging, c, 0, both(inbound, func(d *event.Data) { d.To.Extension = "999" })),
				newEvent(event.TypeCompleted, c, 1, both(inbound, completed(event.ResultFailed, 0), func(d *event.Data) { d.To.Extension = "999" })),
			}
		}, bitrix24test.Call{Type: "2", Phone: "+79161234567", UserID: "1", FinishUser: "1", StatusCode: "503"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.ReplaceAll(tt.name, " ", "-")
			deliverAll(t, g, tt.events(id)...)
			// A re-delivery of the whole call changes nothing.
			deliverAll(t, g, tt.events(id)...)
			var calls []bitrix24test.Call
			for _, c := range p.Calls() {
				if c.ExternalCallID == id {
					calls = append(calls, c)
				}
			}
			if len(calls) != 1 {
				t.Fatalf("%d calls registered, want 1: %+v", len(calls), calls)
			}
			got := calls[0]
			if got.Line != "+74951234567" || got.StartDate != "2026-12-04T10:00:00+00:00" || got.Registrations != 1 || got.Finishes != 1 {
				t.Errorf("line %q start %q registrations %d finishes %d", got.Line, got.StartDate, got.Registrations, got.Finishes)
			}
			want := tt.want
			if want.Show == "" {
				want.Show = "1"
			}
			if got.Type != want.Type || got.Phone != want.Phone || got.UserID != want.UserID || got.FinishUser != want.FinishUser ||
				got.Duration != want.Duration || got.StatusCode != want.StatusCode || got.Record != want.Record || got.Show != want.Show ||
				strings.Join(got.Shown, ",") != strings.Join(want.Shown, ",") || strings.Join(got.Hidden, ",") != strings.Join(want.Hidden, ",") {
				t.Errorf("call = %+v\nwant   %+v", got, want)
			}
		})
	}
}

func ringAndComplete(call string) []*event.Event {
	return []*event.Event{
		newEvent(event.TypeRinging, call, 0, inbound),
		newEvent(event.TypeCompleted, call, 1, func(d *event.Data) { inbound(d); completed(event.ResultAnswered, 3)(d) }),
	}
}

// A token that expires mid-run is refreshed once, not once per gateway: two gateways of a
// cluster share the stored pair, and each call still finishes.
func TestTokenRefreshedOnceAcrossGateways(t *testing.T) {
	p, e, g1 := installed(t, bitrix24test.Options{}, nil)
	g2 := newGateway(t, p, e, nil)
	deliverAll(t, g1, ringAndComplete("before")...)
	p.ExpireTokens()
	var wg sync.WaitGroup
	for i := range 8 {
		g := []*gateway{g1, g2}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ev := range ringAndComplete("after-" + string(rune('a'+i))) {
				if res := g.conn.Deliver(context.Background(), ev); res.Outcome != crm.Delivered {
					t.Errorf("%s: %+v", ev.Type, res)
				}
			}
		}()
	}
	wg.Wait()
	if n := p.Stats().Refreshes; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	finished := 0
	for _, c := range p.Calls() {
		finished += c.Finishes
	}
	if finished != 9 {
		t.Errorf("%d calls finished, want 9", finished)
	}
	// The new pair is stored: a gateway started now uses it without refreshing.
	g3 := newGateway(t, p, e, nil)
	deliverAll(t, g3, ringAndComplete("restarted")...)
	if n := p.Stats().Refreshes; n != 1 {
		t.Errorf("%d refreshes after a restart, want 1", n)
	}
}

// A token near its expiry is refreshed before it is used, not after the portal refuses it.
func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	p, _, g := installed(t, bitrix24test.Options{TokenLifetime: 4 * time.Second}, nil)
	in, _ := bitrix24.Installation(context.Background(), g.conn)
	time.Sleep(time.Until(in.Expires.Add(-in.Expires.Sub(in.Issued) / 4))) // into the refresh margin
	deliverAll(t, g, ringAndComplete("late")...)
	st := p.Stats()
	if st.Refreshes != 1 || st.Refused["expired_token"] != 0 {
		t.Errorf("refreshes %d, expired_token refusals %d; want 1 and 0", st.Refreshes, st.Refused["expired_token"])
	}
}

// What stops the whole target (a refused refresh, an uninstall, a webhook where an
// application is needed) opens the circuit with a reason: Down, nothing dead-lettered.
func TestDown(t *testing.T) {
	for _, tt := range []struct {
		name   string
		breakp func(*bitrix24test.Portal, *gateway)
		want   string
	}{
		{"refresh refused", func(p *bitrix24test.Portal, _ *gateway) { p.RevokeRefresh(); p.ExpireTokens() }, "invalid_grant"},
		{"uninstalled", func(p *bitrix24test.Portal, _ *gateway) {
			resp, err := p.Uninstall(context.Background())
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("uninstall: %v %v", resp, err)
			}
		}, "uninstalled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _, g := installed(t, bitrix24test.Options{}, nil)
			tt.breakp(p, g)
			res := g.conn.Deliver(context.Background(), ringAndComplete("c")[0])
			if res.Outcome != crm.Down || !strings.Contains(res.Error, tt.want) || !strings.Contains(res.Error, "docs/bitrix24.md") {
				t.Errorf("Deliver = %+v, want Down naming %s and the docs", res, tt.want)
			}
		})
	}
	t.Run("webhook", func(t *testing.T) {
		p := bitrix24test.New(t, bitrix24test.Options{})
		e := openStore(t)
		g := newGateway(t, p, e, func(c *bitrix24.Config) {
			*c = bitrix24.Config{Webhook: p.Webhook(), Users: map[string]string{"101": "1"}}
		})
		applyTargets(t, e, delivery.Target{Name: "b24", Connector: g.conn})
		res := g.conn.Deliver(context.Background(), ringAndComplete("c")[0])
		if res.Outcome != crm.Down || !strings.Contains(res.Error, "WRONG_AUTH_TYPE") || !strings.Contains(res.Error, "local application") {
			t.Errorf("Deliver = %+v, want Down for WRONG_AUTH_TYPE naming the local application", res)
		}
		if strings.Contains(res.Error, p.Webhook()) {
			t.Errorf("the error carries the webhook's secret: %s", res.Error)
		}
	})
	t.Run("not installed", func(t *testing.T) {
		p := bitrix24test.New(t, bitrix24test.Options{})
		e := openStore(t)
		g := newGateway(t, p, e, nil)
		applyTargets(t, e, delivery.Target{Name: "b24", Connector: g.conn})
		if res := g.conn.Deliver(context.Background(), ringAndComplete("c")[0]); res.Outcome != crm.Down || !strings.Contains(res.Error, "not installed") {
			t.Errorf("Deliver = %+v, want Down: not installed", res)
		}
	})
}

// Failures of one method: the limit and a portal that is down are retried, a parameter the
// portal refuses dead-letters the event with its text.
func TestFailures(t *testing.T) {
	p, _, g := installed(t, bitrix24test.Options{}, nil)
	p.SetDown(true)
	if res := g.conn.Deliver(context.Background(), ringAndComplete("down")[0]); res.Outcome != crm.Retry {
		t.Errorf("portal down: %+v, want Retry", res)
	}
	p.SetDown(false)
	deliverAll(t, g, ringAndComplete("down")...)
	bad := newEvent(event.TypeRinging, "bad", 0, func(d *event.Data) { inbound(d); d.From.Number = "not a number" })
	if res := g.conn.Deliver(context.Background(), bad); res.Outcome != crm.Dead || !strings.Contains(res.Error, "Unsupported phone number format") {
		t.Errorf("bad number: %+v, want Dead with the portal's text", res)
	}
	if res := bitrix24.Classify(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"); res.Outcome != crm.Retry || res.RetryAfter == 0 {
		t.Errorf("QUERY_LIMIT_EXCEEDED: %+v, want Retry after a backoff", res)
	}
}

// A click on a number: a wrong application_token originates nothing (401); the right one
// originates once per Bitrix24 CALL_ID, and the PBX's events of that call finish it without a
// second register.
func TestClickToCall(t *testing.T) {
	p, _, g := installed(t, bitrix24test.Options{}, nil)
	ctx := context.Background()
	if _, resp, err := p.ClickToCall(ctx, "101", "+79161234567", "+74951234567", "wrong"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v %v, want 401", resp, err)
	}
	if n := len(g.commands()); n != 0 {
		t.Fatalf("%d commands after a wrong token", n)
	}
	callID, resp, err := p.ClickToCall(ctx, "101", "+79161234567", "+74951234567", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("click: %v %v", resp, err)
	}
	cmds := g.commands()
	if len(cmds) != 1 || cmds[0].Account != "office" || cmds[0].From != "101" || cmds[0].To != "+79161234567" || cmds[0].CommandID != bitrix24.CommandIDFor(callID) {
		t.Fatalf("commands = %+v", cmds)
	}
	out := func(d *event.Data) {
		d.Direction = event.DirectionOutbound
		d.From, d.To = event.Party{Extension: "101"}, event.Party{Number: "+79161234567"}
		d.CommandID = cmds[0].CommandID
	}
	deliverAll(t, g,
		newEvent(event.TypeRinging, "pbx-call", 0, out),
		newEvent(event.TypeCompleted, "pbx-call", 1, func(d *event.Data) { out(d); completed(event.ResultAnswered, 30)(d) }))
	calls := p.Calls()
	if len(calls) != 1 || calls[0].CallID != callID || calls[0].Finishes != 1 || calls[0].Duration != 30 {
		t.Errorf("calls = %+v, want the clicked call finished once", calls)
	}
	if slices.Contains(p.Stats().Methods, "telephony.externalcall.register") {
		t.Errorf("pbxbridge registered the clicked call again")
	}
	// What is kept of a call, the click's too, expires; the tokens stay.
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := map[string]bool{"install 0s": true, "command 168h0m0s": true, "call 168h0m0s": true}; !maps.Equal(g.ttls, want) {
		t.Errorf("state written %v, want %v", g.ttls, want)
	}
}

// Clicks that come to one gateway while another delivers at the portal's limit are placed:
// the deliveries leave the bucket's reserve (a fifth, here 10) to the methods the portal waits
// on.
func TestClickWhileDelivering(t *testing.T) {
	limit := func(c *bitrix24.Config) { c.Rate, c.Burst = 20, 50 }
	p, e, clicker := installed(t, bitrix24test.Options{Rate: 20, Burst: 50}, limit)
	deliverer := newGateway(t, p, e, limit)
	const clicks = 5
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Once the deliverer's first requests have filled the bucket to its share.
		if err := p.WaitCalls(ctx, func(calls []bitrix24test.Call) bool { return len(calls) >= 40 }); err != nil {
			t.Error(err)
			return
		}
		for i := range clicks {
			if _, resp, err := p.ClickToCall(ctx, "101", "+7916123456"+strconv.Itoa(i), "+74951234567", ""); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("click %d: %v %v", i, resp, err)
			}
		}
	}()
	loadCalls(t, p, e, deliverer, 0, 300)
	wg.Wait()
	if n := len(clicker.commands()); n != clicks {
		t.Errorf("%d clicks placed, want %d", n, clicks)
	}
	// Deliveries (at most 40) and clicks (5) and the installation's requests fit in 50.
	if n := p.Stats().Refused["QUERY_LIMIT_EXCEEDED"]; n != 0 {
		t.Errorf("%d requests refused QUERY_LIMIT_EXCEEDED, want none", n)
	}
}

// loadCalls delivers n calls (ringing, completed) through the delivery engine at concurrency
// 16 and waits until the portal has finished them all.
func loadCalls(t testing.TB, p *bitrix24test.Portal, e *delivery.Engine, g *gateway, from, n int) time.Duration {
	applyTargets(t, e, delivery.Target{Name: "b24", Connector: g.conn, Concurrency: 16, Timeout: 30 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, Accounts: []delivery.Account{{PBX: "mango", Account: "office"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var evs []event.Event
	for i := from; i < from+n; i++ {
		for j, ev := range ringAndComplete("load-" + strconv.Itoa(i)) {
			ev.Data.Seq = int64(j + 1)
			ev.Data.To.Extension = strconv.Itoa(101 + i%2)
			evs = append(evs, *ev)
		}
	}
	for len(evs) > 0 {
		k := min(len(evs), 100)
		if _, err := e.Enqueue(ctx, evs[:k]); err != nil {
			t.Fatal(err)
		}
		evs = evs[k:]
	}
	if err := p.WaitFinished(ctx, from+n); err != nil {
		t.Fatalf("not all calls finished: %v", err)
	}
	return time.Since(start)
}

// Calls at concurrency 16 against the portal's limit: each registered once and finished once,
// none lost, the limit's refusals retried, and the methods of waiting calls batched.
func TestLoadUnderTheLimit(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	// The portal's numbers scaled up tenfold to keep the test short; its bucket is smaller
	// than the connector's, so the portal refuses some requests and they are retried.
	p, e, g := installed(t, bitrix24test.Options{Rate: 20, Burst: 20}, func(c *bitrix24.Config) { c.Rate, c.Burst = 20, 30 })
	took := loadCalls(t, p, e, g, 0, n)
	calls := p.Calls()
	if len(calls) != n {
		t.Fatalf("%d calls registered, want %d", len(calls), n)
	}
	seen := map[string]bool{}
	for _, c := range calls {
		if seen[c.ExternalCallID] || c.Finishes != 1 || c.Duration != 3 || c.StatusCode != "200" {
			t.Fatalf("call %+v: registered twice or not finished once", c)
		}
		seen[c.ExternalCallID] = true
	}
	st := p.Stats()
	if st.Refused["ERROR_CORE"] != 0 {
		t.Errorf("%d methods refused with ERROR_CORE (a finish before its register?)", st.Refused["ERROR_CORE"])
	}
	carried, most := 0, 0
	for _, b := range st.Batches {
		carried += b
		most = max(most, b)
	}
	if len(st.Batches) == 0 || most < 2 {
		t.Errorf("batches %v: the waiting calls' methods were not batched", st.Batches)
	}
	t.Logf("%d calls in %s: %d requests, %d batches carrying %d methods (most %d), %d refused QUERY_LIMIT_EXCEEDED",
		n, took.Round(time.Millisecond), st.Requests, len(st.Batches), carried, most, st.Refused["QUERY_LIMIT_EXCEEDED"])
}

// BenchmarkCallsPerMinute measures calls delivered a minute at the portal's drain rate, with
// and without batching. The portal drains 20 requests a second here, without a burst, so that
// only the steady state counts; calls_per_min_at_2rps scales it to Bitrix24's 2 a second.
func BenchmarkCallsPerMinute(b *testing.B) {
	for _, batch := range []bool{true, false} {
		b.Run("batch="+strconv.FormatBool(batch), func(b *testing.B) {
			p, e, g := installed(b, bitrix24test.Options{Rate: 20, Burst: 1}, func(c *bitrix24.Config) {
				c.Rate, c.Burst, c.Batch = 20, 1, &batch
			})
			const calls = 100
			b.ResetTimer()
			var took time.Duration
			for i := range b.N {
				took += loadCalls(b, p, e, g, i*calls, calls)
			}
			perMin := float64(b.N*calls) / took.Minutes()
			b.ReportMetric(perMin, "calls/min")
			b.ReportMetric(perMin/10, "calls_per_min_at_2rps")
		})
	}
}

package bitrix24

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

var office = event.Origin{PBX: "mango", Account: "office", Region: "RU"}

// gateway is one pbxbridge gateway's Bitrix24 target: its connector, served as pbx_crm
// serves it, on a store that gateways of a cluster share.
type gateway struct {
	conn *connector
	srv  *httptest.Server

	mu         sync.Mutex
	originated []pbx.CommandRequest
}

// openStore is a delivery engine's crm state, in a real JetStream.
func openStore(t *testing.T) *delivery.Engine {
	t.Helper()
	e, err := delivery.Open(delivery.Config{DataDir: t.TempDir()}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func applyTargets(t *testing.T, e *delivery.Engine, targets ...delivery.Target) {
	t.Helper()
	if err := e.Apply(context.Background(), delivery.Config{}, targets); err != nil {
		t.Fatal(err)
	}
}

func newGateway(t *testing.T, p *bitrix24test.Portal, e *delivery.Engine, configure func(*Config)) *gateway {
	t.Helper()
	cfg := &Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, OAuthURL: p.URL,
		Lines: map[string]string{"+74951234567": "office"}}
	if configure != nil {
		configure(cfg)
	}
	g := &gateway{}
	env := crm.Env{
		State:    func(context.Context) (crm.State, error) { return e.CRMState("b24") },
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
	g.conn = conn.(*connector)
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
func installed(t *testing.T, opts bitrix24test.Options, configure func(*Config)) (*bitrix24test.Portal, *delivery.Engine, *gateway) {
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
	in, _, err := g.conn.loadInstall(context.Background())
	if err != nil || in == nil || in.Status != statusInstalled || in.MemberID != p.MemberID || in.ApplicationToken != p.ApplicationToken() {
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
	if in2, _, _ := g.conn.loadInstall(context.Background()); in2.AccessToken == "" || in2.MemberID != p.MemberID {
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
			if got.Line != "+74951234567" || got.Registrations != 1 || got.Finishes != 1 {
				t.Errorf("line %q registrations %d finishes %d", got.Line, got.Registrations, got.Finishes)
			}
			want := tt.want
			if want.Show == "" {
				want.Show = "1"
			}
			if got.Type != want.Type || got.Phone != want.Phone || got.UserID != want.UserID || got.FinishUser != want.FinishUser ||
				got.Duration != want.Duration || got.StatusCode != want.StatusCode || got.Record != want.Record || got.Show != want.Show ||
				strings.Join(got.Shown, ",") != strings.Join(want.Shown, ",") {
				t.Errorf("call = %+v\nwant   %+v", got, want)
			}
		})
	}
}

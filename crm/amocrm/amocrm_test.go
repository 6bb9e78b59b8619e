package amocrm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/crm/amocrm/amocrmtest"
	"github.com/pbxbridge/pbxbridge/event"
)

const (
	testToken = "amo-long-lived-token-3f9c1e7a5b2d"
	ivanPhone = "+79161234567"
	userIvan  = 504141 // responsible for Ivan's contact, extension 101
	userOlga  = 504142 // extension 102
)

// memState is crm.State in memory, shared by the connectors of one test as the bucket is. It
// notes each key's TTL and lets nothing expire.
type memState struct {
	mu   sync.Mutex
	keys map[string][]byte
	revs map[string]uint64
	ttls map[string]time.Duration
}

func newMemState() *memState {
	return &memState{keys: map[string][]byte{}, revs: map[string]uint64{}, ttls: map[string]time.Duration{}}
}

func (s *memState) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.keys[key]
	if !ok {
		return nil, 0, crm.ErrNotFound
	}
	return v, s.revs[key], nil
}

func (s *memState) Put(_ context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revs[key] != revision || (revision == 0 && s.keys[key] != nil) {
		return 0, crm.ErrConflict
	}
	s.keys[key], s.ttls[key] = value, ttl
	s.revs[key]++
	return s.revs[key], nil
}

func (s *memState) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
	return nil
}

func newConnector(t *testing.T, url string, st crm.State, cfg Config) crm.Connector {
	t.Helper()
	cfg.Token = "{env.AMO_TOKEN}"
	if cfg.Users == nil {
		cfg.Users = map[string]string{"101": fmt.Sprint(userIvan), "102": fmt.Sprint(userOlga)}
	}
	env := crm.Env{
		Expand: func(s string) string { return strings.ReplaceAll(s, "{env.AMO_TOKEN}", testToken) },
		State:  func(context.Context) (crm.State, error) { return st, nil },
		Client: http.DefaultClient, UserAgent: "pbxbridge/test", Logger: zap.NewNop(),
	}
	conn, err := cfg.Provision("amo", url, env)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func ptr[T any](v T) *T { return &v }

// completed is a call.completed: inbound from client to extension ext unless changed.
func completed(callID, client, ext, result string, talk int64, change ...func(*event.Data)) *event.Event {
	started := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	ev := event.Origin{PBX: "mango", Account: "office"}.New(event.TypeCompleted, callID, callID, started.Add(time.Minute))
	d := &ev.Data
	d.Direction, d.From.Number, d.To.Extension, d.Agent = event.DirectionInbound, client, ext, ext
	d.Result, d.TalkS, d.StartedAt = result, ptr(talk), &started
	for _, f := range change {
		f(d)
	}
	return &ev
}

func deliver(t *testing.T, conn crm.Connector, ev *event.Event) crm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return conn.Deliver(ctx, ev)
}

// Each kind of call reaches amoCRM once with the fields docs/amocrm.md gives.
func TestCompletedCalls(t *testing.T) {
	outbound := func(d *event.Data) {
		d.Direction, d.From, d.To = event.DirectionOutbound, event.Party{Number: "sip:101@x", Extension: "101"}, event.Party{Number: ivanPhone}
	}
	tests := []struct {
		name string
		ev   *event.Event
		want amocrmtest.Call
	}{
		{"inbound answered", completed("c1", ivanPhone, "101", event.ResultAnswered, 54, func(d *event.Data) { d.RecordingURL = "https://pbx.example.com/recordings/office/R1?exp=1&sig=ab" }),
			amocrmtest.Call{Direction: "inbound", UniqID: "c1", Duration: ptr(54), Source: "pbxbridge", Phone: ivanPhone, Link: "https://pbx.example.com/recordings/office/R1?exp=1&sig=ab", Status: 4, Responsible: float64(userIvan), ResponsibleUserID: userIvan, CreatedBy: userIvan}},
		{"inbound missed", completed("c2", ivanPhone, "", event.ResultMissed, 0),
			amocrmtest.Call{Direction: "inbound", UniqID: "c2", Duration: ptr(0), Source: "pbxbridge", Phone: ivanPhone, Status: 6}},
		{"inbound caller gave up", completed("c3", ivanPhone, "", event.ResultCancelled, 0),
			amocrmtest.Call{Direction: "inbound", UniqID: "c3", Duration: ptr(0), Source: "pbxbridge", Phone: ivanPhone, Status: 3}},
		{"outbound answered", completed("c4", "", "", event.ResultAnswered, 20, outbound, func(d *event.Data) { d.Agent = "" }),
			amocrmtest.Call{Direction: "outbound", UniqID: "c4", Duration: ptr(20), Source: "pbxbridge", Phone: ivanPhone, Status: 4, Responsible: float64(userIvan), ResponsibleUserID: userIvan, CreatedBy: userIvan}},
		{"outbound busy", completed("c5", "", "", event.ResultBusy, 0, outbound),
			amocrmtest.Call{Direction: "outbound", UniqID: "c5", Duration: ptr(0), Source: "pbxbridge", Phone: ivanPhone, Status: 7, Responsible: float64(userIvan), ResponsibleUserID: userIvan, CreatedBy: userIvan}},
		{"outbound wrong number", completed("c6", "", "", event.ResultFailed, 0, outbound, func(d *event.Data) { d.Reason = "wrong_number" }),
			amocrmtest.Call{Direction: "outbound", UniqID: "c6", Duration: ptr(0), Source: "pbxbridge", Phone: ivanPhone, Status: 5, Responsible: float64(userIvan), ResponsibleUserID: userIvan, CreatedBy: userIvan}},
		{"transferred: who answered last is responsible", completed("c7", ivanPhone, "101", event.ResultAnswered, 90, func(d *event.Data) { d.Agent = "102" }),
			amocrmtest.Call{Direction: "inbound", UniqID: "c7", Duration: ptr(90), Source: "pbxbridge", Phone: ivanPhone, Status: 4, Responsible: float64(userOlga), ResponsibleUserID: userOlga, CreatedBy: userOlga}},
		{"extension without a user is shown as given", completed("c8", ivanPhone, "109", event.ResultAnswered, 5),
			amocrmtest.Call{Direction: "inbound", UniqID: "c8", Duration: ptr(5), Source: "pbxbridge", Phone: ivanPhone, Status: 4, Responsible: "109"}},
		{"only the whole call's length (XVB)", completed("c9", ivanPhone, "101", event.ResultAnswered, 0, func(d *event.Data) { d.TalkS, d.DurationS = nil, ptr(int64(25)) }),
			amocrmtest.Call{Direction: "inbound", UniqID: "c9", Duration: ptr(25), Source: "pbxbridge", Phone: ivanPhone, Status: 4, Responsible: float64(userIvan), ResponsibleUserID: userIvan, CreatedBy: userIvan}},
	}
	amo := amocrmtest.New(t, testToken, userIvan, userOlga)
	amo.AddContact("Иван Петров", "8 (916) 123-45-67", userIvan)
	conn := newConnector(t, amo.URL, newMemState(), Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := deliver(t, conn, tt.ev); res.Outcome != crm.Delivered {
				t.Fatalf("Deliver = %+v", res)
			}
			calls := amo.Calls()
			if len(calls) != i+1 {
				t.Fatalf("amoCRM has %d calls, want %d", len(calls), i+1)
			}
			got := calls[i]
			tt.want.CreatedAt, tt.want.RequestID = tt.ev.Data.StartedAt.Unix(), "0"
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tt.want)
			if string(g) != string(w) || got.ContactID != 1000 {
				t.Errorf("call on contact %d\n got %s\nwant %s", got.ContactID, g, w)
			}
		})
	}
	for _, h := range amo.AuthHeaders() {
		if h != "Bearer "+testToken {
			t.Fatalf("Authorization %q", h)
		}
	}
}

// A call amoCRM puts on no contact becomes an unsorted call lead with create_lead on, and is
// only counted without it; either way it is delivered once.
func TestUnknownCaller(t *testing.T) {
	const stranger = "+79035550011"
	for _, createLead := range []bool{false, true} {
		t.Run(fmt.Sprint("create_lead=", createLead), func(t *testing.T) {
			amo := amocrmtest.New(t, testToken, userIvan)
			cfg := Config{CreateLead: createLead}
			if createLead {
				cfg.PipelineID = 3166396
			}
			conn := newConnector(t, amo.URL, newMemState(), cfg)
			ev := completed("u1", stranger, "101", event.ResultAnswered, 54, func(d *event.Data) { d.RecordingURL = "https://pbx.example.com/r" })
			for range 2 { // the second is a re-delivery
				if res := deliver(t, conn, ev); res.Outcome != crm.Delivered {
					t.Fatalf("Deliver = %+v", res)
				}
			}
			if n := len(amo.Calls()); n != 0 {
				t.Errorf("amoCRM put %d calls on a contact", n)
			}
			leads := amo.Unsorted()
			if !createLead {
				if len(leads) != 0 {
					t.Fatalf("%d unsorted leads without create_lead", len(leads))
				}
				return
			}
			if len(leads) != 1 {
				t.Fatalf("%d unsorted leads, want 1", len(leads))
			}
			u := leads[0]
			meta, _ := json.Marshal(u.Metadata)
			want := fmt.Sprintf(`{"call_responsible":%d,"called_at":%d,"duration":54,"from":"%s","is_call_event_needed":true,"link":"https://pbx.example.com/r","phone":"%s","service_code":"pbxbridge","uniq":"u1"}`,
				userIvan, ev.Data.StartedAt.Unix(), stranger, stranger)
			if u.SourceUID != "pbxbridge" || u.SourceName != "pbxbridge" || u.PipelineID != 3166396 || string(meta) != want {
				t.Errorf("unsorted %+v\nmetadata %s\nwant     %s", u, meta, want)
			}
			if len(u.Embedded.Leads) != 1 || u.Embedded.Leads[0]["name"] != "Call from "+stranger || len(u.Embedded.Contacts) != 1 || u.Embedded.Contacts[0]["name"] != stranger {
				t.Errorf("unsorted entities %+v", u.Embedded)
			}
		})
	}
}

// A re-delivery, also to a connector built anew over the same state (a restart, another
// gateway of the cluster), adds no second call.
func TestRedeliveryAddsNoSecondCall(t *testing.T) {
	amo := amocrmtest.New(t, testToken, userIvan)
	amo.AddContact("Иван Петров", ivanPhone, userIvan)
	st := newMemState()
	ev := completed("r1", ivanPhone, "101", event.ResultAnswered, 10)
	for range 2 {
		if res := deliver(t, newConnector(t, amo.URL, st, Config{}), ev); res.Outcome != crm.Delivered {
			t.Fatalf("Deliver = %+v", res)
		}
	}
	if n := len(amo.Calls()); n != 1 {
		t.Fatalf("amoCRM has %d calls, want 1", n)
	}
}

// A recording link that comes before the completion goes with the call; one that comes after
// changes nothing in amoCRM. What the connector keeps of a call expires.
func TestRecordingLinks(t *testing.T) {
	amo := amocrmtest.New(t, testToken, userIvan)
	amo.AddContact("Иван Петров", ivanPhone, userIvan)
	st := newMemState()
	conn := newConnector(t, amo.URL, st, Config{})
	recording := func(callID, link string) *event.Event {
		ev := event.Origin{PBX: "mango", Account: "office"}.New(event.TypeRecordingReady, callID+"rec", callID, time.Now())
		ev.Data.RecordingURL = link
		return &ev
	}
	for _, ev := range []*event.Event{
		recording("early", "https://pbx.example.com/recordings/office/early"),
		completed("early", ivanPhone, "101", event.ResultAnswered, 10),
		completed("late", ivanPhone, "101", event.ResultAnswered, 10),
		recording("late", "https://pbx.example.com/recordings/office/late"),
	} {
		if res := deliver(t, conn, ev); res.Outcome != crm.Delivered {
			t.Fatalf("Deliver %s = %+v", ev.Type, res)
		}
	}
	calls := amo.Calls()
	if len(calls) != 2 || calls[0].Link != "https://pbx.example.com/recordings/office/early" || calls[1].Link != "" {
		t.Fatalf("calls %+v", calls)
	}
	if len(st.ttls) != 3 { // recording.early, added.early, added.late
		t.Errorf("%d keys written, want 3", len(st.ttls))
	}
	for key, ttl := range st.ttls {
		if ttl != crm.CallTTL {
			t.Errorf("%s written with TTL %v, want %v", key, ttl, crm.CallTTL)
		}
	}
}

// amoCRM's refusals: a revoked token is Down with a reason, a validation error Dead with
// amoCRM's text, the rate limit and 5xx are retried; no error carries the token.
func TestFailures(t *testing.T) {
	amo := amocrmtest.New(t, testToken, userIvan)
	amo.AddContact("Иван Петров", ivanPhone, userIvan)
	ev := completed("f1", ivanPhone, "101", event.ResultAnswered, 10)

	amo.Revoke(true)
	res := deliver(t, newConnector(t, amo.URL, newMemState(), Config{}), ev)
	if res.Outcome != crm.Down || res.Reason != "auth" || !strings.Contains(res.Error, "401") || !strings.Contains(res.Error, "long-lived token") {
		t.Errorf("revoked token: %+v", res)
	}
	amo.Revoke(false)

	res = deliver(t, newConnector(t, amo.URL, newMemState(), Config{Users: map[string]string{"101": "999"}}), ev)
	if want := "amoCRM 400 on /api/v4/calls: Request validation failed; 0.responsible_user_id: NotSupportedChoice The value you selected is not a valid choice."; res.Outcome != crm.Dead || res.Reason != "validation" || res.Error != want {
		t.Errorf("validation: %+v\nwant error %s", res, want)
	}

	for _, tt := range []struct {
		status     int
		header     string
		reason     string
		retryAfter time.Duration
	}{
		{http.StatusTooManyRequests, "3", "limit", 3 * time.Second},
		{http.StatusTooManyRequests, "", "limit", time.Second},
		{http.StatusBadGateway, "", "http_5xx", 0},
		{http.StatusServiceUnavailable, "", "http_5xx", 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tt.header != "" {
				w.Header().Set("Retry-After", tt.header)
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(tt.status)
			fmt.Fprintf(w, `{"title":"x","status":%d,"detail":"try later"}`, tt.status)
		}))
		res := deliver(t, newConnector(t, srv.URL, newMemState(), Config{}), ev)
		srv.Close()
		if res.Outcome != crm.Retry || res.Reason != tt.reason || res.RetryAfter != tt.retryAfter || !strings.Contains(res.Error, "try later") {
			t.Errorf("%d: %+v", tt.status, res)
		}
	}
	for _, h := range amo.AuthHeaders() {
		if strings.Contains(res.Error, testToken) || h != "Bearer "+testToken {
			t.Fatal("token in an error, or not sent as a Bearer token")
		}
	}
}

// Lanes delivering at once stay under amoCRM's 7 requests a second.
func TestPaceSharedByLanes(t *testing.T) {
	amo := amocrmtest.New(t, testToken, userIvan)
	amo.AddContact("Иван Петров", ivanPhone, userIvan)
	conn := newConnector(t, amo.URL, newMemState(), Config{})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			if res := deliver(t, conn, completed(fmt.Sprint("p", i), ivanPhone, "101", event.ResultAnswered, 1)); res.Outcome != crm.Delivered {
				t.Errorf("Deliver = %+v", res)
			}
		})
	}
	wg.Wait()
	if n, over := len(amo.Calls()), amo.OverLimit(); n != 12 || over != 0 {
		t.Fatalf("%d calls added, %d requests over the limit", n, over)
	}
}

// notify pops a ringing inbound call up for the user of the ringing extension, and for nobody
// when the extension has no user.
func TestRingingPopup(t *testing.T) {
	amo := amocrmtest.New(t, testToken, userIvan)
	conn := newConnector(t, amo.URL, newMemState(), Config{Notify: true})
	ringing := func(ext string) *event.Event {
		ev := event.Origin{PBX: "mango", Account: "office"}.New(event.TypeRinging, "ring"+ext, "call-r", time.Now())
		ev.Data.Direction, ev.Data.From.Number, ev.Data.To.Extension = event.DirectionInbound, ivanPhone, ext
		return &ev
	}
	for _, ext := range []string{"101", "109"} {
		if res := deliver(t, conn, ringing(ext)); res.Outcome != crm.Delivered {
			t.Fatalf("Deliver = %+v", res)
		}
	}
	if p := amo.Popups(); len(p) != 1 || p[0].Type != "phone_call" || p[0].PhoneNumber != ivanPhone || len(p[0].Users) != 1 || p[0].Users[0] != userIvan {
		t.Fatalf("popups %+v", p)
	}
}

func TestProvisionChecks(t *testing.T) {
	env := crm.Env{Expand: func(s string) string { return s }}
	for _, tt := range []struct {
		url  string
		cfg  Config
		want string
	}{
		{"https://x.amocrm.ru", Config{}, "token is required"},
		{"x.amocrm.ru", Config{Token: "t"}, "account's address"},
		{"https://x.amocrm.ru", Config{Token: "t", Users: map[string]string{"101": "ivan"}}, "users: 101"},
		{"https://x.amocrm.ru", Config{Token: "t", PipelineID: 5}, "needs create_lead on"},
	} {
		if _, err := tt.cfg.Provision("amo", tt.url, env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Provision(%s, %+v) = %v, want %q", tt.url, tt.cfg, err, tt.want)
		}
	}
}

package mango

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	now := time.Unix(1764065700, 0)
	const day = 24 * time.Hour
	call := leg("Appeared")
	summary := `{"entry_id":"E1","call_direction":1,"create_time":1764065600,"talk_time":0,"end_time":1764065690}`
	recordAdded := `{"entry_id":"E1","product_id":1,"user_id":-1,"timestamp":1764065690,"recording_id":"R1"}`
	recording := `{"recording_id":"R1","recording_state":"Completed","completion_code":1000,"seq":4,"entry_id":"E1","timestamp":1764065690}`
	result := `{"command_id":"c1","result":1000}`
	for _, tt := range []struct {
		name, suffix, payload string
		refused               string // a part of the error, "" when accepted
	}{
		{"call", "events/call", call, ""},
		{"summary", "events/summary", summary, ""},
		{"recording", "events/recording", recording, ""},
		{"record/added", "events/record/added", recordAdded, ""},
		{"record/tagged", "events/record/tagged", recordAdded, ""},
		{"dtmf", "events/dtmf", `{"call_id":"L1","seq":1,"dtmf":"12","timestamp":1764065690}`, ""},
		{"result", "result/callback", result, ""},
		{"stats result", "result/stats", `{"key":"k","request_id":"r"}`, ""},
		{"sms", "events/sms", `{"command_id":"c1","timestamp":1764065690,"reason":1000}`, ""},
		{"unmarked under an unknown path", "/hooks/mango/anything/x", `{"x":1}`, ""},
		{"not JSON", "events/call", `{`, ""},
		{"a summary without times", "events/summary", `{"entry_id":"E1"}`, ""},

		{"call as summary", "events/summary", call, "events/call message (it has call_state) posted to events/summary"},
		{"call under an unknown path", "/hooks/mango/anything/x", call, "posted to /hooks/mango/anything/x"},
		{"call as dtmf", "events/dtmf", call, "events/call message"},
		{"summary as call", "events/call", summary, "events/summary message"},
		{"record/added as summary", "events/summary", recordAdded, "events/record message"},
		{"recording as record/added", "events/record/added", recording, "events/recording message"},
		{"result as record/added", "events/record/added", result, "result message"},
		{"record/added as result", "result/callback", recordAdded, "events/record message"},

		{"timestamp within the window", "events/call", strings.Replace(call, "1764065705", "1763979301", 1), ""},
		{"timestamp in the future", "events/call", strings.Replace(call, "1764065705", "1764076500", 1), ""},
		{"timestamp past the window", "events/call", strings.Replace(call, "1764065705", "1763979299", 1), "older than stale_after"},
		{"string timestamp past the window", "events/call", strings.Replace(call, "1764065705", `"1700000000"`, 1), "older than stale_after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.suffix, []byte(tt.payload), now, day)
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refused != "" && (err == nil || !errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), tt.refused)):
				t.Fatalf("got %v, want a refusal with %q", err, tt.refused)
			}
		})
	}
}

// Without stale_after, an old timestamp is no reason to refuse: the marks still are.
func TestCheckWithoutStaleAfter(t *testing.T) {
	old := strings.Replace(leg("Appeared"), "1764065705", "1500000000", 1)
	now := time.Unix(1764065700, 0)
	if err := Check("events/call", []byte(old), now, 0); err != nil {
		t.Errorf("an old genuine leg refused without stale_after: %v", err)
	}
	if err := Check("events/summary", []byte(old), now, 0); err == nil {
		t.Error("a leg under /events/summary accepted without stale_after")
	}
}

// Every message fixture passes under the suffix Mango posts it to (fixtureRoutes), mapped or
// not: the marks never refuse a genuine message. cmd_* and stats_* are bodies Mango receives.
func TestCheckPassesEveryFixture(t *testing.T) {
	names, err := filepath.Glob(filepath.Join(fixtureDir, "*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		if strings.HasPrefix(name, "cmd_") || strings.HasPrefix(name, "stats_") || name == "README.md" {
			continue
		}
		i := slices.IndexFunc(fixtureRoutes, func(r struct {
			prefix, suffix string
			unmapped       bool
		}) bool {
			return strings.HasPrefix(name, r.prefix)
		})
		if i < 0 {
			t.Fatalf("no route for %s", name)
		}
		r := fixtureRoutes[i]
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(r.suffix, fixturePayload(t, name, body), time.Unix(1764065700, 0), 0); err != nil {
			t.Errorf("%s posted to %s: %v", name, r.suffix, err)
		}
	}
}

package mango

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/eventtest"
)

// FuzzTranslate: whatever the path and payload, Check and Translate do not panic, and
// Translate yields one schema-valid event (none for a ping), and yields it again,
// identically, for a re-send.
func FuzzTranslate(f *testing.F) {
	addFixtureSeeds(f, func(name string, body []byte) {
		for _, r := range fixtureRoutes {
			if strings.HasPrefix(name, r.prefix) {
				if strings.HasSuffix(name, ".form") {
					if form, err := ParseForm(body); err == nil {
						body = []byte(form.JSON)
					}
				}
				f.Add("/hooks/mango/"+r.suffix, body)
				return
			}
		}
	})
	f.Add("/hooks/mango/ping", []byte(""))
	f.Add("/hooks/mango/result/call/hangup", []byte(`{"command_id":"c","result":"4101"}`))
	f.Add("/hooks/mango/events/recording", []byte(`{"recording_id":"r","recording_state":"Completed","completion_code":1000}`))
	f.Fuzz(func(t *testing.T, path string, payload []byte) {
		suffix, _ := Route(path)
		_ = Check(suffix, payload, testReceived, time.Hour) // must not panic either
		evs := Translate(testSrc, suffix, payload, testReceived)
		if IsPing(suffix) {
			if len(evs) != 0 {
				t.Fatalf("ping yields %d events", len(evs))
			}
			return
		}
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1", len(evs))
		}
		b, err := json.Marshal(evs[0])
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if err := eventtest.Validate(b); err != nil {
			t.Fatalf("not schema-valid: %v\n%s", err, b)
		}
		again, _ := json.Marshal(Translate(testSrc, suffix, payload, testReceived)[0])
		if string(again) != string(b) {
			t.Fatalf("not deterministic:\n%s\n%s", b, again)
		}
	})
}

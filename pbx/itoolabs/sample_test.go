package itoolabs

import (
	"slices"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

// The sample call is a whole call as the gateway sees it: authentic messages of one call_id,
// ringing to completion with its recording, at the times it says.
func TestSampleCall(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 10, 0, 0, time.FixedZone("MSK", 3*3600))
	var types []string
	for _, m := range SampleCall("S3CRET", "call-1", start) {
		f := mustParse(t, formType, []byte(m.Body))
		if !Authenticate(f, "S3CRET") {
			t.Fatalf("%s does not authenticate", m.Name)
		}
		if f.IsContact() {
			if m.Name != "contact" || f.CallID() != "call-1" {
				t.Errorf("contact step %q %q", m.Name, f.CallID())
			}
			continue
		}
		events := Translate(testSource, f, testReceived)
		pbxtest.CheckEvents(t, events)
		for _, ev := range events {
			if ev.Data.CallID != "call-1" || ev.Data.Direction != event.DirectionInbound || ev.Data.Agent != "701" {
				t.Errorf("%s: %s call %q direction %q agent %q", m.Name, ev.Type, ev.Data.CallID, ev.Data.Direction, ev.Data.Agent)
			}
			types = append(types, ev.Type)
		}
		if m.Name == "history" {
			d := events[0].Data
			if d.Result != event.ResultAnswered || !d.StartedAt.Equal(start) || *d.DurationS != 42 || d.RecordingURL == "" {
				t.Errorf("history: %+v", d)
			}
		}
	}
	want := []string{event.TypeRinging, event.TypeAnswered, event.TypeLegEnded, event.TypeCompleted, event.TypeRecordingReady}
	if !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
}

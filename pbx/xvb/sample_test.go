package xvb

import (
	"slices"
	"testing"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

// The sample call is a whole call as the gateway sees it: authentic messages of one call_id
// (joined by phone where COMPLETED has no callid), ringing to completion, with its recording
// when asked for.
func TestSampleCall(t *testing.T) {
	tests := []struct {
		completed Completed
		how       string // the COMPLETED's correlation
		types     []string
	}{
		{Completed{}, CorrelationWeak, []string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted}},
		{Completed{Recording: true}, CorrelationWeak,
			[]string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted, event.TypeRecordingReady}},
		{Completed{CallID: true}, "", []string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted}},
		{Completed{CallID: true, Recording: true}, "",
			[]string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted, event.TypeRecordingReady}},
	}
	for _, tt := range tests {
		var types []string
		for _, m := range SampleCall("10019", "call/1", "89201119613", tt.completed) {
			f := mustParse(t, formType, []byte(m.Body()))
			if !Authenticate(f, m.AC, "10019") || (m.AC != "") != (m.Name == "ANSWERED") {
				t.Fatalf("%+v %s: does not authenticate, or X-XVB-AC %q", tt.completed, m.Name, m.AC)
			}
			if f.IsContact() != (m.Name == "contact") || f.Event() != m.Name && !f.IsContact() {
				t.Fatalf("%+v: message %q is %v", tt.completed, m.Name, f)
			}
			if f.IsContact() {
				continue
			}
			// What the gateway's correlator finds for a COMPLETED: the call INCOMING opened.
			corr := Correlation{CallID: "call/1", How: CorrelationWeak, Type: "in", Agent: "100"}
			events := Translate(testSource, f, corr, testReceived)
			pbxtest.CheckEvents(t, events)
			for _, ev := range events {
				d := ev.Data
				how := ""
				if m.Name == "COMPLETED" {
					how = tt.how
				}
				if d.CallID != "call/1" || d.Correlation != how || d.Direction != event.DirectionInbound ||
					d.From.Number != "+79201119613" || (m.Name != "INCOMING" && d.Agent != "100") {
					t.Errorf("%+v %s: %s call %q correlation %q direction %q from %q agent %q", tt.completed, m.Name,
						ev.Type, d.CallID, d.Correlation, d.Direction, d.From.Number, d.Agent)
				}
				types = append(types, ev.Type)
			}
		}
		if !slices.Equal(types, tt.types) {
			t.Errorf("%+v: events %v, want %v", tt.completed, types, tt.types)
		}
	}
}

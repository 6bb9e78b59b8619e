package xvb

import (
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

// BenchmarkParseTranslate is one message of SampleCall (the contact lookup left out) parsed
// from its body and translated, without the correlator.
func BenchmarkParseTranslate(b *testing.B) {
	src := event.Origin{PBX: "xvb", Account: "main", Region: "RU"}
	var bodies []string
	for _, m := range SampleCall("AC1", "C1", "79201119613", Completed{CallID: true, Recording: true}) {
		if m.Name != "contact" {
			bodies = append(bodies, m.Body())
		}
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f, _, err := Parse("application/x-www-form-urlencoded", []byte(bodies[i%len(bodies)]))
		if err != nil {
			b.Fatal(err)
		}
		Translate(src, f, Correlation{}, now)
		i++
	}
}

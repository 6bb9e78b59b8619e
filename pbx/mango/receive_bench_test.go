package mango

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// BenchmarkReceive is the handler's Mango work for one webhook of SampleCall (verify, check,
// translate), without HTTP and the store.
func BenchmarkReceive(b *testing.B) {
	cfg := Config{APIKey: "key", APISalt: "salt", Sources: []string{"any"}}
	acc, err := cfg.Provision("office", pbx.Env{Origin: event.Origin{PBX: "mango", Account: "office"}, Expand: func(s string) string { return s }})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	call := SampleCall("MTYxNzM5NjY0OTE=", "MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5", start)
	bodies := make([]string, len(call))
	for i, m := range call {
		bodies[i] = FormBody("key", "salt", m.JSON)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := call[i%len(call)]
		r := httptest.NewRequest("POST", "/hooks/mango"+m.Suffix, strings.NewReader(bodies[i%len(call)]))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		reply, rej := acc.Receive(b.Context(), &pbx.Inbound{Request: r, Now: start, MaxBody: 64 << 10})
		if rej != nil || len(reply.Events) != 1 {
			b.Fatalf("%s: %v, %d events", m.Name, rej, len(reply.Events))
		}
		i++
	}
}

package e2e

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// span is what the test reads of an exported span.
type span struct {
	trace, id, parent, name string
	attrs                   map[string]string
}

// otlpReceiver is an OTLP/HTTP trace receiver in the test's process.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	o := &otlpReceiver{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					attrs := map[string]string{}
					for _, kv := range s.Attributes {
						v := kv.Value.GetStringValue()
						if v == "" {
							v = strconv.FormatInt(kv.Value.GetIntValue(), 10)
						}
						attrs[kv.Key] = v
					}
					o.spans = append(o.spans, span{hex.EncodeToString(s.TraceId), hex.EncodeToString(s.SpanId), hex.EncodeToString(s.ParentSpanId), s.Name, attrs})
				}
			}
		}
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *otlpReceiver) received() []span {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]span(nil), o.spans...)
}

// With `tracing` on, each webhook is one trace: its pbx.ingest span and a pbx.deliver span
// per delivery attempt, children of it, exported over OTLP to the endpoint of the standard
// environment variable. The events carry the trace context to the CRM (CloudEvents
// traceparent, valid by the schema); a PBX's own traceparent header is the ingest span's
// parent.
func TestTracingOneTracePerWebhook(t *testing.T) {
	const call, pbxCall = "E-traced", "E-traced-pbx"
	const pbxTrace, pbxSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	otlp := newOTLPReceiver(t)
	crm := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.Data.CallID == call && ev.Type == event.TypeAnswered && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	config := mangoGateway(crm.URL+"/events", "127.0.0.1")
	config.PBX = append(config.PBX, "tracing")
	g := gatewaytest.Start(t, config.String(), "TEST_MANGO_SALT="+testSalt,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	g.WaitReady()

	postCall(t, g, call)
	ringing := mango.SampleCall(pbxCall, pbxCall+"-leg", time.Now())[0]
	if code, body := g.Post("/hooks/mango"+ringing.Suffix, formType, mango.FormBody(testKey, testSalt, ringing.JSON),
		"traceparent", "00-"+pbxTrace+"-"+pbxSpan+"-01"); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	delivered := crm.WaitDelivered(t, 5, 30*time.Second)

	// 5 webhooks, 6 attempts (the answered event's 503 and its retry).
	var spans []span
	gatewaytest.Eventually(t, 20*time.Second, "11 spans", func() bool {
		spans = otlp.received()
		return len(spans) >= 11
	})
	ingest := map[string]span{}  // by trace
	attempts := map[string]int{} // deliver spans by trace
	for _, s := range spans {
		if s.name == "pbx.ingest" {
			if _, twice := ingest[s.trace]; twice {
				t.Errorf("trace %s has two ingest spans", s.trace)
			}
			ingest[s.trace] = s
		}
	}
	for _, s := range spans {
		switch {
		case s.name == "pbx.ingest":
		case s.name != "pbx.deliver":
			t.Errorf("unexpected span %+v", s)
		case s.parent != ingest[s.trace].id:
			t.Errorf("deliver span %+v is not a child of its trace's ingest span %+v", s, ingest[s.trace])
		case s.attrs["pbx.target"] != "crm" || s.attrs["pbx.attempt"] == "" || s.attrs["http.response.status_code"] == "":
			t.Errorf("deliver span attributes %v", s.attrs)
		default:
			attempts[s.trace]++
		}
	}
	if len(ingest) != 5 {
		t.Errorf("%d traces with an ingest span, want one per webhook (5)", len(ingest))
	}
	for _, d := range delivered {
		if err := eventtest.Validate(d.Body); err != nil {
			t.Errorf("%s does not validate: %v", d.Event.Type, err)
		}
		tp := d.Event.TraceParent
		if len(tp) != 55 {
			t.Errorf("%s: traceparent %q", d.Event.Type, tp)
			continue
		}
		trace, parent := tp[3:35], tp[36:52]
		if ingest[trace].id != parent {
			t.Errorf("%s carries %s, not its ingest span %+v", d.Event.Type, tp, ingest[trace])
		}
		want := 1
		if d.Event.Data.CallID == call && d.Event.Type == event.TypeAnswered {
			want = 2
		}
		if attempts[trace] != want {
			t.Errorf("%s of %s: %d deliver spans, want %d", d.Event.Type, d.Event.Data.CallID, attempts[trace], want)
		}
		if d.Event.Data.CallID == pbxCall && (trace != pbxTrace || ingest[trace].parent != pbxSpan) {
			t.Errorf("the PBX's trace context was not the ingest span's parent: %s, ingest %+v", tp, ingest[trace])
		}
	}
}

package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
)

// formatTestEvent is a realistic canonical event of the given type, built the way the PBX packages
// build them, with the PBX payload in data.raw; edit adjusts it per test case.
func formatTestEvent(source event.Origin, typ, at string, edit func(*event.Event)) *event.Event {
	occurred, err := time.Parse(time.RFC3339, at)
	if err != nil {
		panic(err)
	}
	ev := source.New(typ, "msg-"+at, "MTYxNzM5NjY0OTE=", occurred)
	ev.Data.LegID = "MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5"
	ev.Data.Direction = event.DirectionInbound
	ev.Data.From = event.Party{Number: "+79123456789"}
	ev.Data.To = event.Party{Number: "+79987654321", Extension: "101", Group: "303"}
	ev.Data.Raw = json.RawMessage(`{"entry_id":"MTYxNzM5NjY0OTE=","call_state":"Appeared"}`)
	if edit != nil {
		edit(&ev)
	}
	return &ev
}

var formatTestMango = event.Origin{PBX: "mango", Account: "office"}

func formatTestInt(n int64) *int64 { return &n }

func TestFormatCloudEventsStructured(t *testing.T) {
	for _, raw := range []bool{false, true} {
		ev := formatTestEvent(formatTestMango, event.TypeAnswered, "2026-11-25T10:15:05Z", nil)
		f, err := NewFormat("", "", raw)
		if err != nil {
			t.Fatal(err)
		}
		body, h, err := f.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Get("Content-Type"); got != "application/cloudevents+json; charset=utf-8" {
			t.Errorf("raw=%v: Content-Type %q", raw, got)
		}
		var got event.Event
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("raw=%v: body is not an event: %v", raw, err)
		}
		want := *ev
		if !raw {
			want.Data.Raw = nil
		}
		wantJSON, _ := json.Marshal(want)
		gotJSON, _ := json.Marshal(got)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("raw=%v: body\n%s\nwant\n%s", raw, gotJSON, wantJSON)
		}
		if err := eventtest.Validate(body); err != nil {
			t.Errorf("raw=%v: body does not match the event schema: %v", raw, err)
		}
		if ev.Data.Raw == nil {
			t.Errorf("raw=%v: Encode cleared the caller's data.raw", raw)
		}
	}
}

// TestFormatUnmappedKeepsRaw: a pbx.unmapped event is its PBX payload; without it the CRM
// would get an error text and nothing to act on (and the schema requires raw).
func TestFormatUnmappedKeepsRaw(t *testing.T) {
	ev := formatTestEvent(formatTestMango, event.TypeUnmapped, "2026-11-25T10:15:00Z", func(ev *event.Event) {
		ev.Data.Error = "unknown event /events/sms"
	})
	for _, kind := range []string{"cloudevents", "cloudevents-binary"} {
		f, err := NewFormat(kind, "", false)
		if err != nil {
			t.Fatal(err)
		}
		body, _, err := f.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(`"raw":{"entry_id"`)) {
			t.Errorf("%s: raw stripped from pbx.unmapped: %s", kind, body)
		}
		if kind == "cloudevents" {
			if err := eventtest.Validate(body); err != nil {
				t.Errorf("body does not match the event schema: %v", err)
			}
		}
	}
}

func TestFormatCloudEventsStructuredKeepsURLsReadable(t *testing.T) {
	ev := formatTestEvent(formatTestMango, event.TypeRecordingReady, "2026-11-25T10:16:10Z", func(ev *event.Event) {
		ev.Data.RecordingURL = "https://pbx.example.com/recordings/office/r1?exp=1&sig=ab"
	})
	f, _ := NewFormat("cloudevents", "", false)
	body, _, err := f.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`"recording_url":"https://pbx.example.com/recordings/office/r1?exp=1&sig=ab"`)) {
		t.Errorf("recording URL escaped or missing: %s", body)
	}
}

func TestFormatCloudEventsBinary(t *testing.T) {
	// Cyrillic account name in source, and a subject with every printable character the
	// binding singles out (space, double quote, percent) next to Cyrillic.
	source := event.Origin{PBX: "mango", Account: "офис"}
	ev := formatTestEvent(source, event.TypeRinging, "2026-11-25T10:15:00Z", func(ev *event.Event) {
		ev.Subject = `звонок "A" 100%`
	})
	wantHeaders := map[string]string{
		"ce-specversion": "1.0",
		"ce-id":          ev.ID,
		"ce-source":      "/pbx/mango/%D0%BE%D1%84%D0%B8%D1%81",
		"ce-type":        "call.ringing",
		"ce-subject":     "%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA%20%22A%22%20100%25",
		"ce-time":        "2026-11-25T10:15:00Z",
		"ce-dataschema":  "urn:pbxbridge:call-event:v1",
		"Content-Type":   "application/json",
	}
	decoded := map[string]string{
		"ce-source":  ev.Source,
		"ce-subject": ev.Subject,
	}
	for _, raw := range []bool{false, true} {
		f, err := NewFormat("cloudevents-binary", "", raw)
		if err != nil {
			t.Fatal(err)
		}
		body, h, err := f.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != len(wantHeaders) {
			t.Errorf("raw=%v: headers %v, want exactly %v", raw, h, wantHeaders)
		}
		for name, want := range wantHeaders {
			got := h.Get(name)
			if got != want {
				t.Errorf("raw=%v: %s = %q, want %q", raw, name, got, want)
			}
			// The binding's decoding: one round of percent-decoding, and the bytes must be UTF-8.
			back, err := url.PathUnescape(got)
			if err != nil || !utf8.ValidString(back) {
				t.Errorf("raw=%v: %s = %q does not decode: %v", raw, name, got, err)
			}
			if orig, ok := decoded[name]; ok && back != orig {
				t.Errorf("raw=%v: %s decodes to %q, want %q", raw, name, back, orig)
			}
		}

		wantData := ev.Data
		if !raw {
			wantData.Raw = nil
		}
		wantBody, _ := formatJSON(wantData)
		if !bytes.Equal(body, wantBody) {
			t.Errorf("raw=%v: body\n%s\nwant data\n%s", raw, body, wantBody)
		}
		if hasRaw := bytes.Contains(body, []byte(`"raw":`)); hasRaw != raw {
			t.Errorf("raw=%v: body has raw = %v", raw, hasRaw)
		}
	}
}

func TestFormatCloudEventsBinaryOmitsEmptyAttributes(t *testing.T) {
	ev := formatTestEvent(formatTestMango, event.TypeUnmapped, "2026-11-25T10:15:00Z", func(ev *event.Event) {
		ev.Subject, ev.DataSchema, ev.DataContentType = "", "", ""
	})
	f, _ := NewFormat("cloudevents-binary", "", false)
	_, h, err := f.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ce-subject", "ce-dataschema"} {
		if len(h.Values(name)) > 0 {
			t.Errorf("%s present for an empty attribute: %v", name, h)
		}
	}
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q without datacontenttype, want application/json", got)
	}
}

func TestFormatPercentEncode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/pbx/xvb/main", "/pbx/xvb/main"},
		{"Euro € 💰", "Euro%20%E2%82%AC%20%F0%9F%92%B0"}, // the binding's own example
		{`a"b%c d`, "a%22b%25c%20d"},
		{"tab\tnl\ndel\x7f", "tab%09nl%0Adel%7F"},
		{"!~", "!~"}, // the ends of the printable range stay as they are
		{"bad\xffutf8", "bad%EF%BF%BDutf8"},
		{"", ""},
	} {
		if got := formatPercentEncode(tc.in); got != tc.want {
			t.Errorf("formatPercentEncode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatNewErrors(t *testing.T) {
	for _, tc := range []struct {
		kind, expr string
		want       string // substring of the error
	}{
		{"xml", "", `unknown format "xml"`},
		{"jq", "", "needs an expression"},
		{"jq", "  \n", "needs an expression"},
		{"cloudevents", ".data", "takes no jq expression"},
		{"jq", "{", "unexpected EOF"},                      // gojq's parser text
		{"jq", ".data | {a: }", `unexpected token "}"`},    // gojq's parser text
		{"jq", "foo(1)", "function not defined: foo/1"},    // gojq's compiler text
		{"jq", "$secret", "variable not defined: $secret"}, // gojq's compiler text
		{"jq", "input", "input(s)/0 is not allowed"},       // no input stream behind the event
	} {
		_, err := NewFormat(tc.kind, tc.expr, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewFormat(%q, %q) error %v, want it to contain %q", tc.kind, tc.expr, err, tc.want)
		}
	}
}

func TestFormatJQRuntimeErrors(t *testing.T) {
	ev := formatTestEvent(formatTestMango, event.TypeAnswered, "2026-11-25T10:15:05Z", nil)
	for _, tc := range []struct {
		name, expr string
		want       string // substring of the error
		timeout    bool
	}{
		{"tonumber on a string", ".data.call_id | tonumber", "tonumber", false},
		{"error", `error("boom")`, "boom", false},
		{"halt", "halt", "halt", false},
		{"no output", "empty", "no value", false},
		{"two outputs", ".data.call_id, .data.leg_id", "more than one value", false},
		{"endless outputs", "repeat(1)", "more than one value", false},
		{"error after a value", `1, error("late")`, "late", false},
		{"oversize", `"x" * 2000000`, "over the limit", false},
		{"endless recursion", "def f: f; f", "ran longer than", true},
		{"huge range", "[range(1e9)]", "ran longer than", true},
		{"endless after a value", "1, (def f: f; f)", "ran longer than", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFormat("jq", tc.expr, false)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			body, _, err := f.Encode(ev)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Encode took %v", elapsed)
			}
			if !errors.Is(err, ErrMapping) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Encode = %.100q, %v; want an ErrMapping containing %q", body, err, tc.want)
			}
			if errors.Is(err, context.DeadlineExceeded) != tc.timeout {
				t.Errorf("timeout %v, want %v: %v", !tc.timeout, tc.timeout, err)
			}
		})
	}
}

func TestFormatJQInput(t *testing.T) {
	t.Setenv("PBXBRIDGE_FORMAT_TEST_SECRET", "s3cr3t")
	ev := formatTestEvent(formatTestMango, event.TypeAnswered, "2026-11-25T10:15:05Z", nil)
	for _, tc := range []struct {
		expr string
		raw  bool
		want string
	}{
		{".data.raw", false, "null"},
		{".data.raw.call_state", true, `"Appeared"`},
		{"[.specversion, .type, .data.seq, .time]", false, `["1.0","call.answered",0,"2026-11-25T10:15:05Z"]`},
		{"[$ENV.PBXBRIDGE_FORMAT_TEST_SECRET, env.PBXBRIDGE_FORMAT_TEST_SECRET]", false, "[null,null]"},
		{`{url: "https://x/?a=1&b=<2>"}`, false, `{"url":"https://x/?a=1&b=<2>"}`},
	} {
		f, err := NewFormat("jq", tc.expr, tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		body, h, err := f.Encode(ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if string(body) != tc.want || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s (raw=%v): %s %v, want %s", tc.expr, tc.raw, body, h, tc.want)
		}
	}
}

func TestFormatFlatJQExample(t *testing.T) {
	xvb := event.Origin{PBX: "xvb", Account: "main"}
	for _, tc := range []struct {
		name string
		ev   *event.Event
		want string
	}{
		{
			"inbound ringing",
			formatTestEvent(formatTestMango, event.TypeRinging, "2026-11-25T10:15:00Z", nil),
			`{"call_id":"MTYxNzM5NjY0OTE=","direction":"in","disconnect_reason":"","duration":0,"from":"+79123456789","record_url":"","status":"start","timestamp":1795601700,"to":"+79987654321"}`,
		},
		{
			"inbound answered",
			formatTestEvent(formatTestMango, event.TypeAnswered, "2026-11-25T10:15:05Z", func(ev *event.Event) {
				ev.Data.Agent = "101"
			}),
			`{"call_id":"MTYxNzM5NjY0OTE=","direction":"in","disconnect_reason":"","duration":0,"from":"+79123456789","record_url":"","status":"answer","timestamp":1795601705,"to":"+79987654321"}`,
		},
		{
			"completed with recording",
			formatTestEvent(formatTestMango, event.TypeCompleted, "2026-11-25T10:16:10Z", func(ev *event.Event) {
				ev.Data.Result = event.ResultAnswered
				ev.Data.Reason = "caller_hangup"
				ev.Data.ReasonCode = 1110
				ev.Data.DurationS = formatTestInt(70)
				ev.Data.TalkS = formatTestInt(65)
				ev.Data.RecordingURL = "https://pbx.example.com/recordings/office/r1?exp=1&sig=ab"
			}),
			`{"call_id":"MTYxNzM5NjY0OTE=","direction":"in","disconnect_reason":"caller_hangup","duration":65,"from":"+79123456789","record_url":"https://pbx.example.com/recordings/office/r1?exp=1&sig=ab","status":"end","timestamp":1795601770,"to":"+79987654321"}`,
		},
		{
			"outbound from an extension",
			formatTestEvent(xvb, event.TypeRinging, "2026-11-25T11:00:00Z", func(ev *event.Event) {
				ev.Data.Direction = event.DirectionOutbound
				ev.Data.From = event.Party{Extension: "101"}
				ev.Data.To = event.Party{Number: "+79001234567"}
			}),
			`{"call_id":"MTYxNzM5NjY0OTE=","direction":"out","disconnect_reason":"","duration":0,"from":"101","record_url":"","status":"start","timestamp":1795604400,"to":"+79001234567"}`,
		},
		{
			"internal keeps its word",
			formatTestEvent(xvb, event.TypeCompleted, "2026-11-25T11:00:00Z", func(ev *event.Event) {
				ev.Data.Direction = event.DirectionInternal
				ev.Data.From = event.Party{Extension: "101"}
				ev.Data.To = event.Party{Extension: "102"}
				ev.Data.Result = event.ResultMissed
				ev.Data.Reason = "no_answer"
			}),
			`{"call_id":"MTYxNzM5NjY0OTE=","direction":"internal","disconnect_reason":"no_answer","duration":0,"from":"101","record_url":"","status":"end","timestamp":1795604400,"to":"102"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, raw := range []bool{false, true} { // raw must not change the flat shape
				f, err := NewFormat("jq", FlatJQExample, raw)
				if err != nil {
					t.Fatal(err)
				}
				body, _, err := f.Encode(tc.ev)
				if err != nil {
					t.Fatal(err)
				}
				if string(body) != tc.want {
					t.Errorf("raw=%v:\n got %s\nwant %s", raw, body, tc.want)
				}
			}
		})
	}

	t.Run("other types are mapping errors", func(t *testing.T) {
		f, _ := NewFormat("jq", FlatJQExample, false)
		_, _, err := f.Encode(formatTestEvent(formatTestMango, event.TypeHeld, "2026-11-25T10:15:30Z", nil))
		if !errors.Is(err, ErrMapping) || !strings.Contains(err.Error(), "no flat status for event type call.held") {
			t.Errorf("call.held: %v", err)
		}
	})

	t.Run("no backticks", func(t *testing.T) {
		if strings.Contains(FlatJQExample, "`") {
			t.Error("FlatJQExample cannot sit in Caddyfile backticks")
		}
	})
}

// TestFormatConcurrent runs one compiled program from many goroutines, as a dispatcher with
// concurrency > 1 does; -race checks that gojq's compiled code is shared safely.
func TestFormatConcurrent(t *testing.T) {
	f, err := NewFormat("jq", FlatJQExample, false)
	if err != nil {
		t.Fatal(err)
	}
	ev := formatTestEvent(formatTestMango, event.TypeRinging, "2026-11-25T10:15:00Z", nil)
	want, _, err := f.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				body, _, err := f.Encode(ev)
				if err != nil || !bytes.Equal(body, want) {
					t.Errorf("concurrent Encode = %s, %v", body, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

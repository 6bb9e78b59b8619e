package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/itchyny/gojq"

	"github.com/pbxbridge/pbxbridge/event"
)

// Format turns a canonical event into an HTTP request body and headers for one target.
// An error is not worth a retry: the same event fails the same way (the jq time limit is
// far above what a mapping needs). Errors of a jq program wrap ErrMapping; any other error
// means the event itself cannot be encoded as JSON.
type Format interface {
	Encode(ev *event.Event) (body []byte, header http.Header, err error)
}

// ErrMapping wraps errors from a jq program at run time (the dispatcher dead-letters such
// events with reason "mapping").
var ErrMapping = errors.New("mapping")

// Limits of a jq program per event. The program is the operator's, not an attacker's: these
// stop a mistake (an endless recursion, a runaway range) from stalling a lane, not a DoS. A
// whole second, because a timeout dead-letters the event: a healthy program on a starved CPU
// must not hit it.
const (
	formatJQTimeout = time.Second
	formatJQMaxBody = 1 << 20
)

// FlatJQExample maps the canonical event to the flat shape many CRM integrations already
// expect. docs/events.md quotes it; keep the two in step. It is meant for targets with
// `events call.ringing call.answered call.completed`: any other type is a mapping error,
// so a missing filter shows up as dead letters instead of silently wrong rows. direction is
// "in" or "out"; internal and unknown calls keep the canonical word rather than a guess.
// duration is the talk time, what CRMs bill and show. No backticks: it sits in backticks in
// the Caddyfile.
const FlatJQExample = `{
  call_id: .data.call_id,
  from: (.data.from.number // .data.from.extension // ""),
  to: (.data.to.number // .data.to.extension // ""),
  direction: ({inbound: "in", outbound: "out"}[.data.direction] // .data.direction),
  status: ({"call.ringing": "start", "call.answered": "answer", "call.completed": "end"}[.type]
    // error("no flat status for event type " + .type)),
  timestamp: (.time | fromdateiso8601),
  duration: (.data.talk_s // 0),
  record_url: (.data.recording_url // ""),
  disconnect_reason: (.data.reason // "")
}`

// NewFormat builds the format of a target: kind "cloudevents" (default when ""),
// "cloudevents-binary" or "jq" (expr required). raw=false strips data.raw before encoding
// (except from pbx.unmapped events). A jq syntax error is returned here (the config load
// fails with the jq error message).
func NewFormat(kind, jqExpr string, raw bool) (Format, error) {
	if kind != "jq" && jqExpr != "" {
		return nil, fmt.Errorf("format %q takes no jq expression", kind)
	}
	switch kind {
	case "", "cloudevents":
		return formatStructured{raw: raw}, nil
	case "cloudevents-binary":
		return formatBinary{raw: raw}, nil
	case "jq":
		return newFormatJQ(jqExpr, raw)
	default:
		return nil, fmt.Errorf("unknown format %q (want cloudevents, cloudevents-binary or jq)", kind)
	}
}

// formatView is the event as a target sees it. A pbx.unmapped event keeps data.raw whatever
// the target says: the payload is all it has to tell, and the schema requires it. It copies
// rather than clears Raw in place: the caller's event is shared by every target and attempt.
func formatView(ev *event.Event, raw bool) *event.Event {
	if raw || ev.Data.Raw == nil || ev.Type == event.TypeUnmapped {
		return ev
	}
	stripped := *ev
	stripped.Data.Raw = nil
	return &stripped
}

// formatJSON is json.Marshal without HTML escaping: bodies go to CRMs, not into web pages,
// and recording URLs stay readable (& rather than \u0026) in CRM logs.
func formatJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// formatStructured is the CloudEvents structured mode: the whole event is the body.
type formatStructured struct{ raw bool }

func (f formatStructured) Encode(ev *event.Event) ([]byte, http.Header, error) {
	body, err := formatJSON(formatView(ev, f.raw))
	if err != nil {
		return nil, nil, err
	}
	return body, structuredHeader(), nil
}

func structuredHeader() http.Header {
	return http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}
}

// storedRaw starts data.raw in an event's JSON, storedTraceParent ends data and starts
// traceparent. The first storedRaw is data.raw itself: no other member is named raw, and a
// string value holds a quote only escaped. The last storedTraceParent of an event that has
// traceparent is its own: the event's last member follows it.
var (
	storedRaw         = []byte(`,"raw":`)
	storedTraceParent = []byte(`},"traceparent":`)
)

// body is what Encode gives for the event stored as stored (see encodeStored), of type typ,
// made without decoding it: stored as it is, or with data.raw, data's last member, cut out
// (data is followed only by traceparent, when the event has one). ok is false for an event
// whose decoding would change it: a \ufffd outside data.raw, which encoding/json wrote for
// invalid UTF-8, decodes to U+FFFD and is encoded back as that character.
func (f formatStructured) body(stored []byte, typ string, traceParent bool) (body []byte, ok bool) {
	head, tail := stored, stored[len(stored):]
	if i := bytes.Index(stored, storedRaw); i >= 0 {
		head, tail = stored[:i], stored[len(stored)-len("}}"):]
		if traceParent {
			j := bytes.LastIndex(stored, storedTraceParent)
			if j < i {
				return nil, false
			}
			tail = stored[j:]
		}
	}
	if bytes.Contains(head, []byte(`\ufffd`)) || bytes.Contains(tail, []byte(`\ufffd`)) {
		return nil, false
	}
	if len(head) == len(stored) || f.raw || typ == event.TypeUnmapped {
		return stored, true
	}
	return append(head[:len(head):len(head)], tail...), true
}

// formatBinary is the CloudEvents binary mode: data is the body, the other attributes are
// ce-* headers.
type formatBinary struct{ raw bool }

func (f formatBinary) Encode(ev *event.Event) ([]byte, http.Header, error) {
	body, err := formatJSON(formatView(ev, f.raw).Data)
	if err != nil {
		return nil, nil, err
	}
	contentType := ev.DataContentType
	if contentType == "" {
		// The body is JSON whatever the event says; an absent type would leave the CRM guessing.
		contentType = "application/json"
	}
	h := http.Header{"Content-Type": {contentType}}
	for _, attr := range [...]struct{ name, value string }{
		{"ce-specversion", ev.SpecVersion},
		{"ce-id", ev.ID},
		{"ce-source", ev.Source},
		{"ce-type", ev.Type},
		{"ce-subject", ev.Subject},
		// RFC3339Nano is what the structured body carries too; whole seconds print as RFC 3339.
		{"ce-time", ev.Time.Format(time.RFC3339Nano)},
		{"ce-dataschema", ev.DataSchema},
	} {
		// Optional attributes that are empty are absent, not empty strings (CloudEvents 1.0
		// forbids empty subject/dataschema values).
		if attr.value != "" {
			h.Set(attr.name, formatPercentEncode(attr.value))
		}
	}
	return body, h, nil
}

// formatPercentEncode encodes a header value as the CloudEvents HTTP protocol binding 1.0.2,
// section 3.1.3.2 "HTTP Header Values", requires: the value is taken as UTF-8, and every
// character that is a space (U+0020), a double quote (U+0022), a percent sign (U+0025), or
// outside printable ASCII (U+0021-U+007E) is written as the '%'-hex form of each of its UTF-8
// bytes (e.g. "Euro € 💰" → "Euro%20%E2%82%AC%20%F0%9F%92%B0"). Working byte by byte is the
// same thing, since every byte of a multi-byte UTF-8 character is ≥ 0x80. Invalid UTF-8 is
// replaced first, as encoding/json does for the structured body: a receiver MUST reject
// percent-decoded bytes that are not UTF-8.
func formatPercentEncode(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c <= '~' && c != '"' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// formatJQ runs a jq program on the event; its one output is the body.
type formatJQ struct {
	code *gojq.Code
	raw  bool
}

func newFormatJQ(expr string, raw bool) (Format, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("format jq needs an expression")
	}
	query, err := gojq.Parse(expr)
	if err != nil {
		var perr *gojq.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("jq: %w (at byte %d)", err, perr.Offset)
		}
		return nil, fmt.Errorf("jq: %w", err)
	}
	// An empty environment: $ENV would otherwise hand the process's secrets (CRM tokens, PBX
	// keys from {env.*}) to whoever reads the CRM's request logs.
	code, err := gojq.Compile(query, gojq.WithEnvironLoader(func() []string { return nil }))
	if err != nil {
		return nil, fmt.Errorf("jq: %w", err)
	}
	return formatJQ{code: code, raw: raw}, nil
}

func (f formatJQ) Encode(ev *event.Event) (body []byte, header http.Header, err error) {
	// gojq is well tested, but a panic here would crash the server and the event would be
	// redelivered after the restart, crashing it again; a dead letter is the better outcome.
	defer func() {
		if p := recover(); p != nil {
			body, header, err = nil, nil, fmt.Errorf("%w: jq panicked: %v", ErrMapping, p)
		}
	}()
	doc, err := formatJSON(formatView(ev, f.raw))
	if err != nil {
		return nil, nil, err
	}
	var input any // the generic JSON value gojq works on
	if err := json.Unmarshal(doc, &input); err != nil {
		return nil, nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), formatJQTimeout)
	defer cancel()
	iter := f.code.RunWithContext(ctx, input)
	v, ok := iter.Next()
	if !ok {
		return nil, nil, fmt.Errorf("%w: jq program yielded no value", ErrMapping)
	}
	if err := formatJQError(v); err != nil {
		return nil, nil, err
	}
	// The second value is pulled only to prove there is none; an error there (the program
	// failing or running out of time after its first value) is the better message.
	if extra, more := iter.Next(); more {
		if err := formatJQError(extra); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: jq program yielded more than one value", ErrMapping)
	}

	body, err = gojq.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: jq: %w", ErrMapping, err)
	}
	if len(body) > formatJQMaxBody {
		return nil, nil, fmt.Errorf("%w: jq output is %d bytes, over the limit of %d", ErrMapping, len(body), formatJQMaxBody)
	}
	return body, http.Header{"Content-Type": {"application/json"}}, nil
}

// formatJQError turns an error value of a gojq iterator into an ErrMapping error; other
// values give nil.
func formatJQError(v any) error {
	err, ok := v.(error)
	switch {
	case !ok:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: jq program ran longer than %v: %w", ErrMapping, formatJQTimeout, err)
	default:
		return fmt.Errorf("%w: jq: %w", ErrMapping, err)
	}
}

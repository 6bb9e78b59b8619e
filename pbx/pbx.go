// Package pbx is what the gateway asks of a PBX account. Each PBX family is one package below
// it (mango, xvb, itoolabs) that owns the account's configuration and its checks, the
// authentication and translation of its webhooks, its synchronous answers and its API client;
// the gateway (caddymodule) keeps a registry of the families and speaks to an account only
// through Account. See docs/development.md, Adding a PBX.
package pbx

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
)

// Kind is a PBX family: the name of its accounts' configuration block (`mango <name> { … }`),
// which is also the `pbx` label of its metrics, and a new, empty configuration to decode one
// account's block into.
type Kind struct {
	Name      string
	NewConfig func() Config
}

// Config is one account's configuration as the operator wrote it; its JSON field names are
// the Caddyfile's option names.
type Config interface {
	// Provision checks the configuration, with a message that says what to set where, and
	// builds the account.
	Provision(name string, env Env) (Account, error)
}

// Env is what an account gets from the gateway when it is built.
type Env struct {
	// Origin names the account's events (its kind, name and the region of its numbers).
	Origin event.Origin
	// Expand resolves {env.*} and {file.*} placeholders in a secret.
	Expand func(string) string
	// Calls is the open-call store, once the queue can write to it (ctx bounds the wait).
	Calls  func(ctx context.Context) (Calls, error)
	Logger *zap.Logger
}

// Calls is the open-call store (delivery.Calls): it joins a message without a call id to the
// call the same number opened on the same account, and remembers what a call's earlier
// messages said that its last one may not say again.
type Calls interface {
	// Open records call as the open call of phone on account, replacing any earlier one.
	Open(ctx context.Context, account, phone string, call OpenCall) error
	// Answer records that agent answered callID: one write, no read.
	Answer(ctx context.Context, account, callID, agent string) error
	// Close forgets the open call of phone on account, if it is callID's (or any, with callID
	// ""), and returns what is known of the call it closes.
	Close(ctx context.Context, account, phone, callID string) (OpenCall, error)
}

// OpenCall is what the open-call store knows of a call: what its opening message said (XVB
// INCOMING's type and ext) and who answered it (XVB ANSWERED's ext).
type OpenCall struct {
	ID    string `json:"id"`
	Type  string `json:"type,omitempty"`
	Ext   string `json:"ext,omitempty"`
	Agent string `json:"-"` // kept under its own key: ANSWERED writes it without reading
}

// Account is a provisioned PBX account.
type Account interface {
	// Origin is what Env gave: the kind, the name, the region.
	Origin() event.Origin
	// Forward names the targets that take the account's events.
	Forward() []string
	// Sources are the addresses its webhooks may come from.
	Sources() Sources
	// Receive checks and translates one webhook from an allowed address. ctx bounds the
	// store's part, as the PBX waits.
	Receive(ctx context.Context, in *Inbound) (Reply, *Rejection)
	// Command builds the API request that carries out what the CRM asked (click-to-call,
	// hang-up), checking and normalising req in place.
	Command(req *CommandRequest) (Command, error)
}

// Inbound is a webhook as it arrives.
type Inbound struct {
	*http.Request
	Now     time.Time
	MaxBody int64 // bytes
}

// Body reads the request's body, up to MaxBody.
func (in *Inbound) Body() ([]byte, *Rejection) {
	if n := in.Request.ContentLength; n >= 0 && n <= in.MaxBody {
		// The server ends the body at its Content-Length: read into one buffer of that size
		// (io.ReadAll would grow one from 512 bytes).
		body := make([]byte, n)
		if _, err := io.ReadFull(in.Request.Body, body); err != nil {
			return nil, Malformed("reading body: %v", err)
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, in.Request.Body, in.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &Rejection{Status: http.StatusRequestEntityTooLarge, Reason: "too_large", Msg: fmt.Sprintf("body over %d bytes", in.MaxBody)}
		}
		return nil, Malformed("reading body: %v", err)
	}
	return body, nil
}

// Common is what every account has: where its events come from, where they go and which
// addresses may send them. Accounts embed it for Origin, Forward and Sources.
type Common struct {
	origin  event.Origin
	forward []string
	sources Sources
}

// NewCommon reads the forward and sources options; presets are the named address lists the
// PBX publishes.
func NewCommon(env Env, forward, sources []string, presets map[string][]string) (Common, error) {
	parsed, err := ParseSources(sources, presets)
	return Common{origin: env.Origin, forward: forward, sources: parsed}, err
}

func (c *Common) Origin() event.Origin { return c.origin }
func (c *Common) Forward() []string    { return c.forward }
func (c *Common) Sources() Sources     { return c.sources }

// InOut is the direction of a PBX's "in" or "out" (XVB's type, ITooLabs' direction and type).
func InOut(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "in":
		return event.DirectionInbound
	case "out":
		return event.DirectionOutbound
	}
	return event.DirectionUnknown
}

// Reply is what an accepted webhook gives.
type Reply struct {
	// Events are to be stored durably before the PBX gets 200.
	Events []event.Event
	// Answer, when set, is the PBX's answer, written as is (JSON): a synchronous question
	// (a contact lookup, a connection test) is answered and nothing is queued.
	Answer []byte
	// Lookup is the outcome of a contact lookup answered here, for its metrics: found,
	// not_found, cached, timeout, error, disabled.
	Lookup string
	// Wait, when set, waits for work done alongside the durable write (who answered an XVB
	// call); the PBX's answer waits for both.
	Wait func()
}

// Rejection is a refused webhook: its status, the metric reason (source, auth, replay,
// malformed, too_large, unavailable) and the log's message.
type Rejection struct {
	Status int
	Reason string
	Msg    string
	// Body, when set, is the answer the PBX expects instead of pbxbridge's own
	// {"error","reason"} (ITooLabs reads {"error":"Invalid token"}).
	Body []byte
}

func (r *Rejection) Error() string { return r.Msg }

// Malformed is a webhook that is not a message of the PBX (400).
func Malformed(format string, args ...any) *Rejection {
	return &Rejection{Status: http.StatusBadRequest, Reason: "malformed", Msg: fmt.Sprintf(format, args...)}
}

// Unauthorized is a webhook whose signature or token is wrong (401).
func Unauthorized(msg string) *Rejection {
	return &Rejection{Status: http.StatusUnauthorized, Reason: "auth", Msg: msg}
}

// Unavailable is a webhook the store cannot take now (503; the PBX sends it again).
func Unavailable(format string, args ...any) *Rejection {
	return &Rejection{Status: http.StatusServiceUnavailable, Reason: "unavailable", Msg: fmt.Sprintf(format, args...)}
}

// OnlyPost refuses any method but POST.
func OnlyPost(r *http.Request) *Rejection {
	if r.Method == http.MethodPost {
		return nil
	}
	return &Rejection{Status: http.StatusMethodNotAllowed, Reason: "malformed", Msg: "method " + r.Method + " not allowed; PBXs POST"}
}

// Sources is an address allow-list; nil allows any address.
type Sources []netip.Prefix

// ParseSources reads the `sources` option: presets (named address lists a PBX publishes),
// CIDRs and addresses; `any` turns the check off.
func ParseSources(in []string, presets map[string][]string) (Sources, error) {
	var out Sources
	for _, s := range in {
		if s == "any" {
			if len(in) > 1 {
				return nil, errors.New("sources: `any` cannot be combined with addresses")
			}
			return nil, nil
		}
		if ips, ok := presets[s]; ok {
			for _, ip := range ips {
				out = append(out, netip.PrefixFrom(netip.MustParseAddr(ip), 32))
			}
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("sources: %q is not a CIDR: %v", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			names := []string{"an address", "a CIDR"}
			for name := range presets {
				names = append(names, "`"+name+"`")
			}
			return nil, fmt.Errorf("sources: %q is not %s or `any`", s, strings.Join(names, ", "))
		}
		out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
	}
	return out, nil
}

// Allows reports whether a webhook from ip may be for the account.
func (s Sources) Allows(ip netip.Addr) bool {
	if s == nil {
		return true
	}
	ip = ip.Unmap()
	for _, p := range s {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// SecretMatches is the one comparison of a presented secret (token, ?token=, ?key=,
// crm_token) with the configured one: exact, byte for byte, in constant time. Nothing is
// trimmed or decoded beyond what HTTP itself does (a query value is URL-decoded). An empty
// configured secret matches nothing.
func SecretMatches(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Scalar is a JSON string (or, if numbers are allowed, a number in its literal form),
// trimmed; "" for anything else.
func Scalar(raw json.RawMessage, numbers bool) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v)
	case json.Number:
		if numbers {
			return v.String()
		}
	}
	return ""
}

// JSON encodes strings, string maps and structs of them without HTML escaping, so links keep
// their '&' and names their '<' (Cyrillic is raw UTF-8 anyway).
func JSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // strings only: encoding cannot fail
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// Raw is a message's fields for an event's data.raw, without those secret names.
func Raw(fields map[string]string, secret func(name string) bool) json.RawMessage {
	public := make(map[string]string, len(fields))
	for name, value := range fields {
		if !secret(name) {
			public[name] = value
		}
	}
	return JSON(public)
}

// Duration is a duration in a configuration: a Go duration string ("1h30m", "2s") or, as
// Caddy writes its own, integer nanoseconds.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var ns int64
	if json.Unmarshal(b, &ns) == nil {
		*d = Duration(ns)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("a duration is a string such as \"10s\" or integer nanoseconds")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Looker is an account that answers the PBX's "who is calling?" from the CRM.
type Looker interface {
	// Looks reports whether a lookup is configured (else every question is answered
	// "not found", outcome disabled).
	Looks() bool
}

// Recorder is an account whose recordings are fetched through its API (Mango): pbx_recordings
// serves them and gives its events signed links. Other PBXs' events carry the PBX's own link.
type Recorder interface {
	// Recording copies recording id into a temporary file, or says why not: the client's
	// status, the metric outcome (not_found, unavailable, timeout, refused, too_large, error,
	// canceled) and the message.
	Recording(ctx context.Context, id string, f RecordingFetch) (*Recording, *Rejection)
	// RecordingID checks a recording id taken from a URL.
	RecordingID(id string) error
}

// RecordingFetch is how pbx_recordings fetches.
type RecordingFetch struct {
	API   *http.Client // the account's api_url, as the operator wrote it
	Files *http.Client // a file URL the PBX's answer gave
	// Timeout bounds one fetch, query and file; MaxSize the file.
	Timeout time.Duration
	MaxSize int64
	// Wait is how long a recording the PBX does not have yet is asked for again, every Poll.
	Wait, Poll time.Duration
}

// Recording is a fetched recording in a temporary file.
type Recording struct {
	File        *os.File
	Size        int64
	ContentType string
	ETag        string // of the content, so If-Range and If-None-Match hold across fetches
	ModTime     time.Time
}

// Discard closes and removes the file.
func (rec *Recording) Discard() {
	rec.File.Close()
	os.Remove(rec.File.Name())
}

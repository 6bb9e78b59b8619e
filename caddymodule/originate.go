package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

func init() {
	caddy.RegisterModule(Originate{})
	httpcaddyfile.RegisterHandlerDirective("pbx_originate", parseHandler[Originate])
	httpcaddyfile.RegisterDirectiveOrder("pbx_originate", httpcaddyfile.Before, "respond")
}

const (
	defaultCommandTimeout = 10 * time.Second
	// commandInterval paces each account's commands, over all gateways of a cluster together.
	// Mango allows 4 callbacks or hangups a second per account (docs/mango.md, Commands); a little
	// slower, so that network jitter never shows Mango five within one second.
	commandInterval = 275 * time.Millisecond
	// commandQueueWait is how long a command may wait for its turn before it is answered 429.
	commandQueueWait = time.Second
	// commandStoreWait bounds each wait on the command store (the queue starting, claiming a
	// command_id, taking the account's turn, storing a pause): with the PBX's timeout and the
	// queue wait it keeps the answer within the write timeout docs/originate.md recommends (15s),
	// whatever the store does.
	commandStoreWait = time.Second
	// mangoLockout is how long Mango refuses everything after repeated bad requests; sending
	// meanwhile only prolongs it.
	mangoLockout = 2 * time.Minute
	// pbxBusyPause is how long an account sends nothing after the PBX said "too many" or
	// "overloaded".
	pbxBusyPause = time.Second
	// maxCommandRequest bounds the CRM's request body and the PBX's answer that is read.
	maxCommandRequest = 64 << 10
)

// Originate is the pbx_originate handler: the CRM starts a call (click-to-call) or ends a leg
// through the PBX's own API, and never holds PBX credentials. Each account's commands keep to
// the PBX's rate limit and lock-out, kept in the store and so shared by every gateway of a
// cluster; a command_id repeated within 10 minutes gets the first answer and calls nobody twice.
type Originate struct {
	// Token authorizes the CRM: `Authorization: Bearer <token>`, or `?token=<token>` for
	// robots that can only call a URL. Required.
	Token string `json:"token"`
	// Timeout bounds the PBX's answer to one command. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	app    *App
	token  string
	client *http.Client
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Originate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_originate",
		New: func() caddy.Module { return new(Originate) },
	}
}

// Provision expands the token.
func (h *Originate) Provision(ctx caddy.Context) error {
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	return h.provision(app.(*App), ctx.Logger())
}

func (h *Originate) provision(app *App, logger *zap.Logger) error {
	h.app, h.logger = app, logger
	if h.token = caddy.NewReplacer().ReplaceKnown(h.Token, ""); h.token == "" {
		return errors.New("pbx_originate: token is required: anyone who reaches this URL could otherwise make calls on your PBX")
	}
	if h.Timeout <= 0 {
		h.Timeout = caddy.Duration(defaultCommandTimeout)
	}
	// A PBX API does not redirect a command; following one would turn the POST into a GET.
	h.client = outbound.Configured(0)
	return nil
}

// commandRequest is what the CRM asks for, from JSON, form fields or query parameters.
// Its fields are named by field.
type commandRequest struct {
	Account, Action, CommandID, From, To, Line, FromGroup, ToGroup, LegID string
}

// commandAnswer is what the CRM gets, and what the command bucket keeps for a command_id.
type commandAnswer struct {
	Status     int        `json:"status"`
	RetryAfter int        `json:"retry_after,omitempty"` // seconds
	Body       answerBody `json:"body"`

	outcome string        // the metric outcome
	pause   time.Duration // how long the account must now send nothing
}

type answerBody struct {
	CommandID string `json:"command_id,omitempty"`
	Status    string `json:"status"` // accepted | refused (by the PBX) | error
	Error     string `json:"error,omitempty"`
	// Code is the PBX's result code and Meaning says it in words.
	Code    int64  `json:"code,omitempty"`
	Meaning string `json:"meaning,omitempty"`
	// PBXStatus is the PBX's HTTP status when it refused without a code.
	PBXStatus int `json:"pbx_status,omitempty"`
}

// accountPause is what the store keeps while an account is paused: the answer its commands
// get meanwhile, on every gateway.
type accountPause struct {
	Answer  commandAnswer `json:"answer"`
	Outcome string        `json:"outcome"`
}

// commandRecord is a command_id's entry in the command bucket: the request's fingerprint and,
// once the PBX has answered, the answer.
type commandRecord struct {
	Request string         `json:"request"`
	Answer  *commandAnswer `json:"answer,omitempty"`
}

// pbxCommand is a command ready to send to an account's API.
type pbxCommand struct {
	name   string // the metric label: callback | callback_group | hangup | make_call
	url    string
	form   string
	answer func(status int, body []byte) commandAnswer
}

func refusal(status int, outcome, format string, args ...any) *commandAnswer {
	return &commandAnswer{Status: status, outcome: outcome, Body: answerBody{Status: "error", Error: fmt.Sprintf(format, args...)}}
}

func (h *Originate) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	accName, cmdName, ans := h.handle(r)
	if accName != "" && cmdName != "" {
		metrics.commandDuration.WithLabelValues(accName, cmdName).Observe(time.Since(start).Seconds())
	}
	metrics.commands.WithLabelValues(accName, cmdName, ans.outcome).Inc()
	level := zap.InfoLevel
	switch {
	case ans.Status >= 500:
		level = zap.ErrorLevel
	case ans.Status >= 400:
		level = zap.WarnLevel
	}
	// The path only: a robot's query carries the token.
	fields := []zap.Field{zap.String("account", accName), zap.String("command", cmdName), zap.String("command_id", ans.Body.CommandID),
		zap.String("outcome", ans.outcome), zap.Int("status", ans.Status), zap.Duration("duration", time.Since(start)),
		zap.String("client_ip", clientIP(r).String()), zap.String("path", r.URL.Path)}
	if ans.Body.Code != 0 {
		fields = append(fields, zap.Int64("pbx_code", ans.Body.Code))
	}
	if ans.Body.Error != "" {
		fields = append(fields, zap.String("error", ans.Body.Error))
	}
	h.logger.Log(level, "command", fields...)
	if ans.outcome == "canceled" {
		return nil // the CRM went away
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ans.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(ans.RetryAfter))
	}
	switch {
	case ans.Status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="pbxbridge"`)
	case ans.Status == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", "POST, GET")
	case ans.outcome == "duplicate":
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(ans.Status)
	return json.NewEncoder(w).Encode(ans.Body)
}

// handle authorizes, reads and carries out one request. It returns the account and command
// names once known (for metrics and logs) and the answer.
func (h *Originate) handle(r *http.Request) (string, string, commandAnswer) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return "", "", *refusal(http.StatusMethodNotAllowed, "rejected", "method %s not allowed: POST a command (GET with query parameters for robots)", r.Method)
	}
	if !h.authorized(r) {
		return "", "", *refusal(http.StatusUnauthorized, "rejected", "missing or wrong token: send Authorization: Bearer <token> (or ?token=<token>)")
	}
	req, rej := readCommandRequest(r)
	if rej != nil {
		return "", "", *rej
	}
	acc := h.app.accounts[req.Account]
	if acc == nil {
		if req.Account == "" {
			return "", "", *refusal(http.StatusBadRequest, "rejected", "account is required")
		}
		return "", "", *refusal(http.StatusBadRequest, "rejected", "no mango or xvb account named %q", req.Account)
	}
	if req.CommandID == "" {
		req.CommandID = newCommandID()
	}
	cmd, err := command(acc, &req)
	if err != nil {
		ans := refusal(http.StatusBadRequest, "rejected", "%s", err)
		ans.Body.CommandID = req.CommandID
		return acc.name, cmd.name, *ans
	}
	ans := h.run(r.Context(), acc, cmd, req)
	ans.Body.CommandID = req.CommandID
	return acc.name, cmd.name, ans
}

// authorized checks the bearer token, else ?token=.
func (h *Originate) authorized(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return bearerMatches(auth, h.token)
	}
	return secretMatches(r.URL.Query().Get("token"), h.token)
}

// readCommandRequest reads a JSON body strictly (an unknown field is a typo to report), and
// form fields or query parameters leniently (robots add their own).
func readCommandRequest(r *http.Request) (commandRequest, *commandAnswer) {
	var req commandRequest
	r.Body = http.MaxBytesReader(nil, r.Body, maxCommandRequest)
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Method == http.MethodPost && (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")) {
		var fields map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&fields); err != nil {
			return req, bodyRefusal(err, "the body is not a JSON object: "+err.Error())
		}
		for name, raw := range fields {
			dst := req.field(name)
			if dst == nil {
				return req, refusal(http.StatusBadRequest, "rejected", "unknown field %q", name)
			}
			var v any
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return req, refusal(http.StatusBadRequest, "rejected", "%s: %v", name, err)
			}
			switch v := v.(type) {
			case string:
				*dst = strings.TrimSpace(v)
			case json.Number: // CRMs keep extensions as numbers
				if !digitsOnly(v.String()) {
					return req, refusal(http.StatusBadRequest, "rejected", "%s: %s is not a whole number", name, v)
				}
				*dst = v.String()
			case nil:
			default:
				return req, refusal(http.StatusBadRequest, "rejected", "%s must be a string", name)
			}
		}
		return req, nil
	}
	switch {
	case r.Method == http.MethodGet: // query parameters only
	case mediaType == "", mediaType == "application/x-www-form-urlencoded", mediaType == "multipart/form-data":
	default:
		return req, refusal(http.StatusUnsupportedMediaType, "rejected", "content type %q: send JSON, a form, or query parameters", mediaType)
	}
	var err error
	if r.Method == http.MethodPost && mediaType == "multipart/form-data" {
		err = r.ParseMultipartForm(maxCommandRequest)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		return req, bodyRefusal(err, "unreadable form: "+err.Error())
	}
	for name, vs := range r.Form {
		if dst := req.field(name); dst != nil {
			if len(vs) > 1 {
				return req, refusal(http.StatusBadRequest, "rejected", "%s given %d times", name, len(vs))
			}
			*dst = strings.TrimSpace(vs[0])
		}
	}
	return req, nil
}

func bodyRefusal(err error, msg string) *commandAnswer {
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return refusal(http.StatusRequestEntityTooLarge, "rejected", "body over %d bytes", maxCommandRequest)
	}
	return refusal(http.StatusBadRequest, "rejected", "%s", msg)
}

// field is the request field of a JSON key or form name; nil for none.
func (req *commandRequest) field(name string) *string {
	switch name {
	case "account":
		return &req.Account
	case "action": // call (the default) or hangup
		return &req.Action
	case "command_id":
		return &req.CommandID
	case "from":
		return &req.From
	case "to":
		return &req.To
	case "line":
		return &req.Line
	case "from_group":
		return &req.FromGroup
	case "to_group":
		return &req.ToGroup
	case "leg_id":
		return &req.LegID
	}
	return nil
}

// fingerprint identifies what was asked, so a command_id reused for another request is
// refused rather than answered with the first request's answer.
func (req *commandRequest) fingerprint() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{req.Account, req.Action, req.From, req.To, req.Line, req.FromGroup, req.ToGroup, req.LegID}, "\x00")))
	return hex.EncodeToString(sum[:16])
}

func newCommandID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// command checks the request against what the account's PBX can do, normalises its numbers
// (in place, so the fingerprint sees them as sent) and builds the command. The name is set
// as soon as it is known, also with an error.
func command(acc *account, req *commandRequest) (pbxCommand, error) {
	var cmd pbxCommand
	if err := printable("command_id", req.CommandID); err != nil {
		return cmd, err
	}
	if len(req.CommandID) > mango.MaxIDBytes {
		return cmd, fmt.Errorf("command_id is longer than %d bytes", mango.MaxIDBytes)
	}
	switch req.Action {
	case "", "call":
		req.Action = "call"
	case "hangup":
	default:
		return cmd, fmt.Errorf("action %q: call (the default) or hangup", req.Action)
	}
	if acc.pbx == "xvb" {
		return xvbCommand(acc, req)
	}
	return mangoCommand(acc, req)
}

func mangoCommand(acc *account, req *commandRequest) (pbxCommand, error) {
	var cmd pbxCommand
	var mc mango.Command
	var err error
	region := acc.source.Region
	switch {
	case req.Action == "hangup":
		cmd.name = "hangup"
		if err = unused(req, "from", "to", "line", "from_group", "to_group"); err != nil {
			return cmd, err
		}
		if err = printable("leg_id", req.LegID); err != nil {
			return cmd, err
		}
		mc, err = mango.Hangup(req.CommandID, req.LegID)
	case req.FromGroup != "" || req.ToGroup != "":
		cmd.name = "callback_group"
		if err = unused(req, "leg_id"); err != nil {
			return cmd, err
		}
		var from, to string
		switch {
		case req.FromGroup != "" && req.ToGroup != "":
			return cmd, errors.New("give from_group or to_group, not both: one end of a group call is an external number")
		case req.FromGroup != "":
			if err = unused(req, "from"); err != nil {
				return cmd, fmt.Errorf("%w (from_group is the calling end)", err)
			}
			from, to = req.FromGroup, req.To
		default:
			if err = unused(req, "to"); err != nil {
				return cmd, fmt.Errorf("%w (to_group is the called end)", err)
			}
			from, to = req.From, req.ToGroup
		}
		if req.Line == "" {
			return cmd, errors.New("line is required for a group call (Mango's callback_group needs the outgoing line)")
		}
		if from, err = dialNumber("from", from, region); err != nil {
			return cmd, err
		}
		if to, err = dialNumber("to", to, region); err != nil {
			return cmd, err
		}
		if req.Line, err = lineNumber(req.Line, region); err != nil {
			return cmd, err
		}
		mc, err = mango.CallbackGroup(req.CommandID, from, to, req.Line)
	default:
		cmd.name = "callback"
		if err = unused(req, "leg_id"); err != nil {
			return cmd, err
		}
		if err = extension(req.From); err != nil {
			return cmd, err
		}
		if req.To, err = dialNumber("to", req.To, region); err != nil {
			return cmd, err
		}
		if req.Line != "" {
			if req.Line, err = lineNumber(req.Line, region); err != nil {
				return cmd, err
			}
		}
		mc, err = mango.Callback(req.CommandID, req.From, req.To, req.Line)
	}
	if err != nil {
		return cmd, err
	}
	cmd.url = acc.apiURL + "/" + mc.Path()
	cmd.form = mc.Form(acc.apiKey, acc.apiSalt)
	cmd.answer = mangoAnswer
	return cmd, nil
}

func xvbCommand(acc *account, req *commandRequest) (pbxCommand, error) {
	cmd := pbxCommand{name: "make_call"}
	if req.Action == "hangup" {
		return pbxCommand{name: "hangup"}, errors.New("XVB has no hangup command")
	}
	if acc.apiURL == "" || acc.token == "" {
		return cmd, fmt.Errorf("xvb account %s has no api_url and token: set both to make calls", acc.name)
	}
	if err := unused(req, "line", "from_group", "to_group", "leg_id"); err != nil {
		return cmd, fmt.Errorf("%w: XVB's makeCall takes from and to only", err)
	}
	if err := extension(req.From); err != nil {
		return cmd, err
	}
	var err error
	if req.To, err = dialNumber("to", req.To, acc.source.Region); err != nil {
		return cmd, err
	}
	cmd.url = acc.apiURL
	cmd.form = xvb.MakeCallForm(acc.token, req.From, req.To).Encode()
	cmd.answer = xvbAnswer
	return cmd, nil
}

// unused refuses fields that the command does not take, rather than ignore what the CRM meant.
func unused(req *commandRequest, names ...string) error {
	for _, name := range names {
		if *req.field(name) != "" {
			return fmt.Errorf("%s does not apply to this command", name)
		}
	}
	return nil
}

// extension checks the employee's internal number: the PBX refuses anything else, and Mango
// locks an account out after repeated bad requests, so it is checked here.
func extension(ext string) error {
	if ext == "" {
		return errors.New("from is required: the employee's internal number, e.g. 101")
	}
	if len(ext) > 16 || !digitsOnly(ext) {
		return fmt.Errorf("from %q must be the employee's internal number (digits), e.g. 101", ext)
	}
	return nil
}

// dialNumber is a number as the PBXs take it: a phone number as the digits of E.164 without '+' (+7
// (900) 123-45-67 → 79001234567, docs/mango.md, Commands), a short number (extension, group) as its
// digits.
func dialNumber(name, raw, region string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%s is required", name)
	}
	if n := event.Number(raw, region); strings.HasPrefix(n, "+") {
		return n[1:], nil
	}
	digits := strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -().", r) {
			return -1
		}
		return r
	}, raw)
	if len(digits) <= 16 && digitsOnly(digits) {
		return digits, nil
	}
	return "", fmt.Errorf("%s %q is not a phone number or an internal number", name, raw)
}

// lineNumber is the outgoing line: a number, or a SIP line's name as the Mango cabinet shows it.
func lineNumber(raw, region string) (string, error) {
	if n, err := dialNumber("line", raw, region); err == nil {
		return n, nil
	}
	if strings.ContainsFunc(raw, unicode.IsSpace) || len(raw) > mango.MaxIDBytes {
		return "", fmt.Errorf("line %q is neither a number nor a line name", raw)
	}
	return raw, printable("line", raw)
}

func digitsOnly(s string) bool {
	return s != "" && strings.TrimFunc(s, func(r rune) bool { return r >= '0' && r <= '9' }) == ""
}

func printable(name, s string) error {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("%s contains unprintable characters", name)
	}
	return nil
}

// run sends a command at most once per command_id: a repetition gets the stored answer, a
// concurrent one waits for it. Answers that say "try again later" (429, 503) are not kept,
// so a repetition may send the command then.
func (h *Originate) run(ctx context.Context, acc *account, cmd pbxCommand, req commandRequest) commandAnswer {
	// As webhooks: the running queue (also the previous config's during a reload), or a short
	// wait while it starts.
	startCtx, cancelStart := context.WithTimeout(ctx, commandStoreWait)
	eng := h.app.readyEngine(startCtx)
	cancelStart()
	if eng == nil || eng.Commands() == nil {
		ans := refusal(http.StatusServiceUnavailable, "error", "the command store is not ready yet")
		ans.RetryAfter = 5
		return *ans
	}
	if err := eng.Writable(); err != nil {
		ans := refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
		ans.RetryAfter = 5
		return *ans
	}
	commands := eng.Commands()
	key := delivery.CommandKey(acc.name, req.CommandID)
	fp := req.fingerprint()
	claim, replay := h.claim(ctx, commands, key, fp)
	if replay != nil {
		return *replay
	}
	ans := h.send(ctx, commands, acc, cmd)
	if ans.pause > 0 {
		// Every gateway of a cluster sends nothing for the account meanwhile; stored before
		// the answer, so that no command of the account goes out during the pause.
		pauseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandStoreWait)
		paused := accountPause{Answer: ans, Outcome: ans.outcome}
		paused.Answer.Body.CommandID = ""
		value, _ := json.Marshal(paused)
		if err := commands.Pause(pauseCtx, acc.name, ans.pause, value); err != nil {
			h.logger.Error("storing the account's pause: commands may be sent during it", zap.String("account", acc.name), zap.Duration("pause", ans.pause), zap.Error(err))
		}
		cancel()
	}
	// The outcome is kept even if the CRM has gone away meanwhile, and while the CRM gets its
	// answer: a repetition meanwhile waits for it (claim).
	go h.keep(context.WithoutCancel(ctx), commands, acc, req, key, claim, ans)
	return ans
}

// keep stores a command's answer under its claim, or releases the claim of a command that was
// not carried out (429, 503, canceled) so that a repetition may send it.
func (h *Originate) keep(ctx context.Context, commands *delivery.Commands, acc *account, req commandRequest, key string, claim uint64, ans commandAnswer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ans.Status == http.StatusTooManyRequests || ans.Status == http.StatusServiceUnavailable || ans.outcome == "canceled" {
		if err := commands.Release(ctx, key, claim); err != nil {
			h.logger.Error("releasing a command id", zap.String("account", acc.name), zap.String("command_id", req.CommandID), zap.Error(err))
		}
		return
	}
	rec, _ := json.Marshal(commandRecord{Request: req.fingerprint(), Answer: &ans})
	if err := commands.Settle(ctx, key, claim, rec); err != nil {
		h.logger.Error("storing a command's answer: a repetition of this command_id will wait and then be refused",
			zap.String("account", acc.name), zap.String("command_id", req.CommandID), zap.Error(err))
	}
}

// claim takes the command_id for this request, or returns the answer a repetition gets: the
// stored answer, a refusal for another request under the same id, or 409 while the first
// request is still running past this one's patience.
func (h *Originate) claim(ctx context.Context, commands *delivery.Commands, key, fp string) (uint64, *commandAnswer) {
	pending, _ := json.Marshal(commandRecord{Request: fp})
	// A repetition waits at most as long as the first request may take to be answered.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.Timeout)+commandQueueWait+3*commandStoreWait)
	defer cancel()
	for {
		claimCtx, cancelClaim := context.WithTimeout(ctx, commandStoreWait)
		claim, held, err := commands.Claim(claimCtx, key, pending)
		cancelClaim()
		if err != nil {
			ans := refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
			ans.RetryAfter = 5
			return 0, ans
		}
		if claim != 0 {
			return claim, nil
		}
		var rec commandRecord
		if json.Unmarshal(held, &rec) != nil || rec.Request != fp {
			return 0, refusal(http.StatusConflict, "rejected", "this command_id was used for another request within the last %s", delivery.CommandTTL)
		}
		if rec.Answer == nil {
			settled, err := commands.Await(ctx, key, func(v []byte) bool {
				var r commandRecord
				return json.Unmarshal(v, &r) == nil && r.Answer != nil
			})
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				return 0, refusal(http.StatusConflict, "rejected", "a command with this command_id is still being sent, or its outcome is unknown")
			case err != nil:
				ans := refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
				ans.RetryAfter = 5
				return 0, ans
			case settled == nil: // released: this request may send it
				continue
			}
			rec = commandRecord{}
			_ = json.Unmarshal(settled, &rec)
		}
		replay := *rec.Answer
		replay.outcome = "duplicate"
		return 0, &replay
	}
}

// send waits for the account's turn and sends the command once.
func (h *Originate) send(ctx context.Context, commands *delivery.Commands, acc *account, cmd pbxCommand) commandAnswer {
	turnCtx, cancelTurn := context.WithTimeout(ctx, commandStoreWait)
	turn, err := commands.TakeTurn(turnCtx, acc.name, commandInterval, commandQueueWait)
	cancelTurn()
	switch {
	case err != nil:
		ans := refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
		ans.RetryAfter = 5
		return *ans
	case turn.Paused != nil:
		var paused accountPause
		if json.Unmarshal(turn.Paused, &paused) != nil {
			paused = accountPause{Answer: *refusal(http.StatusServiceUnavailable, "error", "account %s is paused", acc.name), Outcome: "error"}
		}
		ans := paused.Answer
		ans.outcome = paused.Outcome
		ans.RetryAfter = retrySeconds(turn.Later) // answering during the pause does not prolong it
		return ans
	case turn.Later > 0:
		ans := refusal(http.StatusTooManyRequests, "rate_limited", "account %s is sending commands faster than its PBX allows; try again in a moment", acc.name)
		ans.RetryAfter = retrySeconds(turn.Later)
		return *ans
	case turn.Wait > 0:
		timer := time.NewTimer(turn.Wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop() // the turn stays taken: a gap in the pace, never a burst
			return commandAnswer{outcome: "canceled", Status: 499}
		}
	}
	// From here the command runs to its end even if the CRM goes away: its answer is kept.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	var wrote atomic.Bool // set by the transport's writer
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cmd.url, strings.NewReader(cmd.form))
	if err != nil {
		return *refusal(http.StatusInternalServerError, "error", "the account's api_url is unusable: %v", unwrapURLError(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "pbxbridge/"+Version())
	resp, err := h.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		if body, err = io.ReadAll(io.LimitReader(resp.Body, maxCommandRequest)); err == nil {
			return cmd.answer(resp.StatusCode, body)
		}
	}
	switch {
	case !wrote.Load():
		ans := refusal(http.StatusServiceUnavailable, "error", "the %s API is unreachable: %v", acc.pbx, unwrapURLError(err))
		ans.RetryAfter = 5
		return *ans
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return *refusal(http.StatusGatewayTimeout, "timeout", "the %s API did not answer within %s: the call may or may not have been placed; "+
			"repeating this command_id returns this answer, a new command_id sends the command again", acc.pbx, time.Duration(h.Timeout))
	}
	return *refusal(http.StatusBadGateway, "error", "the connection to the %s API failed after the command was sent (%v): the call may or may not have been placed", acc.pbx, unwrapURLError(err))
}

// mangoAnswer maps Mango's answer; a lock-out or "busy" pauses the account.
func mangoAnswer(status int, body []byte) commandAnswer {
	a := mango.ReadAnswer(status, body)
	ans := commandAnswer{Status: a.Status(), Body: answerBody{Code: a.Code, Meaning: a.Meaning()}}
	switch {
	case a.Accepted():
		ans.outcome, ans.Body.Status = "accepted", "accepted"
		ans.Body.Code, ans.Body.Meaning = 0, ""
		return ans
	case a.LockedOut():
		ans.outcome, ans.pause = "locked_out", mangoLockout
		ans.Body.Error = "Mango has locked this account's API out after repeated bad requests; nothing is sent for 2 minutes"
	case a.RateLimited():
		ans.outcome, ans.pause = "rate_limited", pbxBusyPause
		ans.Body.Error = "Mango's rate limit: try again shortly"
	default:
		ans.outcome = "refused"
		ans.Body.Error = "Mango refused the command: " + a.Meaning()
		if a.Description != "" {
			ans.Body.Error += " (" + a.Description + ")"
		}
	}
	ans.Body.Status = "refused"
	if a.Code == 0 {
		ans.Body.PBXStatus = status
	}
	switch ans.Status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if ans.pause == 0 {
			ans.pause = pbxBusyPause
		}
		ans.RetryAfter = retrySeconds(ans.pause)
	}
	return ans
}

// xvbAnswer maps XVB's answer to makeCall, which is not documented; the log keeps its text.
func xvbAnswer(status int, body []byte) commandAnswer {
	a := xvb.ReadCallAnswer(status, body)
	ans := commandAnswer{Status: a.Status(), outcome: "accepted", Body: answerBody{Status: "accepted"}}
	if a.Accepted() {
		return ans
	}
	ans.outcome, ans.Body.Status, ans.Body.PBXStatus = "refused", "refused", status
	ans.Body.Error = fmt.Sprintf("XVB refused the call: HTTP %d", status)
	if a.Error != "" {
		ans.Body.Error += ": " + a.Error
	}
	if ans.Status == http.StatusTooManyRequests || ans.Status == http.StatusServiceUnavailable {
		ans.pause, ans.RetryAfter = pbxBusyPause, retrySeconds(pbxBusyPause)
		if ans.Status == http.StatusTooManyRequests {
			ans.outcome = "rate_limited"
		}
	}
	return ans
}

// retrySeconds is a Retry-After: whole seconds, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// UnmarshalCaddyfile sets up the handler:
//
//	pbx_originate {
//		token   <token>      # required: Authorization: Bearer <token>, or ?token=<token> for robots
//		timeout <duration>   # how long the PBX may take to answer a command; default 10s
//	}
func (h *Originate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Err("pbx_originate takes no arguments, only a block: pbx_originate { token <token> }")
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "token":
			err = oneArg(d, &h.Token)
		case "timeout":
			err = parseDuration(d, &h.Timeout)
		default:
			return d.Errf("unknown pbx_originate option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Originate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Originate)(nil)
	_ caddyfile.Unmarshaler       = (*Originate)(nil)
)

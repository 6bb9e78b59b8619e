// Package command carries out the CRM's commands on PBX accounts (docs/originate.md):
// click-to-call and hang-up through the PBX's own API, so the CRM never holds PBX
// credentials. Each account's commands keep to its PBX's pace and lock-out, kept in the
// command store and so shared by every gateway of a cluster; a command_id repeated within
// delivery.CommandTTL gets the first answer and calls nobody twice.
package command

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
	"mime"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

const (
	// queueWait is how long a command may wait for its turn before it is answered 429.
	queueWait = time.Second
	// storeWait bounds each wait on the command store (the queue starting, claiming a
	// command_id, taking the account's turn, storing a pause): with the PBX's timeout and the
	// queue wait it keeps the answer within the write timeout docs/originate.md recommends
	// (15s), whatever the store does.
	storeWait = time.Second
	// maxRequest bounds the CRM's request body and the PBX's answer that is read.
	maxRequest = 64 << 10
	// maxID bounds a command_id (Mango's limit on its own command ids).
	maxID = 128
)

// Service carries out commands.
type Service struct {
	// Timeout bounds the PBX's answer to one command.
	Timeout time.Duration
	// Engine is the running queue, within ctx while it starts; nil if none.
	Engine    func(ctx context.Context) *delivery.Engine
	Client    *http.Client // follows no redirect: a PBX API does not redirect a command
	UserAgent string
	Logger    *zap.Logger
}

// Do checks req against what acc's PBX can do and carries it out. It returns the command's
// name (the metric label) once known, also with a refusal, and the answer.
func (s *Service) Do(ctx context.Context, acc pbx.Account, req pbx.CommandRequest) (string, pbx.Answer) {
	if req.CommandID == "" {
		req.CommandID = newCommandID()
	}
	cmd, err := build(acc, &req)
	if err != nil {
		ans := pbx.Refusal(http.StatusBadRequest, "rejected", "%s", err)
		ans.Body.CommandID = req.CommandID
		return cmd.Name, *ans
	}
	ans := s.run(ctx, acc.Origin(), cmd, req)
	ans.Body.CommandID = req.CommandID
	return cmd.Name, ans
}

// build checks what every command shares, then has the account's PBX build it, which
// normalises the numbers in req (in place, so the fingerprint sees them as sent).
func build(acc pbx.Account, req *pbx.CommandRequest) (pbx.Command, error) {
	if err := pbx.Printable("command_id", req.CommandID); err != nil {
		return pbx.Command{}, err
	}
	if len(req.CommandID) > maxID {
		return pbx.Command{}, fmt.Errorf("command_id is longer than %d bytes", maxID)
	}
	switch req.Action {
	case "", "call":
		req.Action = "call"
	case "hangup":
	default:
		return pbx.Command{}, fmt.Errorf("action %q: call (the default) or hangup", req.Action)
	}
	return acc.Command(req)
}

// accountPause is what the store keeps while an account is paused: the answer its commands
// get meanwhile, on every gateway.
type accountPause struct {
	Answer  pbx.Answer `json:"answer"`
	Outcome string     `json:"outcome"`
}

// commandRecord is a command_id's entry in the command bucket: the request's fingerprint and,
// once the PBX has answered, the answer.
type commandRecord struct {
	Request string      `json:"request"`
	Answer  *pbx.Answer `json:"answer,omitempty"`
}

// readCommandRequest reads a JSON body strictly (an unknown field is a typo to report), and
// form fields or query parameters leniently (robots add their own).
func Read(r *http.Request) (pbx.CommandRequest, *pbx.Answer) {
	var req pbx.CommandRequest
	r.Body = http.MaxBytesReader(nil, r.Body, maxRequest)
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Method == http.MethodPost && (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")) {
		var fields map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&fields); err != nil {
			return req, bodyRefusal(err, "the body is not a JSON object: "+err.Error())
		}
		for name, raw := range fields {
			dst := req.Field(name)
			if dst == nil {
				return req, pbx.Refusal(http.StatusBadRequest, "rejected", "unknown field %q", name)
			}
			var v any
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return req, pbx.Refusal(http.StatusBadRequest, "rejected", "%s: %v", name, err)
			}
			switch v := v.(type) {
			case string:
				*dst = strings.TrimSpace(v)
			case json.Number: // CRMs keep extensions as numbers
				if !pbx.DigitsOnly(v.String()) {
					return req, pbx.Refusal(http.StatusBadRequest, "rejected", "%s: %s is not a whole number", name, v)
				}
				*dst = v.String()
			case nil:
			default:
				return req, pbx.Refusal(http.StatusBadRequest, "rejected", "%s must be a string", name)
			}
		}
		return req, nil
	}
	switch {
	case r.Method == http.MethodGet: // query parameters only
	case mediaType == "", mediaType == "application/x-www-form-urlencoded", mediaType == "multipart/form-data":
	default:
		return req, pbx.Refusal(http.StatusUnsupportedMediaType, "rejected", "content type %q: send JSON, a form, or query parameters", mediaType)
	}
	var err error
	if r.Method == http.MethodPost && mediaType == "multipart/form-data" {
		err = r.ParseMultipartForm(maxRequest)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		return req, bodyRefusal(err, "unreadable form: "+err.Error())
	}
	for name, vs := range r.Form {
		if dst := req.Field(name); dst != nil {
			if len(vs) > 1 {
				return req, pbx.Refusal(http.StatusBadRequest, "rejected", "%s given %d times", name, len(vs))
			}
			*dst = strings.TrimSpace(vs[0])
		}
	}
	return req, nil
}

func bodyRefusal(err error, msg string) *pbx.Answer {
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return pbx.Refusal(http.StatusRequestEntityTooLarge, "rejected", "body over %d bytes", maxRequest)
	}
	return pbx.Refusal(http.StatusBadRequest, "rejected", "%s", msg)
}

// fingerprint identifies what was asked, so a command_id reused for another request is
// refused rather than answered with the first request's answer.
func fingerprint(req *pbx.CommandRequest) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{req.Account, req.Action, req.From, req.To, req.Line, req.FromGroup, req.ToGroup, req.LegID}, "\x00")))
	return hex.EncodeToString(sum[:16])
}

func newCommandID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// run sends a command at most once per command_id: a repetition gets the stored answer, a
// concurrent one waits for it. Answers that say "try again later" (429, 503) are not kept,
// so a repetition may send the command then.
func (s *Service) run(ctx context.Context, o event.Origin, cmd pbx.Command, req pbx.CommandRequest) pbx.Answer {
	// As webhooks: the running queue (also the previous config's during a reload), or a short
	// wait while it starts.
	startCtx, cancelStart := context.WithTimeout(ctx, storeWait)
	eng := s.Engine(startCtx)
	cancelStart()
	if eng == nil || eng.Commands() == nil {
		ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the command store is not ready yet")
		ans.RetryAfter = 5
		return *ans
	}
	if err := eng.Writable(); err != nil {
		ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
		ans.RetryAfter = 5
		return *ans
	}
	commands := eng.Commands()
	key := delivery.CommandKey(o.Account, req.CommandID)
	fp := fingerprint(&req)
	claim, replay := s.claim(ctx, commands, key, fp)
	if replay != nil {
		return *replay
	}
	ans := s.send(ctx, commands, o, cmd)
	if ans.Pause > 0 {
		// Every gateway of a cluster sends nothing for the account meanwhile; stored before
		// the answer, so that no command of the account goes out during the pause.
		pauseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWait)
		paused := accountPause{Answer: ans, Outcome: ans.Outcome}
		paused.Answer.Body.CommandID = ""
		value, _ := json.Marshal(paused)
		if err := commands.Pause(pauseCtx, o.Account, ans.Pause, value); err != nil {
			s.Logger.Error("storing the account's pause: commands may be sent during it", zap.String("account", o.Account), zap.Duration("pause", ans.Pause), zap.Error(err))
		}
		cancel()
	}
	// The outcome is kept even if the CRM has gone away meanwhile, and while the CRM gets its
	// answer: a repetition meanwhile waits for it (claim).
	go s.keep(context.WithoutCancel(ctx), commands, o, req, key, claim, ans)
	return ans
}

// keep stores a command's answer under its claim, or releases the claim of a command that was
// not carried out (429, 503, canceled) so that a repetition may send it.
func (s *Service) keep(ctx context.Context, commands *delivery.Commands, o event.Origin, req pbx.CommandRequest, key string, claim uint64, ans pbx.Answer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ans.Status == http.StatusTooManyRequests || ans.Status == http.StatusServiceUnavailable || ans.Outcome == "canceled" {
		if err := commands.Release(ctx, key, claim); err != nil {
			s.Logger.Error("releasing a command id", zap.String("account", o.Account), zap.String("command_id", req.CommandID), zap.Error(err))
		}
		return
	}
	rec, _ := json.Marshal(commandRecord{Request: fingerprint(&req), Answer: &ans})
	if err := commands.Settle(ctx, key, claim, rec); err != nil {
		s.Logger.Error("storing a command's answer: a repetition of this command_id will wait and then be refused",
			zap.String("account", o.Account), zap.String("command_id", req.CommandID), zap.Error(err))
	}
}

// claim takes the command_id for this request, or returns the answer a repetition gets: the
// stored answer, a refusal for another request under the same id, or 409 while the first
// request is still running past this one's patience.
func (s *Service) claim(ctx context.Context, commands *delivery.Commands, key, fp string) (uint64, *pbx.Answer) {
	pending, _ := json.Marshal(commandRecord{Request: fp})
	// A repetition waits at most as long as the first request may take to be answered.
	ctx, cancel := context.WithTimeout(ctx, s.Timeout+queueWait+3*storeWait)
	defer cancel()
	for {
		claimCtx, cancelClaim := context.WithTimeout(ctx, storeWait)
		claim, held, err := commands.Claim(claimCtx, key, pending)
		cancelClaim()
		if err != nil {
			ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
			ans.RetryAfter = 5
			return 0, ans
		}
		if claim != 0 {
			return claim, nil
		}
		var rec commandRecord
		if json.Unmarshal(held, &rec) != nil || rec.Request != fp {
			return 0, pbx.Refusal(http.StatusConflict, "rejected", "this command_id was used for another request within the last %s", delivery.CommandTTL)
		}
		if rec.Answer == nil {
			settled, err := commands.Await(ctx, key, func(v []byte) bool {
				var r commandRecord
				return json.Unmarshal(v, &r) == nil && r.Answer != nil
			})
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				return 0, pbx.Refusal(http.StatusConflict, "rejected", "a command with this command_id is still being sent, or its outcome is unknown")
			case err != nil:
				ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
				ans.RetryAfter = 5
				return 0, ans
			case settled == nil: // released: this request may send it
				continue
			}
			rec = commandRecord{}
			_ = json.Unmarshal(settled, &rec)
		}
		replay := *rec.Answer
		replay.Outcome = "duplicate"
		return 0, &replay
	}
}

// send waits for the account's turn and sends the command once.
func (s *Service) send(ctx context.Context, commands *delivery.Commands, o event.Origin, cmd pbx.Command) pbx.Answer {
	turnCtx, cancelTurn := context.WithTimeout(ctx, storeWait)
	turn, err := commands.TakeTurn(turnCtx, o.Account, cmd.Interval, queueWait)
	cancelTurn()
	switch {
	case err != nil:
		ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the command store is unavailable: %v", err)
		ans.RetryAfter = 5
		return *ans
	case turn.Paused != nil:
		var paused accountPause
		if json.Unmarshal(turn.Paused, &paused) != nil {
			paused = accountPause{Answer: *pbx.Refusal(http.StatusServiceUnavailable, "error", "account %s is paused", o.Account), Outcome: "error"}
		}
		ans := paused.Answer
		ans.Outcome = paused.Outcome
		ans.RetryAfter = pbx.RetrySeconds(turn.Later) // answering during the pause does not prolong it
		return ans
	case turn.Later > 0:
		ans := pbx.Refusal(http.StatusTooManyRequests, "rate_limited", "account %s is sending commands faster than its PBX allows; try again in a moment", o.Account)
		ans.RetryAfter = pbx.RetrySeconds(turn.Later)
		return *ans
	case turn.Wait > 0:
		timer := time.NewTimer(turn.Wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop() // the turn stays taken: a gap in the pace, never a burst
			return pbx.Answer{Outcome: "canceled", Status: 499}
		}
	}
	// From here the command runs to its end even if the CRM goes away: its answer is kept.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Timeout)
	defer cancel()
	var wrote atomic.Bool // set by the transport's writer
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cmd.URL, strings.NewReader(cmd.Form))
	if err != nil {
		return *pbx.Refusal(http.StatusInternalServerError, "error", "the account's api_url is unusable: %v", outbound.Unwrap(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", s.UserAgent)
	resp, err := s.Client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		if body, err = io.ReadAll(io.LimitReader(resp.Body, maxRequest)); err == nil {
			return cmd.Answer(resp.StatusCode, body)
		}
	}
	switch {
	case !wrote.Load():
		ans := pbx.Refusal(http.StatusServiceUnavailable, "error", "the %s API is unreachable: %v", o.PBX, outbound.Unwrap(err))
		ans.RetryAfter = 5
		return *ans
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return *pbx.Refusal(http.StatusGatewayTimeout, "timeout", "the %s API did not answer within %s: the call may or may not have been placed; "+
			"repeating this command_id returns this answer, a new command_id sends the command again", o.PBX, s.Timeout)
	}
	return *pbx.Refusal(http.StatusBadGateway, "error", "the connection to the %s API failed after the command was sent (%v): the call may or may not have been placed", o.PBX, outbound.Unwrap(err))
}

package pbx

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pbxbridge/pbxbridge/event"
)

// BusyPause is how long an account sends nothing after its PBX said "too many" or
// "overloaded".
const BusyPause = time.Second

// CommandRequest is what the CRM asks of an account (docs/originate.md). Action is call or
// hangup; the PBX's Command says which fields apply.
type CommandRequest struct {
	Account, Action, CommandID, From, To, Line, FromGroup, ToGroup, LegID string
}

// Field is the request field of a JSON key or form name; nil for none.
func (req *CommandRequest) Field(name string) *string {
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

// Unused refuses fields that the command does not take, rather than ignore what the CRM meant.
func (req *CommandRequest) Unused(names ...string) error {
	for _, name := range names {
		if *req.Field(name) != "" {
			return fmt.Errorf("%s does not apply to this command", name)
		}
	}
	return nil
}

// Command is a command ready to send to an account's API: a form POSTed to URL.
type Command struct {
	// Name is the metric label: callback, callback_group, hangup, make_call.
	Name string
	URL  string
	Form string
	// Interval paces the account's commands, over all gateways of a cluster together.
	Interval time.Duration
	// Answer maps the PBX's answer.
	Answer func(status int, body []byte) Answer
}

// Answer is what the CRM gets for a command, and what the command store keeps for its
// command_id.
type Answer struct {
	Status     int        `json:"status"`
	RetryAfter int        `json:"retry_after,omitempty"` // seconds
	Body       AnswerBody `json:"body"`

	// Outcome is the metric outcome: accepted, refused, rate_limited, locked_out, …
	Outcome string `json:"-"`
	// Pause is how long the account must now send nothing (a lock-out, "too many").
	Pause time.Duration `json:"-"`
}

// AnswerBody is the JSON the CRM reads.
type AnswerBody struct {
	CommandID string `json:"command_id,omitempty"`
	Status    string `json:"status"` // accepted | refused (by the PBX) | error
	Error     string `json:"error,omitempty"`
	// Code is the PBX's result code and Meaning says it in words.
	Code    int64  `json:"code,omitempty"`
	Meaning string `json:"meaning,omitempty"`
	// PBXStatus is the PBX's HTTP status when it refused without a code.
	PBXStatus int `json:"pbx_status,omitempty"`
}

// Refusal is an answer with an error of the gateway's own (not the PBX's).
func Refusal(status int, outcome, format string, args ...any) *Answer {
	return &Answer{Status: status, Outcome: outcome, Body: AnswerBody{Status: "error", Error: fmt.Sprintf(format, args...)}}
}

// RetrySeconds is a Retry-After: whole seconds, at least 1.
func RetrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// Busy makes an answer that says "try again later" (429, 503) pause the account for at
// least BusyPause and tell the CRM when to retry.
func (a *Answer) Busy() {
	if a.Status != http.StatusTooManyRequests && a.Status != http.StatusServiceUnavailable {
		return
	}
	if a.Pause == 0 {
		a.Pause = BusyPause
	}
	a.RetryAfter = RetrySeconds(a.Pause)
}

// Extension checks the employee's internal number: PBXs refuse anything else, and Mango
// locks an account out after repeated bad requests, so it is checked here.
func Extension(ext string) error {
	if ext == "" {
		return errors.New("from is required: the employee's internal number, e.g. 101")
	}
	if len(ext) > 16 || !DigitsOnly(ext) {
		return fmt.Errorf("from %q must be the employee's internal number (digits), e.g. 101", ext)
	}
	return nil
}

// DialNumber is a number as the PBXs take it: a phone number as the digits of E.164 without
// '+' (+7 (900) 123-45-67 → 79001234567, docs/mango.md, Commands), a short number
// (extension, group) as its digits.
func DialNumber(name, raw, region string) (string, error) {
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
	if len(digits) <= 16 && DigitsOnly(digits) {
		return digits, nil
	}
	return "", fmt.Errorf("%s %q is not a phone number or an internal number", name, raw)
}

func DigitsOnly(s string) bool {
	return s != "" && strings.TrimFunc(s, func(r rune) bool { return r >= '0' && r <= '9' }) == ""
}

// Printable refuses control characters and invalid UTF-8 in a field sent on to a PBX.
func Printable(name, s string) error {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("%s contains unprintable characters", name)
	}
	return nil
}

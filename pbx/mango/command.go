package mango

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// MaxIDBytes bounds command_id, call_id and the other ids Mango keeps (docs/mango.md, Identifiers
// and event ids).
const MaxIDBytes = 128

// Command is a command to send to Mango (docs/mango.md, Commands): Name is its path under
// {api_url}/commands/ and the suffix of its later /result/<Name>; JSON is the compact body the
// sign covers, byte for byte.
type Command struct {
	Name string
	JSON string
}

// Path is where the command is POSTed, relative to api_url.
func (c Command) Path() string { return "commands/" + c.Name }

// Form is the signed application/x-www-form-urlencoded body.
func (c Command) Form(apiKey, apiSalt string) string { return FormBody(apiKey, apiSalt, c.JSON) }

// Callback is commands/callback (§9.2): Mango rings the employee's extension, then dials to
// once the employee answers. line, the outgoing line, may be empty (the employee's default).
// from.number is sent empty, as Mango's own example does: the employee's default device.
func Callback(commandID, extension, to, line string) (Command, error) {
	if err := required("command_id", commandID, "from", extension, "to", to); err != nil {
		return Command{}, err
	}
	type party struct {
		Extension string `json:"extension"`
		Number    string `json:"number"`
	}
	return command("callback", struct {
		CommandID  string `json:"command_id"`
		From       party  `json:"from"`
		ToNumber   string `json:"to_number"`
		LineNumber string `json:"line_number,omitempty"`
	}{commandID, party{Extension: extension}, to, line})
}

// CallbackGroup is commands/callback_group (§9.3): a call between an external number and an
// operator group; from and to are plain strings and one of them is the group's number. Mango
// requires the line.
func CallbackGroup(commandID, from, to, line string) (Command, error) {
	if err := required("command_id", commandID, "from", from, "to", to, "line", line); err != nil {
		return Command{}, err
	}
	return command("callback_group", struct {
		CommandID  string `json:"command_id"`
		From       string `json:"from"`
		To         string `json:"to"`
		LineNumber string `json:"line_number"`
	}{commandID, from, to, line})
}

// Hangup is commands/call/hangup (§9.4): it ends the leg legID (a call_id of /events/call).
func Hangup(commandID, legID string) (Command, error) {
	if err := required("command_id", commandID, "leg_id", legID); err != nil {
		return Command{}, err
	}
	return command("call/hangup", struct {
		CommandID string `json:"command_id"`
		CallID    string `json:"call_id"`
	}{commandID, legID})
}

// required checks name/value pairs: present, and within Mango's size for ids and numbers.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		switch name, v := pairs[i], pairs[i+1]; {
		case v == "":
			return fmt.Errorf("%s is required", name)
		case len(v) > MaxIDBytes:
			return fmt.Errorf("%s is longer than %d bytes", name, MaxIDBytes)
		}
	}
	return nil
}

// command marshals compactly ("без искусственных пробелов", §9.1) and keeps <, > and & as
// they are, as Mango's PHP example does; the sign covers exactly these bytes either way.
func command(name string, body any) (Command, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return Command{}, err
	}
	return Command{Name: name, JSON: strings.TrimSuffix(buf.String(), "\n")}, nil
}

// Answer is Mango's synchronous answer to a command (§9.1): 200 with {"result":1000,…} when
// the command was taken, 420 with {"code":3104} when it was refused, 401 during a lock-out,
// 429 when over the rate limit. The exact body is not documented, so it is read leniently.
type Answer struct {
	HTTPStatus int
	// Code is the body's result (or code); 0 when it carries none.
	Code int64
	// Description is Mango's own text, when it sends one.
	Description string
}

// ReadAnswer reads Mango's answer. A body that is not JSON leaves Code 0: the HTTP status
// then speaks alone.
func ReadAnswer(status int, body []byte) Answer {
	a := Answer{HTTPStatus: status}
	f, err := decodeObject(body)
	if err != nil || f.m == nil {
		return a
	}
	for _, name := range []string{"result", "code"} {
		if n := f.num(name); n > 0 {
			a.Code = n
			break
		}
	}
	a.Description = f.str("description", "message")
	if f.error() != nil { // a field of another type: keep what read cleanly
		a.Code, a.Description = 0, ""
	}
	return a
}

// Accepted reports whether Mango took the command: a 2xx with a success code (10xx), or with
// no code at all (not every method returns one).
func (a Answer) Accepted() bool {
	return a.HTTPStatus/100 == 2 && (a.Code == 0 || a.Code/100 == 10)
}

// LockedOut reports Mango's lock-out: after more than one bad request within 2 minutes it
// answers 401 to everything for 2 minutes (§9.1). Sending more only prolongs it.
func (a Answer) LockedOut() bool { return a.HTTPStatus == http.StatusUnauthorized }

// RateLimited reports Mango's rate limit (HTTP 429, or result 4290).
func (a Answer) RateLimited() bool {
	return a.HTTPStatus == http.StatusTooManyRequests || a.Code == 4290
}

// Meaning says in words what Mango answered.
func (a Answer) Meaning() string {
	switch {
	case a.LockedOut():
		return "Mango locked the API out for 2 minutes after repeated bad requests"
	case a.RateLimited():
		return meanings[4290]
	case a.Code == 0 && a.Accepted():
		return meanings[1000]
	case a.Code == 0:
		return fmt.Sprintf("Mango answered HTTP %d", a.HTTPStatus)
	}
	return Meaning(a.Code)
}

// Status is the HTTP status with which the gateway answers the CRM. 429 and 503 say "try
// again later": the command was not carried out.
func (a Answer) Status() int {
	switch {
	case a.Accepted():
		return http.StatusOK
	case a.LockedOut():
		return http.StatusServiceUnavailable
	case a.RateLimited():
		return http.StatusTooManyRequests
	case a.Code == 0:
		return http.StatusBadGateway
	}
	if s, ok := ofClass(statuses, a.Code); ok {
		return s
	}
	return http.StatusBadGateway
}

// statuses maps result codes (by class, as reasons does) to the gateway's answer.
var statuses = map[int64]int{
	2000: http.StatusForbidden,           // billing: blocked, limits, funds
	3000: http.StatusBadRequest,          // Mango found the parameters wrong
	3101: http.StatusBadGateway,          // not a POST: the gateway's fault
	3102: http.StatusBadGateway,          // sign mismatch: api_salt is wrong
	3105: http.StatusBadGateway,          // wrong vpbx_api_key: api_key is wrong
	3300: http.StatusNotFound,            // call, recording or number not found
	3400: http.StatusBadGateway,          // invalid JSON: the gateway's fault
	4000: http.StatusConflict,            // not possible in the call's current state
	4001: http.StatusUnprocessableEntity, // command not supported for this PBX
	4290: http.StatusTooManyRequests,
	4500: http.StatusForbidden, // security restrictions
	5000: http.StatusBadGateway,
	5001: http.StatusServiceUnavailable, // overloaded: back off
	5008: http.StatusServiceUnavailable, // service unavailable: back off
}

// meanings are result codes in words (docs/mango.md, Result codes), read by class like reasons.
var meanings = map[int64]string{
	1000: "accepted",
	1001: "accepted with remarks",
	2000: "billing restriction",
	2110: "account blocked",
	2220: "concurrent-call limit reached",
	2240: "insufficient funds",
	3000: "bad request",
	3100: "bad parameters",
	3101: "not a POST request",
	3102: "signature mismatch (check api_key and api_salt)",
	3103: "missing parameter",
	3104: "parameter in the wrong format",
	3105: "wrong vpbx_api_key (check api_key)",
	3200: "wrong number",
	3300: "not found",
	3310: "call not found",
	3320: "recording not found",
	3330: "number not found",
	3400: "invalid JSON",
	4000: "not possible",
	4001: "command not supported",
	4100: "impossible by PBX logic",
	4101: "call already ended or not found",
	4102: "already recording",
	4200: "the party cannot be reached",
	4290: "rate limit exceeded",
	4500: "security restriction",
	4501: "call-rate limit",
	4502: "caller blacklisted",
	5000: "Mango server error",
	5001: "Mango overloaded",
	5003: "Mango technical problems",
	5008: "Mango service unavailable",
}

// Meaning says what a result code means, by its class when the code itself is not listed.
func Meaning(code int64) string {
	if m, ok := ofClass(meanings, code); ok {
		return m
	}
	return "unknown code"
}

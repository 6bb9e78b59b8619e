package mango

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// Kind is Mango Office in the gateway's registry of PBXs.
var Kind = pbx.Kind{Name: "mango", NewConfig: func() pbx.Config { return new(Config) }}

// webhookSources are the addresses Mango Office documents as the senders of its webhooks (API
// doc v1.9, 2026: §1.2, §3.1.1), the `sources mango` preset. The 185.71.76.0/27,
// 185.71.77.0/27 and 77.75.x ranges that some guides attribute to Mango are YooKassa's and are
// not included.
var webhookSources = []string{"81.88.80.132", "81.88.80.133", "81.88.82.36", "81.88.82.44", "81.88.82.45"}

const (
	defaultAPI = "https://app.mango-office.ru/vpbx"
	// commandInterval paces an account's commands: Mango allows 4 callbacks or hangups a
	// second per account (docs/mango.md, Commands), counted as they arrive. Five commands
	// 300 ms apart span 1.2 s, so a first one delayed by up to 200 ms on its way (a loaded
	// host, the network) still does not show Mango five within one second.
	commandInterval = 300 * time.Millisecond
	// lockout is how long Mango refuses everything after repeated bad requests; sending
	// meanwhile only prolongs it.
	lockout = 2 * time.Minute
)

// Config is a Mango Office virtual PBX, `mango <name> { … }`.
type Config struct {
	APIKey  string `json:"api_key"`
	APISalt string `json:"api_salt"`
	// Sources are the addresses webhooks may come from: `mango` (Mango's published addresses,
	// the default), CIDRs or addresses, or `any`.
	Sources []string `json:"sources,omitempty"`
	Forward []string `json:"forward"`
	APIURL  string   `json:"api_url,omitempty"`
	// StaleAfter, when set, refuses a message whose timestamp is older than this (a replay
	// past dedupe_window would otherwise be a new event). Off by default: see
	// docs/security.md, Replays.
	StaleAfter pbx.Duration `json:"stale_after,omitempty"`
}

// Account is a provisioned Mango account.
type Account struct {
	pbx.Common
	apiKey, apiSalt, apiURL string
	staleAfter              time.Duration
}

// Provision checks the configuration.
func (c *Config) Provision(name string, env pbx.Env) (pbx.Account, error) {
	a := &Account{
		apiKey:     env.Expand(c.APIKey),
		apiSalt:    env.Expand(c.APISalt),
		apiURL:     strings.TrimSuffix(env.Expand(c.APIURL), "/"),
		staleAfter: time.Duration(c.StaleAfter),
	}
	if a.apiKey == "" {
		return nil, errors.New("api_key is required (Mango personal account → Integrations → API connector: \"Уникальный код вашей АТС\")")
	}
	if a.apiSalt == "" {
		return nil, errors.New("api_salt is required (Mango personal account → Integrations → API connector: \"Ключ для создания подписи\")")
	}
	if a.apiURL == "" {
		a.apiURL = defaultAPI
	}
	sources := c.Sources
	if len(sources) == 0 {
		sources = []string{"mango"}
	}
	var err error
	if a.Common, err = pbx.NewCommon(env, c.Forward, sources, map[string][]string{"mango": webhookSources}); err != nil {
		return nil, err
	}
	return a, nil
}

// Receive verifies and translates a Mango webhook; the cabinet's connection test is answered.
func (a *Account) Receive(_ context.Context, in *pbx.Inbound) (pbx.Reply, *pbx.Rejection) {
	suffix, known := Route(in.URL.Path)
	if known && IsPing(suffix) {
		// 200 whether signed or not, nothing queued.
		return pbx.Reply{Answer: []byte(`{"status":"ok"}`)}, nil
	}
	if rej := pbx.OnlyPost(in.Request); rej != nil {
		return pbx.Reply{}, rej
	}
	body, rej := in.Body()
	if rej != nil {
		return pbx.Reply{}, rej
	}
	form, err := ParseForm(body)
	if err != nil {
		return pbx.Reply{}, pbx.Malformed("not a Mango form: %v", err)
	}
	if !Verify(form, a.apiKey, a.apiSalt) {
		return pbx.Reply{}, pbx.Unauthorized("wrong vpbx_api_key or sign")
	}
	if !known {
		suffix = in.URL.Path
	}
	// Decoded once for Check, Translate and data.raw.
	payload := []byte(form.JSON)
	f, notObject := decodeObject(payload)
	if notObject == nil {
		if err := check(suffix, f, in.Now, a.staleAfter); err != nil {
			return pbx.Reply{}, &pbx.Rejection{Status: http.StatusBadRequest, Reason: "replay", Msg: err.Error()}
		}
	}
	return pbx.Reply{Events: translate(a.Origin(), suffix, payload, f, notObject, in.Now)}, nil
}

// Command builds a callback, a group callback or a hang-up (docs/mango.md, Commands).
func (a *Account) Command(req *pbx.CommandRequest) (pbx.Command, error) {
	cmd := pbx.Command{Interval: commandInterval, Answer: answer}
	var mc Command
	var err error
	region := a.Origin().Region
	switch {
	case req.Action == "hangup":
		cmd.Name = "hangup"
		if err = req.Unused("from", "to", "line", "from_group", "to_group"); err != nil {
			return cmd, err
		}
		if err = pbx.Printable("leg_id", req.LegID); err != nil {
			return cmd, err
		}
		mc, err = Hangup(req.CommandID, req.LegID)
	case req.FromGroup != "" || req.ToGroup != "":
		cmd.Name = "callback_group"
		if err = req.Unused("leg_id"); err != nil {
			return cmd, err
		}
		var from, to string
		switch {
		case req.FromGroup != "" && req.ToGroup != "":
			return cmd, errors.New("give from_group or to_group, not both: one end of a group call is an external number")
		case req.FromGroup != "":
			if err = req.Unused("from"); err != nil {
				return cmd, fmt.Errorf("%w (from_group is the calling end)", err)
			}
			from, to = req.FromGroup, req.To
		default:
			if err = req.Unused("to"); err != nil {
				return cmd, fmt.Errorf("%w (to_group is the called end)", err)
			}
			from, to = req.From, req.ToGroup
		}
		if req.Line == "" {
			return cmd, errors.New("line is required for a group call (Mango's callback_group needs the outgoing line)")
		}
		if from, err = pbx.DialNumber("from", from, region); err != nil {
			return cmd, err
		}
		if to, err = pbx.DialNumber("to", to, region); err != nil {
			return cmd, err
		}
		if req.Line, err = lineNumber(req.Line, region); err != nil {
			return cmd, err
		}
		mc, err = CallbackGroup(req.CommandID, from, to, req.Line)
	default:
		cmd.Name = "callback"
		if err = req.Unused("leg_id"); err != nil {
			return cmd, err
		}
		if err = pbx.Extension(req.From); err != nil {
			return cmd, err
		}
		if req.To, err = pbx.DialNumber("to", req.To, region); err != nil {
			return cmd, err
		}
		if req.Line != "" {
			if req.Line, err = lineNumber(req.Line, region); err != nil {
				return cmd, err
			}
		}
		mc, err = Callback(req.CommandID, req.From, req.To, req.Line)
	}
	if err != nil {
		return cmd, err
	}
	cmd.URL = a.apiURL + "/" + mc.Path()
	cmd.Form = mc.Form(a.apiKey, a.apiSalt)
	return cmd, nil
}

// lineNumber is the outgoing line: a number, or a SIP line's name as the Mango cabinet shows it.
func lineNumber(raw, region string) (string, error) {
	if n, err := pbx.DialNumber("line", raw, region); err == nil {
		return n, nil
	}
	if strings.ContainsFunc(raw, unicode.IsSpace) || len(raw) > MaxIDBytes {
		return "", fmt.Errorf("line %q is neither a number nor a line name", raw)
	}
	return raw, pbx.Printable("line", raw)
}

// answer maps Mango's answer to a command; a lock-out or "busy" pauses the account.
func answer(status int, body []byte) pbx.Answer {
	a := ReadAnswer(status, body)
	ans := pbx.Answer{Status: a.Status(), Body: pbx.AnswerBody{Code: a.Code, Meaning: a.Meaning()}}
	switch {
	case a.Accepted():
		ans.Outcome, ans.Body.Status = "accepted", "accepted"
		ans.Body.Code, ans.Body.Meaning = 0, ""
		return ans
	case a.LockedOut():
		ans.Outcome, ans.Pause = "locked_out", lockout
		ans.Body.Error = "Mango has locked this account's API out after repeated bad requests; nothing is sent for 2 minutes"
	case a.RateLimited():
		ans.Outcome, ans.Pause = "rate_limited", pbx.BusyPause
		ans.Body.Error = "Mango's rate limit: try again shortly"
	default:
		ans.Outcome = "refused"
		ans.Body.Error = "Mango refused the command: " + a.Meaning()
		if a.Description != "" {
			ans.Body.Error += " (" + a.Description + ")"
		}
	}
	ans.Body.Status = "refused"
	if a.Code == 0 {
		ans.Body.PBXStatus = status
	}
	ans.Busy()
	return ans
}

// Interface guards
var (
	_ pbx.Config   = (*Config)(nil)
	_ pbx.Account  = (*Account)(nil)
	_ pbx.Recorder = (*Account)(nil)
)

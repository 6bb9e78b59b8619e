package itoolabs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/pbxbridge/pbxbridge/lookup"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// Kind is the ITooLabs family (MegaFon, Gravitel, Dom.ru, MegaPBX) in the gateway's registry of
// PBXs.
var Kind = pbx.Kind{Name: "itoolabs", NewConfig: func() pbx.Config { return new(Config) }}

// commandInterval paces an account's commands. The family documents no limit; this is Mango's
// pace, which no PBX has been seen to refuse.
const commandInterval = 300 * time.Millisecond

// Config is one PBX of the family, `itoolabs <name> { … }` (docs/itoolabs.md, Setting up).
type Config struct {
	// CRMToken is the shared secret the PBX sends in every message (the cabinet's "CRM
	// token", "Ключ для авторизации в CRM").
	CRMToken string `json:"crm_token"`
	// Sources are required: the family publishes no addresses. `any` opts out explicitly.
	Sources []string `json:"sources"`
	// APIURL and Token are the PBX's "REST API for CRM" address and key, for click-to-call.
	APIURL  string         `json:"api_url,omitempty"`
	Token   string         `json:"token,omitempty"`
	Lookup  *lookup.Config `json:"lookup,omitempty"`
	Forward []string       `json:"forward"`
}

// Account is a provisioned PBX of the family.
type Account struct {
	pbx.Common
	crmToken, token string
	apiURL          string
	lookup          *lookup.Client // nil: every lookup is answered {}
}

// Provision checks the configuration.
func (c *Config) Provision(name string, env pbx.Env) (pbx.Account, error) {
	a := &Account{
		crmToken: env.Expand(c.CRMToken),
		token:    env.Expand(c.Token),
		apiURL:   strings.TrimSpace(env.Expand(c.APIURL)),
	}
	if a.crmToken == "" {
		return nil, errors.New("crm_token is required (the PBX's cabinet → Integration with CRM / API: the key for authorisation in your CRM)")
	}
	if len(c.Sources) == 0 {
		return nil, errors.New("sources is required: the ITooLabs family publishes no addresses; give your PBX's addresses (ask the operator), or `sources any` to rely on crm_token alone")
	}
	var err error
	if a.Common, err = pbx.NewCommon(env, c.Forward, c.Sources, nil); err != nil {
		return nil, err
	}
	if a.lookup, err = c.Lookup.Provision(env.Expand); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Account) Looks() bool { return a.lookup != nil }

// Receive authenticates a message and translates it; a contact lookup is answered. Refusals
// carry the bodies the PBX expects (RejectionBody).
func (a *Account) Receive(ctx context.Context, in *pbx.Inbound) (pbx.Reply, *pbx.Rejection) {
	var fields Fields
	var err error
	switch in.Method {
	case http.MethodPost:
		body, rej := in.Body()
		if rej != nil {
			return pbx.Reply{}, refused(rej)
		}
		fields, err = Parse(in.Header.Get("Content-Type"), body)
	case http.MethodGet: // cmd=history may come as a query string
		fields, err = ParseQuery(in.URL.RawQuery)
	default:
		return pbx.Reply{}, refused(&pbx.Rejection{Status: http.StatusMethodNotAllowed, Reason: "malformed", Msg: "method " + in.Method + " not allowed; the PBX POSTs (or GETs a history)"})
	}
	if err != nil {
		return pbx.Reply{}, refused(pbx.Malformed("not an ITooLabs message: %v", err))
	}
	if !Authenticate(fields, a.crmToken) {
		return pbx.Reply{}, refused(pbx.Unauthorized("crm_token does not match the account"))
	}
	if fields.IsContact() {
		return a.lookup.Reply(in.Context(), a.Origin(), fields.Phone(), fields.CallID()), nil
	}
	return pbx.Reply{Events: Translate(a.Origin(), fields, in.Now)}, nil
}

// refused gives a rejection the body the PBX reads.
func refused(rej *pbx.Rejection) *pbx.Rejection {
	rej.Body = RejectionBody(rej.Status)
	return rej
}

// Command builds a makeCall (docs/itoolabs.md, Click-to-call): from is the employee (login or
// extension) whose phone rings first, to the number to call, line the caller id to show.
func (a *Account) Command(req *pbx.CommandRequest) (pbx.Command, error) {
	cmd := pbx.Command{Name: "make_call", Interval: commandInterval, Answer: answer}
	if req.Action == "hangup" {
		return pbx.Command{Name: "hangup"}, errors.New("the ITooLabs REST API for CRM has no hangup command")
	}
	if a.apiURL == "" || a.token == "" {
		return cmd, fmt.Errorf("itoolabs account %s has no api_url and token: set both to make calls", a.Origin().Account)
	}
	if err := req.Unused("from_group", "to_group", "leg_id"); err != nil {
		return cmd, fmt.Errorf("%w: makeCall takes from, to and line only", err)
	}
	if req.From == "" || len(req.From) > 128 || strings.ContainsFunc(req.From, unicode.IsSpace) {
		return cmd, errors.New("from is required: the employee's login (ivanov or ivanov@example.megapbx.ru) or extension")
	}
	if err := pbx.Printable("from", req.From); err != nil {
		return cmd, err
	}
	var err error
	if req.To, err = pbx.DialNumber("to", req.To, a.Origin().Region); err != nil {
		return cmd, err
	}
	if req.Line != "" {
		if req.Line, err = pbx.DialNumber("line", req.Line, a.Origin().Region); err != nil {
			return cmd, err
		}
	}
	cmd.URL = a.apiURL
	cmd.Form = MakeCallForm(a.token, req.From, req.To, req.Line).Encode()
	return cmd, nil
}

// answer maps the PBX's answer to makeCall.
func answer(status int, body []byte) pbx.Answer {
	a := ReadCallAnswer(status, body)
	return pbx.MakeCallAnswer(status, a.Accepted(), "the PBX refused the call: "+a.Error)
}

// Interface guards
var (
	_ pbx.Config  = (*Config)(nil)
	_ pbx.Account = (*Account)(nil)
	_ pbx.Looker  = (*Account)(nil)
)

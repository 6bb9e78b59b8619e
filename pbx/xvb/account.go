package xvb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/lookup"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// Kind is XVB PBX in the gateway's registry of PBXs.
var Kind = pbx.Kind{Name: "xvb", NewConfig: func() pbx.Config { return new(Config) }}

// commandInterval paces an account's commands. XVB documents no limit; this is Mango's pace,
// which no PBX has been seen to refuse.
const commandInterval = 300 * time.Millisecond

// Config is an XVB PBX tenant, `xvb <name> { … }`.
type Config struct {
	AccessCode string `json:"access_code"`
	// Secret, when set, must be in the webhook URL as ?key=<secret>.
	Secret string `json:"secret,omitempty"`
	// Sources are required: XVB publishes no addresses. `any` opts out explicitly.
	Sources []string       `json:"sources"`
	APIURL  string         `json:"api_url,omitempty"`
	Token   string         `json:"token,omitempty"`
	Lookup  *lookup.Config `json:"lookup,omitempty"`
	Forward []string       `json:"forward"`
}

// Account is a provisioned XVB tenant.
type Account struct {
	pbx.Common
	accessCode, secret, token string
	apiURL                    string
	lookup                    *lookup.Client // nil: every lookup is answered {}
	calls                     func(context.Context) (pbx.Calls, error)
	logger                    *zap.Logger
}

// Provision checks the configuration.
func (c *Config) Provision(name string, env pbx.Env) (pbx.Account, error) {
	a := &Account{
		accessCode: env.Expand(c.AccessCode),
		secret:     env.Expand(c.Secret),
		token:      env.Expand(c.Token),
		apiURL:     strings.TrimSuffix(env.Expand(c.APIURL), "/"),
		calls:      env.Calls,
		logger:     env.Logger,
	}
	if a.accessCode == "" {
		return nil, errors.New("access_code is required (XVB settings page → Integrations → CommonCRM)")
	}
	if len(c.Sources) == 0 {
		return nil, errors.New("sources is required: XVB signs nothing and publishes no addresses; give your XVB server's addresses, or `sources any` to accept any sender")
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

// Receive authenticates an XVB message and translates it; a contact lookup is answered.
func (a *Account) Receive(ctx context.Context, in *pbx.Inbound) (pbx.Reply, *pbx.Rejection) {
	if rej := pbx.OnlyPost(in.Request); rej != nil {
		return pbx.Reply{}, rej
	}
	body, rej := in.Body()
	if rej != nil {
		return pbx.Reply{}, rej
	}
	fields, recoded, err := Parse(in.Header.Get("Content-Type"), body)
	if err != nil {
		return pbx.Reply{}, pbx.Malformed("not an XVB message: %v", err)
	}
	// X-XVB-AC in canonical form, which Get would allocate to make.
	if !Authenticate(fields, in.Header.Get("X-Xvb-Ac"), a.accessCode) {
		return pbx.Reply{}, pbx.Unauthorized("access_code (or X-XVB-AC) does not match the account")
	}
	if a.secret != "" && !pbx.SecretMatches(in.URL.Query().Get("key"), a.secret) {
		return pbx.Reply{}, pbx.Unauthorized("missing or wrong ?key= in the webhook URL")
	}
	if recoded {
		a.logger.Info("XVB message was not UTF-8; decoded as CP1251", zap.String("account", a.Origin().Account))
	}
	if fields.IsContact() {
		return a.lookup.Reply(in.Context(), a.Origin(), fields.Phone(), ""), nil
	}
	corr, err := a.correlate(ctx, fields)
	if err != nil {
		return pbx.Reply{}, pbx.Unavailable("call correlation: %v", err)
	}
	return pbx.Reply{Events: Translate(a.Origin(), fields, corr, in.Now), Wait: a.noteAnswer(ctx, fields)}, nil
}

// correlate finds the call of an XVB message and what its earlier messages said
// (docs/xvb.md, Correlation). XVB's COMPLETED may come without callid (the vendor's own
// example has none), type or ext: it is joined to the call the same phone number opened on the
// same account (weak), or else given a stable id derived from the message, and takes type and
// ext from the call it closes (and the agent from noteAnswer). INCOMING writes the call's
// number, type and ext.
func (a *Account) correlate(ctx context.Context, f Fields) (Correlation, error) {
	name, id := f.Event(), f.CallID()
	if f.Command() != "event" || (name != "INCOMING" && name != "COMPLETED") || (name == "INCOMING" && id == "") {
		return Correlation{}, nil
	}
	calls, err := a.calls(ctx)
	if err != nil {
		return Correlation{}, err
	}
	phone := event.Number(f.Phone(), a.Origin().Region)
	if name == "INCOMING" {
		if phone == "" {
			return Correlation{}, nil
		}
		return Correlation{}, calls.Open(ctx, a.Origin().Account, phone, pbx.OpenCall{ID: id, Type: f["type"], Ext: f["ext"]})
	}
	open, err := calls.Close(ctx, a.Origin().Account, phone, id)
	if err != nil {
		return Correlation{}, err
	}
	corr := Correlation{CallID: open.ID, Type: open.Type, Ext: open.Ext, Agent: open.Agent}
	switch {
	case id != "": // the message names its call
		corr.CallID = ""
	case open.ID != "":
		corr.How = CorrelationWeak
	default:
		corr.CallID, corr.How = DerivedCallID(a.accessCode, f), CorrelationDerived
	}
	return corr, nil
}

// noteAnswer writes who answered an XVB call (ANSWERED's callid and ext) for the call's
// COMPLETED, which may leave ext out: one write, no read. It writes while the gateway makes
// the call.answered durable, so the agent's audio waits for the slower of the two, not for
// both; the returned func waits for the write. A failure is logged and costs only the agent's
// name on such a COMPLETED: the call.answered is what matters.
func (a *Account) noteAnswer(ctx context.Context, f Fields) (wait func()) {
	id, ext := f.CallID(), f["ext"]
	if f.Command() != "event" || f.Event() != "ANSWERED" || id == "" || ext == "" {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		calls, err := a.calls(ctx)
		if err == nil {
			err = calls.Answer(ctx, a.Origin().Account, id, ext)
		}
		if err != nil {
			a.logger.Warn("could not note who answered; a COMPLETED without ext will not name the agent",
				zap.String("account", a.Origin().Account), zap.Error(err))
		}
	}()
	return func() { <-done }
}

// Command builds a makeCall (docs/xvb.md, Click-to-call: makeCall).
func (a *Account) Command(req *pbx.CommandRequest) (pbx.Command, error) {
	cmd := pbx.Command{Name: "make_call", Interval: commandInterval, Answer: answer}
	if req.Action == "hangup" {
		return pbx.Command{Name: "hangup"}, errors.New("XVB has no hangup command")
	}
	if a.apiURL == "" || a.token == "" {
		return cmd, fmt.Errorf("xvb account %s has no api_url and token: set both to make calls", a.Origin().Account)
	}
	if err := req.Unused("line", "from_group", "to_group", "leg_id"); err != nil {
		return cmd, fmt.Errorf("%w: XVB's makeCall takes from and to only", err)
	}
	if err := pbx.Extension(req.From); err != nil {
		return cmd, err
	}
	var err error
	if req.To, err = pbx.DialNumber("to", req.To, a.Origin().Region); err != nil {
		return cmd, err
	}
	cmd.URL = a.apiURL
	cmd.Form = MakeCallForm(a.token, req.From, req.To).Encode()
	return cmd, nil
}

// answer maps XVB's answer to makeCall, which is not documented; the log keeps its text.
func answer(status int, body []byte) pbx.Answer {
	a := ReadCallAnswer(status, body)
	refusal := fmt.Sprintf("XVB refused the call: HTTP %d", status)
	if a.Error != "" {
		refusal += ": " + a.Error
	}
	return pbx.MakeCallAnswer(status, a.Accepted(), refusal)
}

// Interface guards
var (
	_ pbx.Config  = (*Config)(nil)
	_ pbx.Account = (*Account)(nil)
	_ pbx.Looker  = (*Account)(nil)
)

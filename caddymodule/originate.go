package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/command"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

func init() {
	caddy.RegisterModule(Originate{})
	httpcaddyfile.RegisterHandlerDirective("pbx_originate", parseHandler[Originate])
	httpcaddyfile.RegisterDirectiveOrder("pbx_originate", httpcaddyfile.Before, "respond")
}

const defaultCommandTimeout = 10 * time.Second

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

	app     *App
	token   string
	service *command.Service
	logger  *zap.Logger
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
	h.service = &command.Service{Timeout: time.Duration(h.Timeout), Engine: app.readyEngine,
		Client: outbound.Configured(0), UserAgent: outbound.UserAgent(), Logger: logger}
	return nil
}

func (h *Originate) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	accName, cmdName, ans := h.handle(r)
	// The path only: a robot's query carries the token.
	logCommand(h.logger, start, accName, cmdName, ans,
		zap.String("client_ip", clientIP(r).String()), zap.String("path", r.URL.Path))
	if ans.Outcome == "canceled" {
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
	case ans.Outcome == "duplicate":
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(ans.Status)
	return json.NewEncoder(w).Encode(ans.Body)
}

// handle authorizes, reads and carries out one request. It returns the account and command
// names once known (for metrics and logs) and the answer.
func (h *Originate) handle(r *http.Request) (string, string, pbx.Answer) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return "", "", *pbx.Refusal(http.StatusMethodNotAllowed, "rejected", "method %s not allowed: POST a command (GET with query parameters for robots)", r.Method)
	}
	if !h.authorized(r) {
		return "", "", *pbx.Refusal(http.StatusUnauthorized, "rejected", "missing or wrong token: send Authorization: Bearer <token> (or ?token=<token>)")
	}
	req, rej := command.Read(r)
	if rej != nil {
		return "", "", *rej
	}
	if req.Account == "" {
		return "", "", *pbx.Refusal(http.StatusBadRequest, "rejected", "account is required")
	}
	return h.app.command(r.Context(), h.service, req)
}

// command carries out req on its account through service. It returns the account's and the
// command's names once known (the metric labels: none for an account that does not exist) and
// the answer.
func (a *App) command(ctx context.Context, service *command.Service, req pbx.CommandRequest) (string, string, pbx.Answer) {
	acc := a.accounts[req.Account]
	if acc == nil {
		return "", "", *pbx.Refusal(http.StatusBadRequest, "rejected", "no account named %q (%s)", req.Account, kindNames())
	}
	name, ans := service.Do(ctx, acc, req)
	return req.Account, name, ans
}

// logCommand counts and logs a command's answer, whoever asked for it (pbx_originate, a CRM
// connector): warn on 4xx, error on 5xx.
func logCommand(logger *zap.Logger, start time.Time, account, cmd string, ans pbx.Answer, extra ...zap.Field) {
	if account != "" && cmd != "" {
		metrics.commandDuration.WithLabelValues(account, cmd).Observe(time.Since(start).Seconds())
	}
	metrics.commands.WithLabelValues(account, cmd, ans.Outcome).Inc()
	level := zap.InfoLevel
	switch {
	case ans.Status >= 500:
		level = zap.ErrorLevel
	case ans.Status >= 400:
		level = zap.WarnLevel
	}
	fields := append([]zap.Field{zap.String("account", account), zap.String("command", cmd), zap.String("command_id", ans.Body.CommandID),
		zap.String("outcome", ans.Outcome), zap.Int("status", ans.Status), zap.Duration("duration", time.Since(start))}, extra...)
	if ans.Body.Code != 0 {
		fields = append(fields, zap.Int64("pbx_code", ans.Body.Code))
	}
	if ans.Body.Error != "" {
		fields = append(fields, zap.String("error", ans.Body.Error))
	}
	logger.Log(level, "command", fields...)
}

// authorized checks the bearer token, else ?token=.
func (h *Originate) authorized(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return bearerMatches(auth, h.token)
	}
	return pbx.SecretMatches(r.URL.Query().Get("token"), h.token)
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

package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/pbxbridge/pbxbridge/crm"
)

func init() {
	caddy.RegisterModule(CRM{})
	httpcaddyfile.RegisterHandlerDirective("pbx_crm", parseHandler[CRM])
	httpcaddyfile.RegisterDirectiveOrder("pbx_crm", httpcaddyfile.Before, "respond")
}

// CRM is the pbx_crm handler: what a target's CRM sends to pbxbridge (a Bitrix24
// application's installation and its events) goes to the target's connector, which checks it.
type CRM struct {
	// Target names a target whose connector takes requests from its CRM.
	Target string `json:"target"`

	receiver crm.Receiver
}

// CaddyModule returns the Caddy module information.
func (CRM) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_crm",
		New: func() caddy.Module { return new(CRM) },
	}
}

// Provision finds the target's connector.
func (h *CRM) Provision(ctx caddy.Context) error {
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	conn, ok := app.(*App).connectors[h.Target]
	if !ok {
		return fmt.Errorf("pbx_crm %s: no target named %s with a CRM kind (target %s <kind> <url> { … })", h.Target, h.Target, h.Target)
	}
	if h.receiver, ok = conn.(crm.Receiver); !ok {
		return fmt.Errorf("pbx_crm %s: its CRM sends pbxbridge nothing; remove this handler", h.Target)
	}
	return nil
}

func (h *CRM) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.receiver.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the handler:
//
//	pbx_crm <target>
func (h *CRM) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if !d.AllArgs(&h.Target) {
		return d.Err("pbx_crm takes the target's name: pbx_crm <target>")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*CRM)(nil)
	_ caddyhttp.MiddlewareHandler = (*CRM)(nil)
	_ caddyfile.Unmarshaler       = (*CRM)(nil)
)

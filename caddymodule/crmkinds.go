package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/command"
	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/crm/amocrm"
	"github.com/pbxbridge/pbxbridge/crm/bitrix24"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// crmKinds is the registry of CRM connectors: the one place that names them. A target of a
// kind is configured as `target <name> <kind> <url> { … }` in the Caddyfile and as
// {"kind": "<kind>", "connector": {…}} in the app's JSON. See docs/development.md, Adding a
// CRM.
var crmKinds = []crm.Kind{amocrm.Kind, bitrix24.Kind}

func crmKind(name string) (crm.Kind, bool) {
	for _, k := range crmKinds {
		if k.Name == name {
			return k, true
		}
	}
	return crm.Kind{}, false
}

func crmKindNames() string {
	names := make([]string, len(crmKinds))
	for i, k := range crmKinds {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// provisionConnectors builds the connector of every target that has a kind, once the
// accounts that forward to it are known.
func (a *App) provisionConnectors(repl *caddy.Replacer) error {
	a.connectors = map[string]crm.Connector{}
	// Commands a CRM starts (Bitrix24's click-to-call) take the pbx_originate path.
	service := &command.Service{Timeout: defaultCommandTimeout, Engine: a.readyEngine,
		Client: outbound.Configured(0), UserAgent: outbound.UserAgent(), Logger: a.logger.Named("command")}
	for i := range a.targets {
		dt := &a.targets[i]
		t := a.Targets[dt.Name]
		if t.Kind == "" {
			continue
		}
		kind, ok := crmKind(t.Kind)
		if !ok {
			return fmt.Errorf("target %s: no CRM kind %q (kinds: %s; a target without a kind takes webhooks)", dt.Name, t.Kind, crmKindNames())
		}
		if t.Format != "" || t.JQ != "" || len(t.Secrets) > 0 || len(t.Headers) > 0 || t.Raw || len(t.DeadStatus) > 0 {
			return fmt.Errorf("target %s: format, jq, secret, header, raw and dead_status are a webhook's; a %s target calls the CRM's API", dt.Name, t.Kind)
		}
		cfg := kind.NewConfig()
		if len(t.Connector) > 0 {
			if err := caddy.StrictUnmarshalJSON(t.Connector, cfg); err != nil {
				return fmt.Errorf("target %s: %s options: %w", dt.Name, t.Kind, err)
			}
		}
		accounts := map[string]event.Origin{}
		for _, acc := range dt.Accounts {
			accounts[acc.Account] = a.accounts[acc.Account].Origin()
		}
		name := dt.Name
		env := crm.Env{
			Expand: func(s string) string { return repl.ReplaceKnown(s, "") },
			State: func(ctx context.Context) (crm.State, error) {
				eng := a.readyEngine(ctx)
				if eng == nil {
					return nil, fmt.Errorf("queue not started yet")
				}
				return eng.CRMState(name)
			},
			Client:    outbound.Configured(0),
			UserAgent: outbound.UserAgent(),
			Originate: func(ctx context.Context, req pbx.CommandRequest) pbx.Answer {
				return a.originate(ctx, service, req)
			},
			Accounts: accounts,
			Logger:   a.logger.With(zap.String("target", name), zap.String("crm", t.Kind)),
		}
		conn, err := cfg.Provision(name, dt.URL, env)
		if err != nil {
			return fmt.Errorf("target %s: %w", name, err)
		}
		dt.Connector = conn
		a.connectors[name] = conn
	}
	return nil
}

// originate carries out a command a CRM connector asks for, counted and logged as
// pbx_originate's are.
func (a *App) originate(ctx context.Context, service *command.Service, req pbx.CommandRequest) pbx.Answer {
	start := time.Now()
	account, name, ans := a.command(ctx, service, req)
	logCommand(a.logger, start, account, name, ans)
	return ans
}

// unmarshalConnectorOption reads one option of a target's kind into cfg, by its JSON name.
func unmarshalConnectorOption(d *caddyfile.Dispenser, kind string, cfg crm.Config) error {
	field := optionField(reflect.ValueOf(cfg).Elem(), d.Val())
	if !field.IsValid() {
		return d.Errf("unknown %s target option %q", kind, d.Val())
	}
	return unmarshalOption(d, kind, field)
}

// marshalConnector keeps a target's kind options in its JSON.
func marshalConnector(t *Target, cfg crm.Config) error {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if string(raw) != "{}" {
		t.Connector = raw
	}
	return nil
}

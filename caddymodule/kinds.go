package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/lookup"
	"github.com/pbxbridge/pbxbridge/pbx"
	"github.com/pbxbridge/pbxbridge/pbx/itoolabs"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

// kinds is the registry of PBX families: the one place that names them. Each is configured
// as `<kind> <name> { … }` in the Caddyfile and as "<kind>": {"<name>": {…}} in the app's
// JSON. See docs/development.md, Adding a PBX.
var kinds = []pbx.Kind{mango.Kind, xvb.Kind, itoolabs.Kind}

func kindNames() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// UnmarshalJSON reads the app; each kind's accounts are in a field named for the kind.
func (a *App) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	for _, k := range kinds {
		raw, ok := fields[k.Name]
		if !ok {
			continue
		}
		delete(fields, k.Name)
		var byName map[string]json.RawMessage
		if err := json.Unmarshal(raw, &byName); err != nil {
			return fmt.Errorf("%s: %w", k.Name, err)
		}
		for name, raw := range byName {
			cfg := k.NewConfig()
			if err := caddy.StrictUnmarshalJSON(raw, cfg); err != nil {
				return fmt.Errorf("%s %s: %w", k.Name, name, err)
			}
			a.addAccount(k.Name, name, cfg)
		}
	}
	rest, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	type plain App // without these methods
	return caddy.StrictUnmarshalJSON(rest, (*plain)(a))
}

// MarshalJSON writes the app as UnmarshalJSON reads it.
func (a App) MarshalJSON() ([]byte, error) {
	type plain App
	b, err := json.Marshal(plain(a))
	if err != nil || len(a.Accounts) == 0 {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for kind, byName := range a.Accounts {
		if fields[kind], err = json.Marshal(byName); err != nil {
			return nil, err
		}
	}
	return json.Marshal(fields)
}

func (a *App) addAccount(kind, name string, cfg pbx.Config) {
	if a.Accounts == nil {
		a.Accounts = map[string]map[string]pbx.Config{}
	}
	if a.Accounts[kind] == nil {
		a.Accounts[kind] = map[string]pbx.Config{}
	}
	a.Accounts[kind][name] = cfg
}

// provisionAccounts builds every kind's accounts and hands each target the accounts that
// forward to it.
func (a *App) provisionAccounts(repl *caddy.Replacer) error {
	a.accounts = map[string]pbx.Account{}
	expand := func(s string) string { return repl.ReplaceKnown(s, "") }
	for _, k := range kinds {
		for _, name := range sortedKeys(a.Accounts[k.Name]) {
			if !namePattern.MatchString(name) {
				return fmt.Errorf("%s %q: names are letters, digits, - and _", k.Name, name)
			}
			if _, dup := a.accounts[name]; dup {
				return fmt.Errorf("%s %s: an account named %s already exists (account names are shared by all PBXs)", k.Name, name, name)
			}
			env := pbx.Env{
				Origin: event.Origin{PBX: k.Name, Account: name, Region: a.Region},
				Expand: expand,
				Calls:  a.calls,
				Logger: a.logger.With(zap.String("pbx", k.Name)),
			}
			acc, err := a.Accounts[k.Name][name].Provision(name, env)
			if err != nil {
				return fmt.Errorf("%s %s: %w", k.Name, name, err)
			}
			if err := a.forward(acc); err != nil {
				return err
			}
			a.accounts[name] = acc
		}
	}
	for _, t := range a.targets {
		if len(t.Accounts) == 0 {
			a.logger.Warn("no account forwards to this target", zap.String("target", t.Name))
		}
	}
	zeroSeries(a.accounts, a.targets)
	return nil
}

func (a *App) forward(acc pbx.Account) error {
	o := acc.Origin()
	if len(acc.Forward()) == 0 {
		return fmt.Errorf("%s %s: forward names no target: its events would have nowhere to go", o.PBX, o.Account)
	}
	for _, t := range acc.Forward() {
		i := slices.IndexFunc(a.targets, func(dt delivery.Target) bool { return dt.Name == t })
		if i < 0 {
			return fmt.Errorf("%s %s: forward %s: no target named %s (define it with `target %s <url>`)", o.PBX, o.Account, t, t, t)
		}
		a.targets[i].Accounts = append(a.targets[i].Accounts, delivery.Account{PBX: o.PBX, Account: o.Account})
	}
	return nil
}

// calls is the open-call store of the running queue, within ctx while it starts.
func (a *App) calls(ctx context.Context) (pbx.Calls, error) {
	eng := a.readyEngine(ctx)
	if eng == nil || eng.Calls() == nil {
		return nil, errors.New("queue not started yet")
	}
	if err := eng.Writable(); err != nil {
		return nil, err
	}
	return eng.Calls(), nil
}

// unmarshalAccount reads `<kind> <name> { … }`. Each option sets the configuration's field
// of the same JSON name (unmarshalOption).
func (a *App) unmarshalAccount(d *caddyfile.Dispenser, kind pbx.Kind) error {
	var name string
	if !d.Args(&name) || d.NextArg() {
		return d.Errf("%s needs a name: %s <name> { … }", kind.Name, kind.Name)
	}
	cfg := kind.NewConfig()
	fields := reflect.ValueOf(cfg).Elem()
	for d.NextBlock(1) {
		field := optionField(fields, d.Val())
		if !field.IsValid() {
			return d.Errf("unknown %s option %q", kind.Name, d.Val())
		}
		if err := unmarshalOption(d, kind.Name, field); err != nil {
			return err
		}
	}
	if _, dup := a.Accounts[kind.Name][name]; dup {
		return d.Errf("%s %s is defined twice", kind.Name, name)
	}
	a.addAccount(kind.Name, name, cfg)
	return nil
}

// unmarshalOption reads the option at d into field (of a PBX account's or a CRM target's
// configuration, for what): a string takes one argument, a list one or more, a duration one
// such as 10s, a number one, a switch on or off; a map a block of `<key> <value>` lines;
// `lookup <url> { … }` is the CRM lookup.
func unmarshalOption(d *caddyfile.Dispenser, what string, field reflect.Value) error {
	switch dst := field.Addr().Interface().(type) {
	case *string:
		return oneArg(d, dst)
	case *[]string:
		return listArg(d, dst)
	case *pbx.Duration:
		return parseDuration(d, dst)
	case *int:
		return intArg(d, dst)
	case *bool:
		return boolArg(d, dst)
	case **bool: // a switch whose default is on
		*dst = new(bool)
		return boolArg(d, *dst)
	case *map[string]string:
		return mapArg(d, dst)
	case **lookup.Config:
		var err error
		*dst, err = unmarshalLookup(d)
		return err
	default:
		return d.Errf("%s option %q: no Caddyfile syntax for %T", what, d.Val(), dst)
	}
}

// optionField is the field of a configuration struct whose JSON name is option.
func optionField(v reflect.Value, option string) reflect.Value {
	for i := range v.NumField() {
		if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); name == option {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

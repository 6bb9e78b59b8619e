package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/lookup"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("pbx", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("pbx_webhook", parseHandler[Webhook])
	httpcaddyfile.RegisterDirectiveOrder("pbx_webhook", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("pbx_health", parseHandler[Health])
	httpcaddyfile.RegisterDirectiveOrder("pbx_health", httpcaddyfile.Before, "respond")
}

func parseGlobal(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "pbx", Value: caddyconfig.JSON(app, nil)}, nil
}

// handlerPtr is a handler module that reads its own Caddyfile tokens.
type handlerPtr[T any] interface {
	*T
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}

func parseHandler[T any, P handlerPtr[T]](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := P(new(T))
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the pbx app from the `pbx` global option:
//
//	pbx {
//		data_dir      <path>                 # embedded store; default: Caddy's data dir + /pbxbridge
//		max_store     <size>                 # e.g. 20GiB; default 10GiB or a quarter of the disk; full → webhooks get 503
//		dedupe_window <duration>             # a PBX re-send within it is delivered once
//		region        <ISO 3166>             # for numbers without a country code; default RU
//		outbound_allow <cidr or address>...  # internal networks that URLs from a PBX or CRM answer
//		                                     # (a Mango recording redirect) may reach; default none.
//		                                     # Endpoints written here (target, lookup, api_url) are
//		                                     # dialed as written and need no entry.
//		tracing                              # OTLP spans per webhook and delivery attempt (OTEL_* env)
//		nats <url>... {                      # an existing JetStream cluster instead of data_dir
//			creds    <file>                  # NATS credentials (JWT and NKey seed)
//			tls {                            # TLS to NATS (also implied by tls:// URLs)
//				ca          <file>           # PEM CAs of the servers; default: the system's
//				cert        <file>           # client certificate, for servers that verify clients
//				key         <file>
//				server_name <name>           # to check instead of the URL's host
//				insecure_skip_verify         # tests only
//			}
//			replicas <n>                     # of every stream and bucket, e.g. 3; default 1
//			prefix   <name>                  # names streams, subjects, buckets; default pbx
//		}
//		target <name> [<kind>] <url> {     # kind: a CRM connector (see its docs) instead of a webhook
//			format      cloudevents | cloudevents-binary | jq `<expr>`
//			events      <type glob>...       # default: every type
//			secret      <whsec_…>            # Standard Webhooks; twice while rotating
//			header      <name> <value>
//			timeout     <duration>
//			concurrency <n>
//			raw         on | off
//			dead_status <code>...            # default 400 413 415 422
//			retry {
//				backoff <first> <cap>
//				max_age <duration>
//			}
//		}
//		mango <name> {
//			api_key  <key>
//			api_salt <salt>
//			sources  mango | any | <cidr or address>...
//			forward  <target>...
//			api_url  <url>
//			stale_after <duration>            # refuse events older than this; default off
//		}
//		xvb <name> {
//			access_code <code>
//			secret      <key>                # webhook URL must carry ?key=<key>
//			sources     any | <cidr or address>...
//			api_url     <url>
//			token       <token>
//			lookup <url> {                   # or: lookup bitrix24 <webhook url> { … }
//				header  <name> <value>       #     lookup amocrm <url> { token <token>; users { <ext> <user id> … } }
//				timeout <duration>
//				cache   <duration>
//			}
//			forward <target>...
//		}
//		itoolabs <name> {                    # MegaFon, Gravitel, Dom.ru
//			crm_token <token>                # the key the PBX sends in every message
//			sources   any | <cidr or address>...
//			api_url   <url>                  # makeCall, with token
//			token     <token>
//			lookup    <url> { … }            # as in xvb
//			forward   <target>...
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "data_dir":
			if !d.AllArgs(&a.DataDir) {
				return d.ArgErr()
			}
		case "max_store":
			var size string
			if !d.AllArgs(&size) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(size)
			if err != nil || n == 0 {
				return d.Errf("max_store: %q is not a size such as 20GiB", size)
			}
			a.MaxStore = int64(n)
		case "dedupe_window":
			if err := parseDuration(d, &a.DedupeWindow); err != nil {
				return err
			}
		case "region":
			if !d.AllArgs(&a.Region) {
				return d.ArgErr()
			}
		case "outbound_allow":
			if err := listArg(d, &a.OutboundAllow); err != nil {
				return err
			}
			if _, err := outbound.NewPolicy(a.OutboundAllow); err != nil {
				return d.Errf("outbound_allow: %v", err)
			}
		case "tracing":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.Tracing = true
		case "nats":
			if err := a.unmarshalNATS(d); err != nil {
				return err
			}
		case "target":
			if err := a.unmarshalTarget(d); err != nil {
				return err
			}
		default:
			i := slices.IndexFunc(kinds, func(k pbx.Kind) bool { return k.Name == d.Val() })
			if i < 0 {
				return d.Errf("unknown pbx option %q", d.Val())
			}
			if err := a.unmarshalAccount(d, kinds[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *App) unmarshalNATS(d *caddyfile.Dispenser) error {
	n := &NATS{URLs: d.RemainingArgs()}
	if len(n.URLs) == 0 {
		return d.Err("nats: at least one URL")
	}
	for d.NextBlock(1) {
		var err error
		switch d.Val() {
		case "creds":
			err = oneArg(d, &n.Creds)
		case "tls":
			n.TLS, err = unmarshalNATSTLS(d)
		case "replicas":
			err = intArg(d, &n.Replicas)
		case "prefix":
			err = oneArg(d, &n.Prefix)
		default:
			return d.Errf("unknown nats option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	a.NATS = n
	return nil
}

func unmarshalNATSTLS(d *caddyfile.Dispenser) (*NATSTLS, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := new(NATSTLS)
	for d.NextBlock(2) {
		var err error
		switch d.Val() {
		case "ca":
			err = oneArg(d, &t.CA)
		case "cert":
			err = oneArg(d, &t.Cert)
		case "key":
			err = oneArg(d, &t.Key)
		case "server_name":
			err = oneArg(d, &t.ServerName)
		case "insecure_skip_verify":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			t.InsecureSkipVerify = true
		default:
			return nil, d.Errf("unknown nats tls option %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (a *App) unmarshalTarget(d *caddyfile.Dispenser) error {
	var name string
	t := new(Target)
	var cfg crm.Config
	switch args := d.RemainingArgs(); len(args) {
	case 2:
		name, t.URL = args[0], args[1]
	case 3:
		name, t.Kind, t.URL = args[0], args[1], args[2]
		kind, ok := crmKind(t.Kind)
		if !ok {
			return d.Errf("target %s: no CRM kind %q (kinds: %s); a webhook target is target <name> <url>", name, t.Kind, crmKindNames())
		}
		cfg = kind.NewConfig()
	default:
		return d.Err("target needs a name and a URL: target <name> <url>, or target <name> <kind> <url> for a CRM connector")
	}
	for d.NextBlock(1) {
		var err error
		switch d.Val() {
		case "format":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] != "jq":
				t.Format = args[0]
			case len(args) == 2 && args[0] == "jq":
				t.Format, t.JQ = "jq", args[1]
			default:
				return d.Err("format: cloudevents | cloudevents-binary | jq `<expr>`")
			}
		case "events":
			t.Events = d.RemainingArgs()
			if len(t.Events) == 0 {
				return d.ArgErr()
			}
		case "secret":
			var s string
			err = oneArg(d, &s)
			t.Secrets = append(t.Secrets, s)
		case "header":
			if t.Headers == nil {
				t.Headers = http.Header{}
			}
			err = headerArg(d, t.Headers)
		case "timeout":
			err = parseDuration(d, &t.Timeout)
		case "concurrency":
			err = intArg(d, &t.Concurrency)
		case "raw":
			err = boolArg(d, &t.Raw)
		case "dead_status":
			for _, s := range d.RemainingArgs() {
				code, convErr := strconv.Atoi(s)
				if convErr != nil || code < 100 || code > 599 {
					return d.Errf("dead_status: %q is not an HTTP status", s)
				}
				t.DeadStatus = append(t.DeadStatus, code)
			}
		case "retry":
			err = unmarshalRetry(d, t)
		default:
			if cfg == nil {
				return d.Errf("unknown target option %q", d.Val())
			}
			err = unmarshalConnectorOption(d, t.Kind, cfg)
		}
		if err != nil {
			return err
		}
	}
	if cfg != nil {
		if err := marshalConnector(t, cfg); err != nil {
			return d.Errf("target %s: %v", name, err)
		}
	}
	if a.Targets == nil {
		a.Targets = map[string]*Target{}
	}
	if _, dup := a.Targets[name]; dup {
		return d.Errf("target %s is defined twice", name)
	}
	a.Targets[name] = t
	return nil
}

func unmarshalRetry(d *caddyfile.Dispenser, t *Target) error {
	if t.Retry == nil {
		t.Retry = new(Retry)
	}
	for d.NextBlock(2) {
		switch d.Val() {
		case "backoff":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("backoff <first delay> <cap>")
			}
			first, err := caddy.ParseDuration(args[0])
			if err != nil {
				return d.Errf("backoff: %v", err)
			}
			ceil, err := caddy.ParseDuration(args[1])
			if err != nil {
				return d.Errf("backoff: %v", err)
			}
			if ceil < first {
				return d.Err("backoff: the cap is smaller than the first delay")
			}
			t.Retry.BackoffMin, t.Retry.BackoffMax = caddy.Duration(first), caddy.Duration(ceil)
		case "max_age":
			if err := parseDuration(d, &t.Retry.MaxAge); err != nil {
				return err
			}
		default:
			return d.Errf("unknown retry option %q", d.Val())
		}
	}
	return nil
}

// unmarshalLookup reads `lookup <url> { … }`, `lookup bitrix24 <webhook url> { … }` or
// `lookup amocrm <url> { token …; users { … } }`.
func unmarshalLookup(d *caddyfile.Dispenser) (*lookup.Config, error) {
	l := new(lookup.Config)
	switch args := d.RemainingArgs(); len(args) {
	case 1:
		l.URL = args[0]
	case 2:
		l.Source, l.URL = args[0], args[1]
	default:
		return nil, d.Err("lookup <url> { … }, lookup bitrix24 <webhook url> { … } or lookup amocrm <url> { token … }")
	}
	for d.NextBlock(2) {
		var err error
		switch d.Val() {
		case "header":
			if l.Headers == nil {
				l.Headers = http.Header{}
			}
			err = headerArg(d, l.Headers)
		case "token":
			err = oneArg(d, &l.Token)
		case "users":
			err = mapArg(d, &l.Users)
		case "timeout":
			err = parseDuration(d, &l.Timeout)
		case "cache":
			err = parseDuration(d, &l.Cache)
		default:
			return nil, d.Errf("unknown lookup option %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// UnmarshalCaddyfile sets up the handler:
//
//	pbx_webhook <account> {
//		max_body <size>   # default 64KiB
//	}
func (h *Webhook) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if !d.Args(&h.Account) || d.NextArg() {
		return d.Err("pbx_webhook needs an account name: pbx_webhook <account>")
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body":
			var size string
			if !d.AllArgs(&size) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(size)
			if err != nil || n == 0 {
				return d.Errf("max_body: %q is not a size such as 64KiB", size)
			}
			h.MaxBody = int64(n)
		default:
			return d.Errf("unknown pbx_webhook option %q", d.Val())
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler; it takes no options:
//
//	pbx_health
func (h *Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("pbx_health takes no options")
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
}

func listArg(d *caddyfile.Dispenser, dst *[]string) error {
	*dst = append(*dst, d.RemainingArgs()...)
	if len(*dst) == 0 {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%s: %q is not a positive number", d.Val(), s)
	}
	*dst = n
	return nil
}

// mapArg reads a block of `<key> <value>` lines.
func mapArg(d *caddyfile.Dispenser, dst *map[string]string) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		var value string
		if !d.AllArgs(&value) {
			return d.Errf("%s: one value per line: <key> <value>", key)
		}
		(*dst)[key] = value
	}
	return nil
}

func boolArg(d *caddyfile.Dispenser, dst *bool) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	switch strings.ToLower(s) {
	case "on", "true", "yes":
		*dst = true
	case "off", "false", "no":
		*dst = false
	default:
		return d.Errf("%q is not on or off", s)
	}
	return nil
}

func headerArg(d *caddyfile.Dispenser, h http.Header) error {
	var name, value string
	if !d.AllArgs(&name, &value) {
		return d.Err("header <name> <value>")
	}
	h.Add(name, value)
	return nil
}

func parseDuration[D caddy.Duration | pbx.Duration](d *caddyfile.Dispenser, dst *D) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%q is not a duration such as 10s", s)
	}
	*dst = D(dur)
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Webhook)(nil)
	_ caddyfile.Unmarshaler = (*Health)(nil)
)

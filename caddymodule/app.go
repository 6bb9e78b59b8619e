// Package caddymodule is pbxbridge's Caddy glue: the `pbx` app (accounts, targets, the queue),
// the pbx_webhook and pbx_health handlers, the admin API and the metrics. It is the only
// package that imports Caddy; translation and delivery live in plain packages.
package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
	"github.com/pbxbridge/pbxbridge/recording"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `pbx` app: the PBX accounts, the CRM targets and the durable queue between them.
// Secrets may be given as {env.*} or {file.*} placeholders; they are expanded at provision
// time into unexported fields, so the config JSON keeps the placeholder, never the secret.
type App struct {
	// DataDir holds the embedded JetStream store. Default: Caddy's data dir + /pbxbridge.
	DataDir string `json:"data_dir,omitempty"`
	// MaxStore caps the queue in bytes; when full, webhooks get 503. Default 10 GiB, or a
	// quarter of data_dir's file system if that is smaller.
	MaxStore int64 `json:"max_store,omitempty"`
	// DedupeWindow is how long a PBX re-send of an accepted event is recognised. Default 24h.
	DedupeWindow caddy.Duration `json:"dedupe_window,omitempty"`
	// Region is the ISO 3166 region for phone numbers without a country code. Default RU.
	Region string `json:"region,omitempty"`
	// NATS is an existing NATS JetStream cluster to use instead of the embedded store.
	NATS *NATS `json:"nats,omitempty"`
	// Targets are the CRM endpoints, by name.
	Targets map[string]*Target `json:"targets,omitempty"`
	// Accounts are the PBX accounts by kind (kinds.go) and name. In the JSON each kind is a
	// field of its own: "mango": {"<name>": {…}}.
	Accounts map[string]map[string]pbx.Config `json:"-"`
	// OutboundAllow are the internal networks (CIDRs or addresses) that URLs from a PBX or
	// CRM answer may reach, such as a Mango recording redirect. Default none: such URLs reach
	// only public addresses. Endpoints written in the config are dialed as written.
	OutboundAllow []string `json:"outbound_allow,omitempty"`
	// Tracing exports a span per webhook and per delivery attempt over OTLP, configured by
	// the standard OTEL_* environment variables (docs/tracing.md).
	Tracing bool `json:"tracing,omitempty"`

	ctx      caddy.Context
	logger   *zap.Logger
	accounts map[string]pbx.Account
	targets  []delivery.Target
	grace    time.Duration
	natsTLS  *tls.Config
	outbound *outbound.Policy
	tracer   trace.Tracer                     // nil while tracing is off
	engine   *atomic.Pointer[delivery.Engine] // set by Start; handlers answer 503 until then
	started  chan struct{}                    // closed when Start has returned
	// recordingLinks is set by this config's pbx_recordings handler, if it has a public_url.
	recordingLinks *recording.Links
	// connectors are the targets' CRM connectors, by target name.
	connectors map[string]crm.Connector
}

// NATS is an existing NATS JetStream cluster that holds the queue, so that several gateways
// can share it.
type NATS struct {
	URLs []string `json:"urls"`
	// Creds is a NATS credentials file (JWT and NKey seed).
	Creds string   `json:"creds,omitempty"`
	TLS   *NATSTLS `json:"tls,omitempty"`
	// Replicas of every stream, consumer and bucket: 3 for a 3-node cluster. Default 1.
	Replicas int `json:"replicas,omitempty"`
	// Prefix names the streams, subjects and buckets, so that several gateway groups can
	// share one cluster. Default "pbx".
	Prefix string `json:"prefix,omitempty"`
}

// NATSTLS secures the connection to NATS. Present (even empty), it requires TLS.
type NATSTLS struct {
	// CA is a PEM file of the authorities that sign the servers' certificates. Default: the
	// system's.
	CA string `json:"ca,omitempty"`
	// Cert and Key are a PEM client certificate and its key, for servers that verify
	// clients. They are read at each connection, so a renewed certificate is used from the
	// next reconnect.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName is checked in the servers' certificates instead of the URL's host.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// config builds the client's TLS configuration, checking that the files can be read.
func (t *NATSTLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate in it", t.CA)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, errors.New("cert and key go together")
	}
	if t.Cert != "" {
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			return nil, fmt.Errorf("cert %s, key %s: %w", t.Cert, t.Key, err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
			return &pair, err
		}
	}
	return cfg, nil
}

// Target is a CRM endpoint: a webhook, or a CRM's own API through a connector (crmkinds.go).
type Target struct {
	URL string `json:"url"`
	// Kind is the CRM connector (bitrix24, amocrm); empty for a webhook.
	Kind string `json:"kind,omitempty"`
	// Connector holds the kind's own options.
	Connector json.RawMessage `json:"connector,omitempty"`
	// Format is cloudevents (default), cloudevents-binary or jq.
	Format string `json:"format,omitempty"`
	// JQ is the jq program of format jq.
	JQ string `json:"jq,omitempty"`
	// Events are type globs to deliver; default every type.
	Events []string `json:"events,omitempty"`
	// Secrets are Standard Webhooks secrets (whsec_…); two while rotating.
	Secrets     []string       `json:"secrets,omitempty"`
	Headers     http.Header    `json:"headers,omitempty"`
	Timeout     caddy.Duration `json:"timeout,omitempty"`
	Concurrency int            `json:"concurrency,omitempty"`
	// Raw includes the PBX payload in data.raw.
	Raw   bool   `json:"raw,omitempty"`
	Retry *Retry `json:"retry,omitempty"`
	// DeadStatus are the HTTP statuses that dead-letter an event at once. Default 400 413 415 422.
	DeadStatus []int `json:"dead_status,omitempty"`
}

// Retry is a target's retry policy.
type Retry struct {
	BackoffMin caddy.Duration `json:"backoff_min,omitempty"`
	BackoffMax caddy.Duration `json:"backoff_max,omitempty"`
	MaxAge     caddy.Duration `json:"max_age,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "pbx",
		New: func() caddy.Module { return new(App) },
	}
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Provision expands secrets, checks the configuration and prepares the runtime settings. It
// starts nothing: `caddy validate` provisions without touching the store.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.engine = new(atomic.Pointer[delivery.Engine])
	a.started = make(chan struct{})
	registerMetrics(ctx.GetMetricsRegistry())
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "pbxbridge")
	}
	if a.Region == "" {
		a.Region = event.DefaultRegion
	}
	var err error
	if a.NATS != nil && a.NATS.TLS != nil {
		if a.natsTLS, err = a.NATS.TLS.config(); err != nil {
			return fmt.Errorf("nats tls: %w", err)
		}
	}
	if a.outbound, err = outbound.NewPolicy(a.OutboundAllow); err != nil {
		return fmt.Errorf("outbound_allow: %w", err)
	}
	if err := a.provisionTracer(); err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	repl := caddy.NewReplacer()
	if err := a.provisionTargets(repl); err != nil {
		return err
	}
	if err := a.provisionAccounts(repl); err != nil {
		return err
	}
	return a.provisionConnectors(repl)
}

func (a *App) provisionTargets(repl *caddy.Replacer) error {
	a.targets = nil
	for _, name := range sortedKeys(a.Targets) {
		t := a.Targets[name]
		if !namePattern.MatchString(name) {
			return fmt.Errorf("target %q: names are letters, digits, - and _", name)
		}
		if t == nil {
			return fmt.Errorf("target %s: empty", name)
		}
		rawURL := repl.ReplaceKnown(t.URL, "")
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("target %s: url must be an http:// or https:// URL", name)
		}
		format, err := delivery.NewFormat(t.Format, t.JQ, t.Raw)
		if err != nil {
			return fmt.Errorf("target %s: format: %w", name, err)
		}
		dt := delivery.Target{
			Name:        name,
			URL:         rawURL,
			Format:      format,
			Header:      http.Header{},
			Timeout:     time.Duration(t.Timeout),
			Concurrency: t.Concurrency,
			DeadStatus:  t.DeadStatus,
			Events:      t.Events,
			UserAgent:   outbound.UserAgent(),
		}
		for k, vs := range t.Headers {
			for _, v := range vs {
				dt.Header.Add(k, repl.ReplaceKnown(v, ""))
			}
		}
		if len(t.Secrets) > 0 {
			secrets := make([]string, len(t.Secrets))
			for i, s := range t.Secrets {
				secrets[i] = repl.ReplaceKnown(s, "")
			}
			if dt.Signer, err = delivery.NewSigner(secrets); err != nil {
				return fmt.Errorf("target %s: secret: %w", name, err)
			}
		}
		if t.Retry != nil {
			dt.BackoffMin = time.Duration(t.Retry.BackoffMin)
			dt.BackoffMax = time.Duration(t.Retry.BackoffMax)
			dt.MaxAge = time.Duration(t.Retry.MaxAge)
		}
		for _, ev := range t.Events {
			if !validEventGlob(ev) {
				return fmt.Errorf("target %s: events %q matches no event type (types: %s)", name, ev, strings.Join(event.Types, ", "))
			}
		}
		a.targets = append(a.targets, dt)
	}
	return nil
}

// validEventGlob accepts `*`, `>` and globs of two tokens that match at least one type.
func validEventGlob(glob string) bool {
	if glob == "*" || glob == ">" {
		return true
	}
	g := strings.Split(glob, ".")
	if len(g) != 2 {
		return false
	}
	for _, typ := range event.Types {
		t := strings.Split(typ, ".")
		if (g[0] == "*" || g[0] == t[0]) && (g[1] == "*" || g[1] == t[1]) {
			return true
		}
	}
	return false
}

// Validate is checked by Caddy after Provision.
func (a *App) Validate() error {
	if a.NATS == nil {
		return nil
	}
	if len(a.NATS.URLs) == 0 {
		return errors.New("nats: at least one URL")
	}
	if a.NATS.Prefix != "" && !namePattern.MatchString(a.NATS.Prefix) {
		return fmt.Errorf("nats prefix %q: letters, digits, - and _", a.NATS.Prefix)
	}
	if a.NATS.Replicas > 5 {
		return fmt.Errorf("nats replicas %d: JetStream keeps at most 5", a.NATS.Replicas)
	}
	return nil
}

// engines holds the queue engine across config reloads, keyed by store: Caddy starts the new
// config before it stops the old, so both refer to one embedded server and one dispatcher per
// target.
var engines = caddy.NewUsagePool()

type pooledEngine struct {
	*delivery.Engine
	grace time.Duration
}

// Destruct runs when the last config using the store stops: in-flight deliveries may finish
// within the grace period, held events are redelivered after restart.
func (p *pooledEngine) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.grace)
	defer cancel()
	return p.Close(ctx)
}

// poolKey names the store. With NATS it is the whole connection config: a reload that changes
// credentials or TLS connects anew.
func (a *App) poolKey() string {
	if a.NATS != nil {
		conn, _ := json.Marshal(a.NATS)
		return "nats:" + string(conn)
	}
	return "dir:" + a.DataDir
}

func (a *App) storeConfig() delivery.Config {
	cfg := delivery.Config{DataDir: a.DataDir, MaxStore: a.MaxStore, DedupeWindow: time.Duration(a.DedupeWindow), Tracer: a.tracer}
	if a.NATS != nil {
		cfg.NATS = &delivery.NATSConfig{URLs: a.NATS.URLs, Creds: a.NATS.Creds, TLS: a.natsTLS, Replicas: a.NATS.Replicas}
		cfg.Prefix = a.NATS.Prefix
	}
	return cfg
}

// Start opens the store (or takes it over from the previous config) and applies this
// config's targets.
func (a *App) Start() error {
	defer close(a.started)
	// Looked up here, not in Provision: the http app provisions our handlers, which provision
	// this app, so asking for it from Provision would recurse.
	a.grace = 10 * time.Second
	if httpApp, err := a.ctx.AppIfConfigured("http"); err == nil {
		if err := checkWebhookPaths(httpApp.(*caddyhttp.App)); err != nil {
			return err
		}
		if g := time.Duration(httpApp.(*caddyhttp.App).GracePeriod); g > 0 {
			a.grace = g
		}
	}
	if len(a.targets) == 0 {
		a.logger.Warn("no targets configured: webhooks will be answered 503 until one is")
		return nil
	}
	val, _, err := engines.LoadOrNew(a.poolKey(), func() (caddy.Destructor, error) {
		eng, err := delivery.Open(a.storeConfig(), a.logger.Named("queue"))
		if err != nil {
			return nil, err
		}
		return &pooledEngine{Engine: eng, grace: a.grace}, nil
	})
	if err != nil {
		return err
	}
	pe := val.(*pooledEngine)
	pe.grace = a.grace
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pe.Apply(ctx, a.storeConfig(), a.targets); err != nil {
		_, _ = engines.Delete(a.poolKey())
		return fmt.Errorf("queue: %w", err)
	}
	a.engine.Store(pe.Engine)
	a.logger.Info("queue ready", zap.String("store", a.poolKey()), zap.Int("targets", len(a.targets)))
	return nil
}

// currentEngine is the engine this config started, or, while a reload starts it, the one the
// previous config runs on the same store: webhooks are not refused during a reload. Enqueue
// itself refuses events of accounts no target takes yet.
func (a *App) currentEngine() *delivery.Engine {
	if eng := a.engine.Load(); eng != nil {
		return eng
	}
	var eng *delivery.Engine
	key := a.poolKey()
	engines.Range(func(k, v any) bool {
		if k == key {
			eng = v.(*pooledEngine).Engine
			return false
		}
		return true
	})
	return eng
}

// readyEngine is currentEngine, held until this config's queue has started or ctx is done
// when no running queue can take the request yet: Caddy may open the listeners before it
// starts the pbx app, and the first webhook then waits (within its durable-write budget)
// rather than being refused. A running queue is returned at once, also during a reload.
func (a *App) readyEngine(ctx context.Context) *delivery.Engine {
	if eng := a.currentEngine(); eng != nil && eng.Ready() {
		return eng
	}
	select {
	case <-a.started:
	case <-ctx.Done():
	}
	return a.currentEngine()
}

// Stop releases this config's hold on the store; the store closes when no config holds it.
func (a *App) Stop() error {
	flushTraces()
	for _, conn := range a.connectors {
		if c, ok := conn.(io.Closer); ok {
			_ = c.Close()
		}
	}
	if a.engine.Swap(nil) == nil {
		return nil
	}
	_, err := engines.Delete(a.poolKey())
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
	_ caddy.Destructor  = (*pooledEngine)(nil)
)

// Package chaos proves the reliability rules of docs/delivery.md together, through the built
// binary: mixed Mango and XVB load against several targets while the gateway is killed and
// reloaded, the CRMs go down, come back slow and recover, and the store fills up; hostile input of
// every shape; and, after each test, a scan of everything the gateway exposes for every configured
// secret.
//
// `go test ./chaos` runs the short form (under two minutes); `-chaos.long` or
// PBXBRIDGE_CHAOS_LONG=1 runs the long form (10+ minutes, many more calls and faults).
package chaos

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

var longFlag = flag.Bool("chaos.long", false, "run the long form of the chaos suite (10+ minutes)")

// long reports whether the long form runs.
func long() bool { return *longFlag || os.Getenv("PBXBRIDGE_CHAOS_LONG") == "1" }

const (
	formType      = "application/x-www-form-urlencoded"
	xvbAccessCode = "10019"
)

// Every secret the chaos gateway is configured with, each through {env.NAME}. None may appear
// in the gateway's log, /config/, the autosave file, the metrics or a delivered body.
var (
	mangoKey       = "chaos-mango-api-key-4f1c2a9e7b3d5c60"
	mangoSalt      = "chaos-mango-api-salt-8e2b6d0f1a3c5e79"
	xvbKey         = "chaos-xvb-webhook-key-1d3f5b7a9c0e2468"
	xvbToken       = "chaos-xvb-api-token-a7c9e1b3d5f70246"
	crmToken       = "chaos-crm-bearer-token-6b8d0f2a4c6e8135"
	lookupToken    = "chaos-lookup-token-3e5a7c9b1d2f4680"
	commandToken   = "chaos-command-token-9f7d5b3a1c0e8642"
	recordingToken = "chaos-recordings-token-2c4e6a8b0d1f3579"
	crmSigningKey  = "chaos-crm-signing-key-0123456789ab"
	erpSigningKey  = "chaos-erp-signing-key-ba9876543210"
	erpNextKey     = "chaos-erp-next-signing-key-5a5a5a5a"
	crmSecret      = "whsec_" + base64.StdEncoding.EncodeToString([]byte(crmSigningKey))
	erpSecret      = "whsec_" + base64.StdEncoding.EncodeToString([]byte(erpSigningKey))
	erpNextSecret  = "whsec_" + base64.StdEncoding.EncodeToString([]byte(erpNextKey))

	secretEnv = map[string]string{
		"CHAOS_MANGO_KEY":       mangoKey,
		"CHAOS_MANGO_SALT":      mangoSalt,
		"CHAOS_XVB_KEY":         xvbKey,
		"CHAOS_XVB_TOKEN":       xvbToken,
		"CHAOS_CRM_TOKEN":       crmToken,
		"CHAOS_LOOKUP_TOKEN":    lookupToken,
		"CHAOS_COMMAND_TOKEN":   commandToken,
		"CHAOS_RECORDING_TOKEN": recordingToken,
		"CHAOS_CRM_SECRET":      crmSecret,
		"CHAOS_ERP_SECRET":      erpSecret,
		"CHAOS_ERP_NEXT_SECRET": erpNextSecret,
	}
)

// config is what a reload changes. Every variant keeps target timeouts above the slow CRM's
// 2 s and enough concurrency to get through a slow phase.
type config struct {
	maxStore    string
	timeout     string
	concurrency int
	backoff     string
	erpRotating bool // erp signs with its next secret too
	erpRaw      bool
}

var (
	baseConfig  = config{maxStore: "64MiB", timeout: "5s", concurrency: 32, backoff: "50ms 1s", erpRaw: true}
	otherConfig = config{maxStore: "64MiB", timeout: "4s", concurrency: 24, backoff: "100ms 2s", erpRotating: true}
)

// caddyfile is the chaos gateway: debug logging, Caddy's slowloris timeouts, two targets that
// take both accounts, every kind of secret from the environment, the webhook, command,
// recording and health handlers, and the access log filter docs/xvb.md and docs/originate.md
// recommend.
func (c config) caddyfile(crmURL, erpURL, lookupURL string) string {
	target := func(name, url string, options ...string) string {
		return gatewaytest.Block("target "+name+" "+url, slices.Concat(options, []string{
			"timeout " + c.timeout,
			"concurrency " + strconv.Itoa(c.concurrency),
			gatewaytest.Block("retry", "backoff "+c.backoff),
		})...)
	}
	erpSecrets := []string{"secret {env.CHAOS_ERP_SECRET}"}
	if c.erpRotating {
		erpSecrets = append(erpSecrets, "secret {env.CHAOS_ERP_NEXT_SECRET}")
	}
	raw := "raw off"
	if c.erpRaw {
		raw = "raw on"
	}
	return gatewaytest.Caddyfile{
		Global: []string{"debug", gatewaytest.Block("servers", gatewaytest.Block("timeouts", "read_body 2s", "read_header 2s"))},
		PBX: []string{
			"max_store " + c.maxStore,
			target("crm", crmURL, "secret {env.CHAOS_CRM_SECRET}", `header Authorization "Bearer {env.CHAOS_CRM_TOKEN}"`, "raw on"),
			target("erp", erpURL, append(erpSecrets, raw)...),
			gatewaytest.Block("mango office",
				"api_key {env.CHAOS_MANGO_KEY}",
				"api_salt {env.CHAOS_MANGO_SALT}",
				"api_url http://127.0.0.1:1/vpbx",
				"sources 127.0.0.1",
				"forward crm erp"),
			gatewaytest.Block("xvb main",
				"access_code "+xvbAccessCode,
				"secret {env.CHAOS_XVB_KEY}",
				"sources 127.0.0.1",
				"api_url http://127.0.0.1:1/commoncrm/"+xvbAccessCode,
				"token {env.CHAOS_XVB_TOKEN}",
				gatewaytest.Block("lookup "+lookupURL, `header Authorization "Bearer {env.CHAOS_LOOKUP_TOKEN}"`, "timeout 500ms"),
				"forward crm erp"),
		},
		Site: []string{
			gatewaytest.AccessLogWithout("key", "token"),
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /hooks/xvb*", "pbx_webhook main"),
			gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token {env.CHAOS_COMMAND_TOKEN}", "timeout 2s")),
			gatewaytest.Block("route /recordings/*", gatewaytest.Block("pbx_recordings", "token {env.CHAOS_RECORDING_TOKEN}", "public_url {HTTP}/recordings")),
			gatewaytest.Block("route /healthz", "pbx_health"),
		},
	}.String()
}

// harness is a chaos gateway with its CRMs (crm and erp, each behind a front that can fail)
// and the CRM's contact lookup.
type harness struct {
	t        *testing.T
	g        *gatewaytest.Gateway
	crm, erp *front
	lookup   *httptest.Server
}

// start runs the chaos gateway with cfg and scans it for secrets when the test ends.
func start(t *testing.T, cfg config) *harness {
	t.Helper()
	h := &harness{t: t}
	h.crm = newFront(t, gatewaytest.NewCRM(t, nil))
	h.erp = newFront(t, gatewaytest.NewCRM(t, nil))
	h.lookup = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"name":"Chaos Monkey","responsible":"101"}`)
	}))
	t.Cleanup(h.lookup.Close)
	var env []string
	for name, value := range secretEnv {
		env = append(env, name+"="+value)
	}
	h.g = gatewaytest.Start(t, h.caddyfile(cfg), env...)
	t.Cleanup(h.checkSecrets) // before the gateway stops: /config/ and the metrics are read live
	h.g.WaitReady()
	return h
}

func (h *harness) caddyfile(cfg config) string {
	return cfg.caddyfile(h.crm.URL()+"/events", h.erp.URL()+"/events", h.lookup.URL+"/contact")
}

func (h *harness) reload(cfg config) {
	h.t.Helper()
	if err := h.g.Reload(h.caddyfile(cfg)); err != nil {
		h.t.Fatal(err)
	}
}

// xvbURL is the XVB webhook URL with its key, as configured in XVB.
func (h *harness) xvbURL(path string) string { return h.g.URL + path + "?key=" + xvbKey }

// metricSum adds up the series of a metric family whose labels include all of labels
// (`name="value"`), in this gateway process.
func (h *harness) metricSum(family string, labels ...string) float64 {
	return gatewaytest.MetricSum(h.g.MetricsText(), family, labels...)
}

// checkSecrets fails the test if any configured secret (or a signing key it encodes) appears
// in the gateway's log, /config/, the autosave file, the metrics, or a body a CRM received.
func (h *harness) checkSecrets() {
	t := h.t
	places := map[string]string{"log": h.g.Logs()}
	if resp, err := http.Get("http://" + h.g.AdminAddr + "/config/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		places["/config/"] = string(b)
	} else {
		t.Errorf("GET /config/: %v", err)
	}
	autosave, err := os.ReadFile(filepath.Join(h.g.Dir, "xdg-config", "caddy", "autosave.json"))
	if err != nil {
		t.Errorf("autosave file: %v", err)
	}
	places["autosave.json"] = string(autosave)
	if resp, err := http.Get(h.g.Metrics); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		places["metrics"] = string(b)
	} else {
		t.Errorf("metrics: %v", err)
	}
	var bodies strings.Builder
	for _, f := range []*front{h.crm, h.erp} {
		for _, d := range f.crm.Requests() {
			bodies.Write(d.Body)
		}
	}
	places["CRM bodies"] = bodies.String()

	for _, where := range []string{"/config/", "autosave.json"} {
		if !strings.Contains(places[where], "{env.CHAOS_MANGO_SALT}") {
			t.Errorf("%s lacks the placeholder {env.CHAOS_MANGO_SALT}: the scan looks at the wrong thing", where)
		}
	}
	secrets := map[string]string{"crm signing key": crmSigningKey, "erp signing key": erpSigningKey, "erp next signing key": erpNextKey}
	for name, value := range secretEnv {
		secrets[name] = value
	}
	for where, text := range places {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("secret %s appears in %s", name, where)
			}
		}
	}
	t.Logf("secret scan: %d secrets in %d bytes of log, /config/, autosave.json, metrics and %d bytes of CRM bodies",
		len(secrets), len(places["log"]), len(places["CRM bodies"]))
}

// front stands at a CRM's address: it passes requests to a CRM stand-in and can be down
// (connections refused, open ones cut) or slow (each request waits before the CRM sees it),
// and come back on the same address.
type front struct {
	t     *testing.T
	crm   *gatewaytest.CRM
	addr  string
	delay atomic.Int64 // nanoseconds each request waits

	mu  sync.Mutex
	srv *http.Server // nil while down
}

func newFront(t *testing.T, crm *gatewaytest.CRM) *front {
	f := &front{t: t, crm: crm, addr: fmt.Sprintf("127.0.0.1:%d", gatewaytest.FreePort(t))}
	f.up()
	t.Cleanup(f.down)
	return f
}

func (f *front) URL() string { return "http://" + f.addr }

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(f.delay.Load()); d > 0 {
		select {
		case <-time.After(d): // the slow CRM: a fault, not synchronisation
		case <-r.Context().Done():
			return
		}
	}
	f.crm.Config.Handler.ServeHTTP(w, r)
}

// up listens again on the same address (no-op when up).
func (f *front) up() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		return
	}
	var l net.Listener
	var err error
	for range 50 { // the port may still be held by the closing listener for a moment
		if l, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Errorf("CRM front %s cannot listen again: %v", f.addr, err)
		return
	}
	f.srv = &http.Server{Handler: f}
	go func() { _ = f.srv.Serve(l) }()
}

// down closes the listener and every open connection (no-op when down).
func (f *front) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		_ = f.srv.Close()
		f.srv = nil
	}
}

func (f *front) slow(d time.Duration) { f.delay.Store(int64(d)) }

// checkSignatures fails the test unless every request the CRM answered 2xx carries a valid
// Standard Webhooks signature by each of secrets (a rotating target signs with every one).
func checkSignatures(t *testing.T, name string, crm *gatewaytest.CRM, secrets ...string) {
	t.Helper()
	bad := 0
	for _, d := range crm.Delivered() {
		var err error
		for _, secret := range secrets {
			if err = d.VerifySignature(secret); err != nil {
				break
			}
		}
		if err != nil {
			if bad++; bad <= 5 {
				t.Errorf("%s: delivery of %s: %v", name, d.Header.Get("webhook-id"), err)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d deliveries with a bad signature", name, bad)
	}
}

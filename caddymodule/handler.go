package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

func init() {
	caddy.RegisterModule(Webhook{})
}

const (
	defaultMaxBody = 64 << 10
	// durableWithin is how long a webhook waits for its durable write before it gets 503:
	// the PBX waits on the answer (and, for XVB ANSWERED, so does the agent's audio).
	durableWithin = 2 * time.Second
	retryAfter    = "5"
)

// Webhook is the pbx_webhook handler: it receives one PBX account's webhooks, checks that
// they are genuine, translates them and answers 200 only once they are on disk.
type Webhook struct {
	// Account is the name of a mango or xvb account of the pbx app.
	Account string `json:"account"`
	// MaxBody is the largest accepted body in bytes. Default 64 KiB.
	MaxBody int64 `json:"max_body,omitempty"`

	app    *App
	acc    *account
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Webhook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_webhook",
		New: func() caddy.Module { return new(Webhook) },
	}
}

// Provision binds the handler to its account.
func (h *Webhook) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBody <= 0 {
		h.MaxBody = defaultMaxBody
	}
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	h.acc = h.app.accounts[h.Account]
	if h.acc == nil {
		return fmt.Errorf("pbx_webhook %s: no mango or xvb account named %q in the pbx global option", h.Account, h.Account)
	}
	return nil
}

// rejection is a refused webhook: its status, metric reason and log message.
type rejection struct {
	status int
	reason string // source|auth|replay|malformed|too_large|unavailable
	msg    string
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	acc := h.acc
	if len(r.TransferEncoding) > 0 {
		// Go lets a chunked Transfer-Encoding override a Content-Length sent with it, and
		// drops the Content-Length, then keeps the connection open: bytes hidden behind the
		// chunked body would be served as a next request (request smuggling). RFC 9112 §6.3
		// says to close the connection after such a request; as the handler cannot tell it
		// from a plain chunked one, every chunked webhook closes (PBXs send Content-Length).
		w.Header().Set("Connection", "close")
	}
	defer func() {
		metrics.ingestDuration.WithLabelValues(acc.pbx, acc.name).Observe(time.Since(start).Seconds())
	}()
	res, rej := h.handle(w, r, acc, start)
	if rej != nil {
		h.reject(w, r, acc, rej)
		return nil
	}
	if res == nil { // answered synchronously (ping, contact lookup)
		return nil
	}
	outcome := "accepted"
	if res.Accepted == 0 && res.Duplicates > 0 {
		outcome = "duplicate"
	}
	metrics.received.WithLabelValues(acc.pbx, acc.name, outcome).Inc()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"`+outcome+`"}`)
	return nil
}

// handle runs the inbound steps of docs/delivery.md (Ingest) in order. It returns the queue's
// result, or a rejection, or neither when it has answered itself.
func (h *Webhook) handle(w http.ResponseWriter, r *http.Request, acc *account, now time.Time) (*delivery.Result, *rejection) {
	ip := clientIP(r)
	if !acc.allows(ip) {
		msg := "source address not allowed for this account"
		if lenient(r) {
			msg += " (from a trusted proxy without trusted_proxies_strict, the right-most X-Forwarded-For address counts; behind a chain of proxies set trusted_proxies_strict)"
		}
		return nil, &rejection{http.StatusForbidden, "source", msg}
	}
	if suffix, known := mango.Route(r.URL.Path); acc.pbx == "mango" && known && mango.IsPing(suffix) {
		// The cabinet's connection test: 200 whether signed or not, nothing queued.
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
		return nil, nil
	}
	if r.Method != http.MethodPost {
		return nil, &rejection{http.StatusMethodNotAllowed, "malformed", "method " + r.Method + " not allowed; PBXs POST"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &rejection{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", h.MaxBody)}
		}
		return nil, &rejection{http.StatusBadRequest, "malformed", "reading body: " + err.Error()}
	}
	// The store's part (call correlation, the durable write) has one budget: the PBX waits.
	ctx, cancel := context.WithTimeout(r.Context(), durableWithin)
	defer cancel()
	var events []event.Event
	switch acc.pbx {
	case "mango":
		var rej *rejection
		if events, rej = h.mango(r, acc, body, now); rej != nil {
			return nil, rej
		}
	case "xvb":
		var rej *rejection
		var answered bool
		var noted func()
		if events, noted, answered, rej = h.xvb(ctx, w, r, acc, body, now); rej != nil || answered {
			return nil, rej
		}
		defer noted() // written while the events are made durable: the answer waits for both
	}
	h.app.linkRecordings(events, now)
	eng := h.app.readyEngine(ctx)
	if eng == nil {
		return nil, &rejection{http.StatusServiceUnavailable, "unavailable", "queue not started yet"}
	}
	res, err := eng.Enqueue(ctx, events)
	if err != nil {
		return nil, &rejection{http.StatusServiceUnavailable, "unavailable", err.Error()}
	}
	if res.Accepted > 0 {
		for _, ev := range events {
			metrics.events.WithLabelValues(ev.Data.PBX, ev.Type).Inc()
			if ev.Type == event.TypeUnmapped {
				h.logger.Warn("authentic message did not map; forwarded as pbx.unmapped",
					zap.String("account", acc.name), zap.String("event_id", ev.ID), zap.String("error", ev.Data.Error))
			}
		}
	}
	return &res, nil
}

// mango verifies and translates a Mango webhook.
func (h *Webhook) mango(r *http.Request, acc *account, body []byte, now time.Time) ([]event.Event, *rejection) {
	suffix, known := mango.Route(r.URL.Path)
	form, err := mango.ParseForm(body)
	if err != nil {
		return nil, &rejection{http.StatusBadRequest, "malformed", "not a Mango form: " + err.Error()}
	}
	if !mango.Verify(form, acc.apiKey, acc.apiSalt) {
		return nil, &rejection{http.StatusUnauthorized, "auth", "wrong vpbx_api_key or sign"}
	}
	if !known {
		suffix = r.URL.Path
	}
	if err := mango.Check(suffix, []byte(form.JSON), now, acc.staleAfter); err != nil {
		return nil, &rejection{http.StatusBadRequest, "replay", err.Error()}
	}
	return mango.Translate(acc.source, suffix, []byte(form.JSON), now), nil
}

// xvb authenticates an XVB message; a contact lookup is answered here (answered = true). ctx
// bounds the call correlation; noted waits for what noteAnswer writes.
func (h *Webhook) xvb(ctx context.Context, w http.ResponseWriter, r *http.Request, acc *account, body []byte, now time.Time) (events []event.Event, noted func(), answered bool, rej *rejection) {
	fields, recoded, err := xvb.Parse(r.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, nil, false, &rejection{http.StatusBadRequest, "malformed", "not an XVB message: " + err.Error()}
	}
	if !xvb.Authenticate(fields, r.Header.Get("X-XVB-AC"), acc.accessCode) {
		return nil, nil, false, &rejection{http.StatusUnauthorized, "auth", "access_code (or X-XVB-AC) does not match the account"}
	}
	if acc.secret != "" && !secretMatches(r.URL.Query().Get("key"), acc.secret) {
		return nil, nil, false, &rejection{http.StatusUnauthorized, "auth", "missing or wrong ?key= in the webhook URL"}
	}
	if recoded {
		h.logger.Info("XVB message was not UTF-8; decoded as CP1251", zap.String("account", acc.name))
	}
	if fields.IsContact() {
		h.contact(w, r, acc, fields)
		return nil, nil, true, nil
	}
	corr, err := h.correlate(ctx, acc, fields)
	if err != nil {
		return nil, nil, false, &rejection{http.StatusServiceUnavailable, "unavailable", "call correlation: " + err.Error()}
	}
	return xvb.Translate(acc.source, fields, corr, now), h.noteAnswer(r.Context(), acc, fields), false, nil
}

func (h *Webhook) contact(w http.ResponseWriter, r *http.Request, acc *account, fields xvb.Fields) {
	start := time.Now()
	answer, outcome := []byte("{}"), "disabled"
	if acc.lookup != nil {
		answer, outcome = acc.lookup.answer(r.Context(), acc.name, event.Number(fields.Phone(), acc.source.Region))
	}
	metrics.lookups.WithLabelValues(acc.name, outcome).Inc()
	metrics.lookupDuration.WithLabelValues(acc.name).Observe(time.Since(start).Seconds())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(answer)
}

func (h *Webhook) reject(w http.ResponseWriter, r *http.Request, acc *account, rej *rejection) {
	metrics.received.WithLabelValues(acc.pbx, acc.name, "rejected").Inc()
	metrics.rejected.WithLabelValues(acc.pbx, acc.name, rej.reason).Inc()
	level := zap.WarnLevel
	if rej.reason == "unavailable" {
		level = zap.ErrorLevel
		w.Header().Set("Retry-After", retryAfter)
	}
	// The path only: an XVB webhook URL may carry ?key=<secret>.
	h.logger.Log(level, "webhook rejected",
		zap.String("account", acc.name), zap.String("reason", rej.reason), zap.Int("status", rej.status),
		zap.String("error", rej.msg), zap.String("client_ip", clientIP(r).String()), zap.String("path", r.URL.Path))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rej.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": rej.msg, "reason": rej.reason})
}

// clientIP is the address a request came from, the one `sources` is checked against: the
// address Caddy determined, which honours trusted_proxies, so a forged X-Forwarded-For from
// an untrusted peer is not believed. From a trusted proxy, Caddy takes the right-most address
// that is not a trusted proxy when the server has trusted_proxies_strict, but the left-most,
// which the client wrote, without it. Then pbxbridge takes the right-most address instead
// (forwardedBy): what the proxy itself saw and appended.
func clientIP(r *http.Request) netip.Addr {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if lenient(r) {
		srv := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
		if ip := forwardedBy(r.Header, srv.ClientIPHeaders); ip.IsValid() {
			return ip
		}
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// lenient reports whether the request came from a trusted proxy of a server without
// trusted_proxies_strict.
func lenient(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return trusted && srv != nil && srv.TrustedProxiesStrict == 0
}

// forwardedBy is the right-most valid address in the first of headers that has one (all
// values of a header joined, as Caddy reads them), or the zero Addr.
func forwardedBy(h http.Header, headers []string) netip.Addr {
	for _, name := range headers {
		parts := strings.Split(strings.Join(h.Values(name), ","), ",")
		for _, part := range slices.Backward(parts) {
			part = strings.TrimSpace(part)
			if host, _, err := net.SplitHostPort(part); err == nil {
				part = host
			}
			part, _, _ = strings.Cut(part, "%")
			if ip, err := netip.ParseAddr(part); err == nil {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Webhook)(nil)
	_ caddyhttp.MiddlewareHandler = (*Webhook)(nil)
)

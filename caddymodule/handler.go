package caddymodule

import (
	"context"
	"encoding/json"
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
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
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
	// Account is the name of an account of the pbx app.
	Account string `json:"account"`
	// MaxBody is the largest accepted body in bytes. Default 64 KiB.
	MaxBody int64 `json:"max_body,omitempty"`

	app    *App
	acc    pbx.Account
	series webhookSeries
	logger *zap.Logger
}

// webhookSeries are the children a handler updates for every webhook, looked up once: its
// account's labels do not change, and these series are never deleted.
type webhookSeries struct {
	duration            prometheus.Observer
	accepted, duplicate prometheus.Counter
}

func seriesOf(o event.Origin) webhookSeries {
	return webhookSeries{
		duration:  metrics.ingestDuration.WithLabelValues(o.PBX, o.Account),
		accepted:  metrics.received.WithLabelValues(o.PBX, o.Account, "accepted"),
		duplicate: metrics.received.WithLabelValues(o.PBX, o.Account, "duplicate"),
	}
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
	if h.acc = h.app.accounts[h.Account]; h.acc == nil {
		return fmt.Errorf("pbx_webhook %s: no account named %q in the pbx global option (%s)", h.Account, h.Account, kindNames())
	}
	h.series = seriesOf(h.acc.Origin())
	return nil
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	origin := h.acc.Origin()
	if len(r.TransferEncoding) > 0 {
		// Go lets a chunked Transfer-Encoding override a Content-Length sent with it, and
		// drops the Content-Length, then keeps the connection open: bytes hidden behind the
		// chunked body would be served as a next request (request smuggling). RFC 9112 §6.3
		// says to close the connection after such a request; as the handler cannot tell it
		// from a plain chunked one, every chunked webhook closes (PBXs send Content-Length).
		w.Header().Set("Connection", "close")
	}
	defer func() { h.series.duration.Observe(time.Since(start).Seconds()) }()
	r, span := h.app.traceIngest(r, origin)
	res, rej := h.handle(w, r, start)
	if rej != nil {
		span.end("", rej)
		h.reject(w, r, rej)
		return nil
	}
	if res == nil { // answered synchronously (ping, contact lookup)
		span.end("answered", nil)
		return nil
	}
	outcome, counter := "accepted", h.series.accepted
	if res.Accepted == 0 && res.Duplicates > 0 {
		outcome, counter = "duplicate", h.series.duplicate
	}
	span.end(outcome, nil)
	counter.Inc()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"`+outcome+`"}`)
	return nil
}

// handle runs the inbound steps of docs/delivery.md (Ingest) in order. It returns the queue's
// result, or a rejection, or neither when it has answered itself.
func (h *Webhook) handle(w http.ResponseWriter, r *http.Request, now time.Time) (*delivery.Result, *pbx.Rejection) {
	origin := h.acc.Origin()
	if !h.acc.Sources().Allows(clientIP(r)) {
		msg := "source address not allowed for this account"
		if lenient(r) {
			msg += " (from a trusted proxy without trusted_proxies_strict, the right-most X-Forwarded-For address counts; behind a chain of proxies set trusted_proxies_strict)"
		}
		return nil, &pbx.Rejection{Status: http.StatusForbidden, Reason: "source", Msg: msg}
	}
	// The store's part (call correlation, the durable write) has one budget: the PBX waits.
	ctx, cancel := context.WithTimeout(r.Context(), durableWithin)
	defer cancel()
	reply, rej := h.acc.Receive(ctx, &pbx.Inbound{Request: r, Now: now, MaxBody: h.MaxBody})
	if rej != nil {
		return nil, rej
	}
	if reply.Answer != nil {
		contentType := "application/json"
		if reply.Lookup != "" { // a contact's name is Cyrillic more often than not
			contentType += "; charset=utf-8"
			metrics.lookups.WithLabelValues(origin.Account, reply.Lookup).Inc()
			metrics.lookupDuration.WithLabelValues(origin.Account).Observe(time.Since(now).Seconds())
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(reply.Answer)
		return nil, nil
	}
	if reply.Wait != nil {
		defer reply.Wait() // written while the events are made durable: the answer waits for both
	}
	if _, ok := h.acc.(pbx.Recorder); ok {
		h.app.linkRecordings(reply.Events, now)
	}
	eng := h.app.readyEngine(ctx)
	if eng == nil {
		return nil, pbx.Unavailable("queue not started yet")
	}
	carryTrace(ctx, reply.Events)
	res, err := eng.Enqueue(ctx, reply.Events)
	if err != nil {
		return nil, pbx.Unavailable("%v", err)
	}
	if res.Accepted > 0 {
		for _, ev := range reply.Events {
			metrics.events.WithLabelValues(ev.Data.PBX, ev.Type).Inc()
			if ev.Type == event.TypeUnmapped {
				h.logger.Warn("authentic message did not map; forwarded as pbx.unmapped",
					zap.String("account", origin.Account), zap.String("event_id", ev.ID), zap.String("error", ev.Data.Error))
			}
		}
	}
	return &res, nil
}

func (h *Webhook) reject(w http.ResponseWriter, r *http.Request, rej *pbx.Rejection) {
	origin := h.acc.Origin()
	metrics.received.WithLabelValues(origin.PBX, origin.Account, "rejected").Inc()
	metrics.rejected.WithLabelValues(origin.PBX, origin.Account, rej.Reason).Inc()
	level := zap.WarnLevel
	if rej.Reason == "unavailable" {
		level = zap.ErrorLevel
		w.Header().Set("Retry-After", retryAfter)
	}
	// The path only: an XVB webhook URL may carry ?key=<secret>.
	h.logger.Log(level, "webhook rejected",
		zap.String("account", origin.Account), zap.String("reason", rej.Reason), zap.Int("status", rej.Status),
		zap.String("error", rej.Msg), zap.String("client_ip", clientIP(r).String()), zap.String("path", r.URL.Path))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rej.Status)
	if rej.Body != nil {
		_, _ = w.Write(rej.Body)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"error": rej.Msg, "reason": rej.Reason})
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

package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
	"github.com/pbxbridge/pbxbridge/recording"
)

func init() {
	caddy.RegisterModule(Recordings{})
	httpcaddyfile.RegisterHandlerDirective("pbx_recordings", parseHandler[Recordings])
	httpcaddyfile.RegisterDirectiveOrder("pbx_recordings", httpcaddyfile.Before, "respond")
}

const (
	defaultLinkTTL          = 7 * 24 * time.Hour
	defaultRecordingTimeout = 60 * time.Second
	// recordingMaxSize bounds the temporary copy of one recording (hours of MP3).
	recordingMaxSize = 256 << 20
	// recordingRetryAfter is suggested when Mango does not have the recording yet or is down.
	recordingRetryAfter = "30"
	// recordingWait is how long a fetch waits for a recording Mango does not have yet, asking
	// again every recordingPoll. Mango announces a finished recording (/events/recording
	// Completed, which gives the CRM its recording.ready) a little before the file can be
	// downloaded (/events/record/added, the same event, answered duplicate): a CRM that
	// fetches at once, or a listener who clicks at once, gets the file a few seconds late
	// rather than a 404. At most 6 queries, within Mango's 10 a second per account.
	recordingWait = 10 * time.Second
	recordingPoll = 2 * time.Second
)

// Recordings is the pbx_recordings handler: it serves GET <prefix>/<account>/<recording_id> by
// fetching the recording through the PBX's API, so the CRM never holds PBX credentials.
// Only Mango accounts have recordings to fetch (XVB events carry their own record_link).
//
// The file is copied into a temporary file and served from there, so Range and If-Range
// work whatever the PBX's file server does; the copy is removed once served. Mango's
// one-shot file URL is used once and never kept.
type Recordings struct {
	// Token authorizes `Authorization: Bearer <token>`; the key of signed links derives from it.
	Token string `json:"token"`
	// PublicURL is where this handler is reached from outside, e.g.
	// https://pbx.example.com/recordings. When set, Mango recording.ready and call.completed
	// events carry a signed link under it.
	PublicURL string `json:"public_url,omitempty"`
	// LinkTTL is how long a signed link works. Default 7 days.
	LinkTTL caddy.Duration `json:"link_ttl,omitempty"`
	// Timeout bounds one fetch from the PBX, query and file. Default 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	app    *App
	token  string
	links  *recording.Links
	fetch  pbx.RecordingFetch
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Recordings) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_recordings",
		New: func() caddy.Module { return new(Recordings) },
	}
}

// Provision expands the token and public_url and registers the link maker with the pbx app.
func (h *Recordings) Provision(ctx caddy.Context) error {
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	return h.provision(app.(*App), ctx.Logger())
}

func (h *Recordings) provision(app *App, logger *zap.Logger) error {
	h.app, h.logger = app, logger
	repl := caddy.NewReplacer()
	if h.token = repl.ReplaceKnown(h.Token, ""); h.token == "" {
		return errors.New("pbx_recordings: token is required (the CRM sends it as Authorization: Bearer <token>; signed links are keyed on it)")
	}
	publicURL := strings.TrimSuffix(repl.ReplaceKnown(h.PublicURL, ""), "/")
	if publicURL != "" {
		u, err := url.Parse(publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("pbx_recordings: public_url %q must be an http:// or https:// URL without query, where this handler is reached (e.g. https://pbx.example.com/recordings)", publicURL)
		}
	}
	if h.LinkTTL <= 0 {
		h.LinkTTL = caddy.Duration(defaultLinkTTL)
	}
	if h.Timeout <= 0 {
		h.Timeout = caddy.Duration(defaultRecordingTimeout)
	}
	// Mango's 302 is the answer, followed by hand: its target, a one-shot file URL, came from
	// an answer and may reach only what the outbound policy lets such URLs reach.
	h.fetch = pbx.RecordingFetch{API: outbound.Configured(0), Files: app.outbound.Answered(),
		Timeout: time.Duration(h.Timeout), MaxSize: recordingMaxSize, Wait: recordingWait, Poll: recordingPoll}
	h.links = recording.NewLinks(h.token, publicURL, time.Duration(h.LinkTTL))
	if publicURL == "" {
		return nil
	}
	if err := app.setRecordingLinks(h.links); err != nil {
		return fmt.Errorf("pbx_recordings: %w", err)
	}
	return nil
}

func (h *Recordings) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.refuse(w, r, "", http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; GET a recording")
		return nil
	}
	accName, id, err := recordingPath(r.URL)
	if err != nil {
		h.refuse(w, r, "", http.StatusBadRequest, err.Error())
		return nil
	}
	if status, msg := h.authorize(r, accName, id); status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pbxbridge recordings"`)
		}
		h.refuse(w, r, accName, status, msg)
		return nil
	}
	acc := h.app.accounts[accName]
	if acc == nil {
		h.refuse(w, r, accName, http.StatusNotFound, fmt.Sprintf("no account named %q", accName))
		return nil
	}
	recorder, ok := acc.(pbx.Recorder)
	if !ok {
		kind := acc.Origin().PBX
		h.refuse(w, r, accName, http.StatusNotFound, fmt.Sprintf("account %s is %s: pbx_recordings fetches Mango recordings; %s events carry the PBX's own recording link", accName, kind, kind))
		return nil
	}
	if err := recorder.RecordingID(id); err != nil {
		h.refuse(w, r, accName, http.StatusBadRequest, err.Error())
		return nil
	}

	start := time.Now()
	rec, fail := recorder.Recording(r.Context(), id, h.fetch)
	took := time.Since(start)
	metrics.recordingDuration.WithLabelValues(accName).Observe(took.Seconds())
	if fail != nil {
		metrics.recordingFetches.WithLabelValues(accName, fail.Reason).Inc()
		h.fetchFailed(w, r, accName, id, fail, took)
		return nil
	}
	defer rec.Discard()
	metrics.recordingFetches.WithLabelValues(accName, "ok").Inc()
	metrics.recordingBytes.WithLabelValues(accName).Add(float64(rec.Size))
	h.logger.Info("recording fetched", zap.String("account", accName), zap.String("recording_id", id),
		zap.Int64("bytes", rec.Size), zap.Duration("duration", took), zap.String("client_ip", clientIP(r).String()))
	w.Header().Set("Content-Type", rec.ContentType)
	w.Header().Set("ETag", rec.ETag)
	w.Header().Set("Cache-Control", "private")
	http.ServeContent(w, r, "", rec.ModTime, rec.File)
	return nil
}

// recordingPath takes the account and recording id from the last two segments of the path
// as sent: a recording id may contain '/' (it is often base64), which arrives as %2F.
func recordingPath(u *url.URL) (account, id string, err error) {
	segs := strings.Split(u.EscapedPath(), "/")
	if len(segs) >= 3 {
		account, err = url.PathUnescape(segs[len(segs)-2])
		if err == nil {
			id, err = url.PathUnescape(segs[len(segs)-1])
		}
	}
	if err != nil || account == "" || id == "" {
		return "", "", errors.New("the path must end in /<account>/<recording_id>, the id URL-escaped")
	}
	return account, id, nil
}

// authorize checks the bearer token or, without one, the signed link. It returns 0 when the
// request may proceed, else the status (401 without credentials or with a wrong token, 403
// for a bad or expired link) and why.
func (h *Recordings) authorize(r *http.Request, account, id string) (int, string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if !bearerMatches(auth, h.token) {
			return http.StatusUnauthorized, "wrong bearer token"
		}
		return 0, ""
	}
	q := r.URL.Query()
	if !q.Has("sig") && !q.Has("exp") {
		return http.StatusUnauthorized, "credentials required: Authorization: Bearer <token>, or a signed link from a recording event"
	}
	if err := h.links.Check(account, id, q.Get("exp"), q.Get("sig"), time.Now()); err != nil {
		return http.StatusForbidden, err.Error()
	}
	return 0, ""
}

// fetchFailed answers a failed fetch; a client that went away gets nothing.
func (h *Recordings) fetchFailed(w http.ResponseWriter, r *http.Request, account, id string, fail *pbx.Rejection, took time.Duration) {
	level := zap.WarnLevel
	switch fail.Reason {
	case "canceled":
		level = zap.DebugLevel
	case "unavailable", "timeout", "refused", "error":
		level = zap.ErrorLevel
	}
	h.logger.Log(level, "recording fetch failed", zap.String("account", account), zap.String("recording_id", id),
		zap.String("outcome", fail.Reason), zap.Int("status", fail.Status), zap.String("error", fail.Msg),
		zap.Duration("duration", took), zap.String("client_ip", clientIP(r).String()))
	if fail.Reason == "canceled" {
		return
	}
	if fail.Reason == "not_found" || fail.Reason == "unavailable" {
		w.Header().Set("Retry-After", recordingRetryAfter)
	}
	writeRecordingError(w, fail.Status, fail.Msg)
}

// refuse answers a request that does not get as far as a fetch.
func (h *Recordings) refuse(w http.ResponseWriter, r *http.Request, account string, status int, msg string) {
	// The path only: a signed link's query is a credential.
	h.logger.Warn("recording request refused", zap.String("account", account), zap.Int("status", status),
		zap.String("error", msg), zap.String("client_ip", clientIP(r).String()), zap.String("path", r.URL.Path))
	writeRecordingError(w, status, msg)
}

func writeRecordingError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{"error": msg})
}

// UnmarshalCaddyfile sets up the handler:
//
//	pbx_recordings {
//		token      <token>      # required: Authorization: Bearer <token>; also keys the signed links
//		public_url <url>        # where this handler is reached, e.g. https://pbx.example.com/recordings;
//		                        # Mango recording events then carry a signed link under it
//		link_ttl   <duration>   # how long a signed link works; default 7d
//		timeout    <duration>   # one fetch from Mango, query and file; default 60s
//	}
func (h *Recordings) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Err("pbx_recordings takes no arguments, only a block: pbx_recordings { token <token> }")
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "token":
			err = oneArg(d, &h.Token)
		case "public_url":
			err = oneArg(d, &h.PublicURL)
		case "link_ttl":
			err = parseDuration(d, &h.LinkTTL)
		case "timeout":
			err = parseDuration(d, &h.Timeout)
		default:
			return d.Errf("unknown pbx_recordings option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Recordings)(nil)
	_ caddyhttp.MiddlewareHandler = (*Recordings)(nil)
	_ caddyfile.Unmarshaler       = (*Recordings)(nil)
)

package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
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
	// mangoAnswerMax bounds what is read of an API answer that is not the redirect.
	mangoAnswerMax = 64 << 10
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

	app     *App
	token   string
	links   *recordingLinks
	maxSize int64
	wait    time.Duration // recordingWait, shorter in tests
	poll    time.Duration // recordingPoll, shorter in tests
	api     *http.Client  // api_url, as the operator wrote it
	files   *http.Client  // the file URL of Mango's redirect
	logger  *zap.Logger
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
	h.maxSize = recordingMaxSize
	h.wait, h.poll = recordingWait, recordingPoll
	// Mango's 302 is the answer, followed by hand: its target, a one-shot file URL, came from
	// an answer and may reach only what the outbound policy lets such URLs reach.
	h.api, h.files = outbound.Configured(0), app.outbound.Answered()
	h.links = newRecordingLinks(h.token, publicURL, time.Duration(h.LinkTTL))
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
	switch {
	case acc == nil:
		h.refuse(w, r, accName, http.StatusNotFound, fmt.Sprintf("no account named %q", accName))
		return nil
	case acc.pbx != "mango":
		h.refuse(w, r, accName, http.StatusNotFound, fmt.Sprintf("account %s is %s: pbx_recordings fetches Mango recordings; %s events carry the PBX's own recording link", accName, acc.pbx, acc.pbx))
		return nil
	}

	start := time.Now()
	rec, fail := h.fetchWaiting(r.Context(), acc, id)
	took := time.Since(start)
	metrics.recordingDuration.WithLabelValues(acc.name).Observe(took.Seconds())
	if fail != nil {
		metrics.recordingFetches.WithLabelValues(acc.name, fail.reason).Inc()
		h.fetchFailed(w, r, acc, id, fail, took)
		return nil
	}
	defer rec.discard()
	metrics.recordingFetches.WithLabelValues(acc.name, "ok").Inc()
	metrics.recordingBytes.WithLabelValues(acc.name).Add(float64(rec.size))
	h.logger.Info("recording fetched", zap.String("account", acc.name), zap.String("recording_id", id),
		zap.Int64("bytes", rec.size), zap.Duration("duration", took), zap.String("client_ip", clientIP(r).String()))
	w.Header().Set("Content-Type", rec.contentType)
	w.Header().Set("ETag", rec.etag)
	w.Header().Set("Cache-Control", "private")
	http.ServeContent(w, r, "", rec.modTime, rec.file)
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
	switch {
	case err != nil || account == "" || id == "":
		return "", "", errors.New("the path must end in /<account>/<recording_id>, the id URL-escaped")
	case len(id) > mango.MaxIDBytes:
		return "", "", fmt.Errorf("recording id longer than Mango's %d bytes", mango.MaxIDBytes)
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
	if err := h.links.check(account, id, q.Get("exp"), q.Get("sig"), time.Now()); err != nil {
		return http.StatusForbidden, err.Error()
	}
	return 0, ""
}

// recording is a fetched recording in a temporary file.
type recording struct {
	file        *os.File
	size        int64
	contentType string
	etag        string // of the content, so If-Range and If-None-Match hold across fetches
	modTime     time.Time
}

func (rec *recording) discard() {
	rec.file.Close()
	os.Remove(rec.file.Name())
}

// fetchWaiting is fetch, asked again while Mango does not have the recording yet, until
// h.wait has passed (see recordingWait).
func (h *Recordings) fetchWaiting(ctx context.Context, acc *account, id string) (*recording, *rejection) {
	deadline := time.Now().Add(h.wait)
	for {
		rec, fail := h.fetch(ctx, acc, id)
		if fail == nil || fail.reason != "not_found" || time.Until(deadline) < h.poll {
			return rec, fail
		}
		select {
		case <-ctx.Done():
			return nil, &rejection{499, "canceled", "the client went away"}
		case <-time.After(h.poll):
		}
	}
}

// fetch asks Mango for the recording and copies the file its redirect points to into a
// temporary file. A failure comes back as a rejection: the client's status, the metric
// outcome (not_found, unavailable, timeout, refused, too_large, error, canceled) and why.
func (h *Recordings) fetch(clientCtx context.Context, acc *account, id string) (*recording, *rejection) {
	ctx, cancel := context.WithTimeout(clientCtx, time.Duration(h.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, acc.apiURL+"/"+mango.RecordingQueryPath,
		strings.NewReader(mango.RecordingQuery(acc.apiKey, acc.apiSalt, id)))
	if err != nil {
		return nil, &rejection{http.StatusInternalServerError, "error", "api_url: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.api.Do(req)
	if err != nil {
		return nil, h.transportFailure(ctx, clientCtx, "Mango's API", err)
	}
	fileURL, err := resp.Location()
	if resp.StatusCode < 300 || resp.StatusCode > 399 || err != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, mangoAnswerMax))
		resp.Body.Close()
		return nil, mangoRefusal(mango.ReadAnswer(resp.StatusCode, body))
	}
	resp.Body.Close()
	if fileURL.Scheme != "http" && fileURL.Scheme != "https" {
		return nil, &rejection{http.StatusBadGateway, "error", "Mango redirected to a non-HTTP file URL"}
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, fileURL.String(), nil)
	if err != nil {
		return nil, &rejection{http.StatusBadGateway, "error", "Mango's file URL: " + unwrapURLError(err).Error()}
	}
	if resp, err = h.files.Do(req); err != nil {
		return nil, h.transportFailure(ctx, clientCtx, "Mango's file server", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return nil, &rejection{http.StatusBadGateway, "unavailable", fmt.Sprintf("Mango's file server answered HTTP %d", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return nil, &rejection{http.StatusBadGateway, "error", fmt.Sprintf("Mango's file server answered HTTP %d", resp.StatusCode)}
	case resp.ContentLength > h.maxSize:
		return nil, h.tooLarge()
	}
	rec := &recording{contentType: resp.Header.Get("Content-Type")}
	if rec.contentType == "" {
		rec.contentType = "audio/mpeg"
	}
	rec.modTime, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	if rec.file, err = os.CreateTemp("", "pbxbridge-recording-*"); err != nil {
		return nil, &rejection{http.StatusInternalServerError, "error", "temporary file: " + err.Error()}
	}
	sum := sha256.New()
	rec.size, err = io.Copy(io.MultiWriter(rec.file, sum), io.LimitReader(resp.Body, h.maxSize+1))
	switch {
	case err != nil:
		rec.discard()
		return nil, h.transportFailure(ctx, clientCtx, "Mango's file server", err)
	case rec.size > h.maxSize:
		rec.discard()
		return nil, h.tooLarge()
	}
	rec.etag = `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`
	return rec, nil
}

func (h *Recordings) tooLarge() *rejection {
	return &rejection{http.StatusBadGateway, "too_large", fmt.Sprintf("the recording is larger than %d MiB", h.maxSize>>20)}
}

// transportFailure says why talking to Mango failed: the client left, the timeout passed, or
// Mango could not be reached. The URL is left out: the file URL is a one-shot credential.
func (h *Recordings) transportFailure(ctx, clientCtx context.Context, what string, err error) *rejection {
	switch {
	case clientCtx.Err() != nil:
		return &rejection{499, "canceled", "the client went away"}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &rejection{http.StatusGatewayTimeout, "timeout", fmt.Sprintf("%s took longer than %s", what, time.Duration(h.Timeout))}
	case errors.Is(err, outbound.ErrInternal):
		if oe := (*net.OpError)(nil); errors.As(err, &oe) {
			err = oe.Err // the policy's reason, without the dial's wording
		}
		return &rejection{http.StatusBadGateway, "error", "Mango redirected to a file URL pbxbridge does not fetch: " + err.Error()}
	}
	return &rejection{http.StatusBadGateway, "unavailable", what + " is unreachable: " + unwrapURLError(err).Error()}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// mangoRefusal maps Mango's answer other than the redirect to what the client sees: 404 for a
// missing recording, else the status commands get for the same answer (mango.Answer.Status).
func mangoRefusal(a mango.Answer) *rejection {
	if a.RecordingMissing() {
		return &rejection{http.StatusNotFound, "not_found", "Mango has no such recording, or not yet: a recording can be downloaded only after Mango has stored it (its record/added event); try again later"}
	}
	status, msg := a.Status(), fmt.Sprintf("Mango's answer (HTTP %d, result %d): %s", a.HTTPStatus, a.Code, a.Meaning())
	if status == http.StatusOK {
		return &rejection{http.StatusBadGateway, "error", fmt.Sprintf("Mango answered HTTP %d (result %d) without redirecting to the file", a.HTTPStatus, a.Code)}
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || a.HTTPStatus >= 500 {
		return &rejection{status, "unavailable", msg}
	}
	return &rejection{status, "refused", msg}
}

// fetchFailed answers a failed fetch; a client that went away gets nothing.
func (h *Recordings) fetchFailed(w http.ResponseWriter, r *http.Request, acc *account, id string, fail *rejection, took time.Duration) {
	level := zap.WarnLevel
	switch fail.reason {
	case "canceled":
		level = zap.DebugLevel
	case "unavailable", "timeout", "refused", "error":
		level = zap.ErrorLevel
	}
	h.logger.Log(level, "recording fetch failed", zap.String("account", acc.name), zap.String("recording_id", id),
		zap.String("outcome", fail.reason), zap.Int("status", fail.status), zap.String("error", fail.msg),
		zap.Duration("duration", took), zap.String("client_ip", clientIP(r).String()))
	if fail.reason == "canceled" {
		return
	}
	if fail.reason == "not_found" || fail.reason == "unavailable" {
		w.Header().Set("Retry-After", recordingRetryAfter)
	}
	writeRecordingError(w, fail.status, fail.msg)
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

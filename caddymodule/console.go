package caddymodule

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/pbxbridge/pbxbridge/pbx"
)

func init() {
	caddy.RegisterModule(Console{})
	httpcaddyfile.RegisterHandlerDirective("pbx_console", parseHandler[Console])
	httpcaddyfile.RegisterDirectiveOrder("pbx_console", httpcaddyfile.Before, "respond")
}

//go:embed console
var consoleFiles embed.FS

const (
	// consoleSessionTTL is how long a console login lasts.
	consoleSessionTTL = 12 * time.Hour
	// consoleStatusEvery is how often the page's live view is updated.
	consoleStatusEvery = 2 * time.Second
	// consoleLiveFor bounds one live stream; the page's EventSource then connects again.
	consoleLiveFor = 5 * time.Minute
	// consoleMinToken is the shortest token accepted: the console is an operator's full
	// control of the queue.
	consoleMinToken = 16
	consoleCookie   = "pbx_console"
)

// Console is the pbx_console handler: an operator's page in the browser over the admin API
// (docs/console.md). Everything it does goes through servePBX, the admin API's own code.
type Console struct {
	// Token is what an operator types once to log in (or sends as Authorization: Bearer).
	Token string `json:"token,omitempty"`
	// GuardedBy says that Caddy's authentication before this handler guards it instead:
	// "basic_auth" (checked: the request must carry its authenticated user) or
	// "forward_auth" (trusted as configured).
	GuardedBy string `json:"guarded_by,omitempty"`

	app         *App
	token       string
	crossOrigin *http.CrossOriginProtection
	shutdowns   *serverShutdowns
}

// serverShutdowns are, per server, channels closed when it begins to shut down (see stopping).
type serverShutdowns struct {
	mu sync.Mutex
	m  map[*http.Server]chan struct{}
}

// CaddyModule returns the Caddy module information.
func (Console) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_console",
		New: func() caddy.Module { return new(Console) },
	}
}

// Provision refuses a console that nothing guards.
func (h *Console) Provision(ctx caddy.Context) error {
	if err := h.provisionAuth(); err != nil {
		return err
	}
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	return nil
}

func (h *Console) provisionAuth() error {
	h.token = caddy.NewReplacer().ReplaceKnown(h.Token, "")
	switch {
	case h.Token != "" && h.GuardedBy != "":
		return errors.New("pbx_console: token and guarded_by are two ways to guard it: give one")
	case h.GuardedBy != "" && h.GuardedBy != "basic_auth" && h.GuardedBy != "forward_auth":
		return fmt.Errorf("pbx_console: guarded_by %q: want basic_auth or forward_auth", h.GuardedBy)
	case h.GuardedBy == "" && len(h.token) < consoleMinToken:
		return fmt.Errorf("pbx_console: needs an auth method: token <at least %d characters>, or guarded_by basic_auth|forward_auth with that directive before it", consoleMinToken)
	}
	h.crossOrigin = http.NewCrossOriginProtection()
	h.shutdowns = &serverShutdowns{m: map[*http.Server]chan struct{}{}}
	return nil
}

func (h *Console) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
	// Every console URL is <base>/ (the page) or <base>/-/<what>, so that the handler works
	// under any route without knowing its prefix.
	base, rel, ok := strings.Cut(r.URL.Path, "/-/")
	if !ok && !strings.HasSuffix(base, "/") {
		return consoleError(w, http.StatusNotFound, "not found")
	}
	base = strings.TrimSuffix(base, "/") + "/"
	if err := h.crossOrigin.Check(r); err != nil {
		return consoleError(w, http.StatusForbidden, "cross-origin request refused")
	}
	switch {
	case rel == "app.js" || rel == "console.css":
		return serveConsoleFile(w, r, rel)
	case rel == "login" && r.Method == http.MethodPost && h.token != "":
		return h.login(w, r, base)
	case rel == "logout" && r.Method == http.MethodPost:
		http.SetCookie(w, &http.Cookie{Name: consoleCookie, Path: base, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, base, http.StatusSeeOther)
		return nil
	}
	by, authorized := h.authorized(r)
	if !authorized {
		if !ok && h.token != "" {
			return serveLogin(w, r.URL.Query().Get("login") == "failed")
		}
		return consoleError(w, http.StatusUnauthorized, "log in to the console")
	}
	switch {
	case !ok && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return serveConsoleFile(w, r, "index.html")
	case rel == "live" && r.Method == http.MethodGet:
		return h.live(w, r)
	case strings.HasPrefix(rel, "api/pbx/"):
		err := servePBX(w, r, h.app, strings.TrimPrefix(rel, "api/pbx/"), by)
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) {
			return consoleError(w, apiErr.HTTPStatus, apiErr.Err.Error())
		}
		return err
	}
	return consoleError(w, http.StatusNotFound, "not found")
}

// authorized checks the request's credentials and names its caller for the audit log.
func (h *Console) authorized(r *http.Request) (caller, bool) {
	by := caller{via: "console"}
	switch h.GuardedBy {
	case "basic_auth":
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl == nil {
			return by, false
		}
		by.user, _ = repl.GetString("http.auth.user.id")
		return by, by.user != ""
	case "forward_auth":
		return by, true
	}
	if bearerMatches(r.Header.Get("Authorization"), h.token) {
		return by, true
	}
	c, err := r.Cookie(consoleCookie)
	return by, err == nil && h.validSession(c.Value, time.Now())
}

// login checks the typed token and starts a session: a cookie that holds an expiry signed
// with the token, never the token itself.
func (h *Console) login(w http.ResponseWriter, r *http.Request, base string) error {
	if !pbx.SecretMatches(r.PostFormValue("token"), h.token) {
		// To the page, whose relative links the login form's own URL would break.
		http.Redirect(w, r, base+"?login=failed", http.StatusSeeOther)
		return nil
	}
	http.SetCookie(w, &http.Cookie{
		Name:     consoleCookie,
		Value:    h.session(time.Now().Add(consoleSessionTTL)),
		Path:     base,
		MaxAge:   int(consoleSessionTTL.Seconds()),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, base, http.StatusSeeOther)
	return nil
}

func (h *Console) session(expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + h.sessionMAC(exp)
}

func (h *Console) sessionMAC(exp string) string {
	mac := hmac.New(sha256.New, []byte(h.token))
	mac.Write([]byte("pbx_console session " + exp))
	return hex.EncodeToString(mac.Sum(nil))
}

func (h *Console) validSession(value string, now time.Time) bool {
	exp, mac, ok := strings.Cut(value, ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	return ok && err == nil && now.Unix() < unix && hmac.Equal([]byte(mac), []byte(h.sessionMAC(exp)))
}

// live streams the queue's status as server-sent events until the page goes away, the
// server shuts down or consoleLiveFor has passed.
func (h *Console) live(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	tick := time.NewTicker(consoleStatusEvery)
	defer tick.Stop()
	end := time.After(consoleLiveFor)
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	stopping := h.stopping(srv)
	fmt.Fprintf(w, "retry: %d\n\n", consoleStatusEvery.Milliseconds())
	for {
		data, err := h.status(r)
		if err != nil {
			data, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", data); err != nil {
			return nil // the page went away
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-stopping:
			return nil
		case <-end:
			return nil
		case <-tick.C:
		}
	}
}

// stopping is closed when srv begins to shut down. A shutdown, which a config reload is too,
// waits for every request to end: a live stream must end then, not hold up the reload.
func (h *Console) stopping(srv *http.Server) <-chan struct{} {
	if srv == nil {
		return nil
	}
	h.shutdowns.mu.Lock()
	defer h.shutdowns.mu.Unlock()
	ch, ok := h.shutdowns.m[srv]
	if !ok {
		ch = make(chan struct{})
		srv.RegisterOnShutdown(func() { close(ch) })
		h.shutdowns.m[srv] = ch
	}
	return ch
}

func (h *Console) status(r *http.Request) ([]byte, error) {
	eng := h.app.currentEngine()
	if eng == nil {
		return nil, errors.New("the queue is not running")
	}
	st, err := eng.Status(r.Context())
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

func serveConsoleFile(w http.ResponseWriter, r *http.Request, name string) error {
	body, err := consoleFiles.ReadFile("console/" + name)
	if err != nil {
		return err
	}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8"}
	w.Header().Set("Content-Type", types[name[strings.LastIndex(name, "."):]])
	if r.Method != http.MethodHead {
		_, err = w.Write(body)
	}
	return err
}

// serveLogin answers 401 with the login form, saying so after a wrong token.
func serveLogin(w http.ResponseWriter, failed bool) error {
	page, err := consoleFiles.ReadFile("console/login.html")
	if err != nil {
		return err
	}
	if failed {
		page = bytes.Replace(page, []byte(`<p id="failed" hidden>`), []byte(`<p id="failed">`), 1)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, err = w.Write(page)
	return err
}

func consoleError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// UnmarshalCaddyfile reads the pbx_console directive; it needs one auth method:
//
//	pbx_console {
//		token <token>                          # at least 16 characters; typed once to log in
//	}
//
//	pbx_console {
//		guarded_by basic_auth | forward_auth   # that directive comes before it in the route
//	}
func (h *Console) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.Err("pbx_console takes no arguments, only a block: pbx_console { token <token> }")
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "token":
			err = oneArg(d, &h.Token)
		case "guarded_by":
			err = oneArg(d, &h.GuardedBy)
		default:
			return d.Errf("unknown pbx_console option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Console)(nil)
	_ caddyhttp.MiddlewareHandler = (*Console)(nil)
	_ caddyfile.Unmarshaler       = (*Console)(nil)
)

package caddymodule

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const consoleTestToken = "console-token-0123456789"

func TestConsoleCaddyfile(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Console
	}{
		{"pbx_console {\n token {env.CONSOLE_TOKEN}\n}", Console{Token: "{env.CONSOLE_TOKEN}"}},
		{"pbx_console {\n guarded_by basic_auth\n}", Console{GuardedBy: "basic_auth"}},
	} {
		var h Console
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in)); err != nil {
			t.Errorf("%q: %v", c.in, err)
		} else if h.Token != c.want.Token || h.GuardedBy != c.want.GuardedBy {
			t.Errorf("%q: got %+v, want %+v", c.in, h, c.want)
		}
	}
	for _, bad := range []string{
		"pbx_console secret",
		"pbx_console {\n token\n}",
		"pbx_console {\n token a b\n}",
		"pbx_console {\n password x\n}",
	} {
		var h Console
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("example.com {\n\tpbx_console {\n\t\ttoken t\n\t}\n}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(adapted, []byte(`"handler":"pbx_console","token":"t"`)) {
		t.Errorf("adapted: %s", adapted)
	}
}

// A console nothing guards does not provision.
func TestConsoleProvisionNeedsAuth(t *testing.T) {
	t.Setenv("TEST_CONSOLE_TOKEN", consoleTestToken)
	for _, c := range []struct {
		h  Console
		ok bool
	}{
		{Console{Token: "{env.TEST_CONSOLE_TOKEN}"}, true},
		{Console{GuardedBy: "basic_auth"}, true},
		{Console{GuardedBy: "forward_auth"}, true},
		{Console{}, false},
		{Console{Token: "{env.TEST_CONSOLE_UNSET}"}, false},
		{Console{Token: "short"}, false},
		{Console{GuardedBy: "tls"}, false},
		{Console{Token: consoleTestToken, GuardedBy: "basic_auth"}, false},
	} {
		if err := c.h.provisionAuth(); (err == nil) != c.ok {
			t.Errorf("%+v: provision error %v, want ok=%v", c.h, err, c.ok)
		}
	}
}

func TestConsoleSession(t *testing.T) {
	h := Console{token: consoleTestToken}
	now := time.Unix(1_800_000_000, 0)
	s := h.session(now.Add(time.Hour))
	other := Console{token: consoleTestToken + "x"}
	for _, c := range []struct {
		name, value string
		at          time.Time
		want        bool
	}{
		{"fresh", s, now, true},
		{"expired", s, now.Add(2 * time.Hour), false},
		{"other token", other.session(now.Add(time.Hour)), now, false},
		{"later expiry, old mac", "1900000000" + s[len("1800003600"):], now, false},
		{"the token itself", consoleTestToken, now, false},
		{"empty", "", now, false},
	} {
		if got := h.validSession(c.value, c.at); got != c.want {
			t.Errorf("%s: valid = %v, want %v", c.name, got, c.want)
		}
	}
	if bytes.Contains([]byte(s), []byte(consoleTestToken)) {
		t.Error("the session cookie holds the token")
	}
}

// Requests refused before anything reaches the queue: no credentials, a wrong token, a
// cross-origin request, an unknown path.
func TestConsoleRefuses(t *testing.T) {
	h := Console{Token: consoleTestToken}
	if err := h.provisionAuth(); err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + consoleTestToken
	for _, c := range []struct {
		name, method, path string
		header             []string
		want               int
	}{
		{"page without auth", http.MethodGet, "/console/", nil, http.StatusUnauthorized},
		{"api without auth", http.MethodGet, "/console/-/api/pbx/status", nil, http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "/console/-/api/pbx/status", []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized},
		{"forged cookie", http.MethodGet, "/console/-/live", []string{"Cookie", consoleCookie + "=4000000000.00"}, http.StatusUnauthorized},
		{"cross-site post", http.MethodPost, "/console/-/api/pbx/targets/crm/pause", []string{"Authorization", bearer, "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"other origin post", http.MethodPost, "/console/-/api/pbx/targets/crm/pause", []string{"Authorization", bearer, "Origin", "http://evil.example"}, http.StatusForbidden},
		{"cross-site login", http.MethodPost, "/console/-/login", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"no such path", http.MethodGet, "/console/-/nosuch", []string{"Authorization", bearer}, http.StatusNotFound},
		{"not a directory", http.MethodGet, "/console/index.html", []string{"Authorization", bearer}, http.StatusNotFound},
	} {
		r := httptest.NewRequest(c.method, "http://pbx.example.com"+c.path, nil)
		for i := 0; i+1 < len(c.header); i += 2 {
			r.Header.Set(c.header[i], c.header[i+1])
		}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if w.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body, c.want)
		}
		if csp := w.Header().Get("Content-Security-Policy"); csp == "" {
			t.Errorf("%s: no Content-Security-Policy", c.name)
		}
	}
}

// The assets need no login (the login page uses the style sheet) and hold no data.
func TestConsoleAssets(t *testing.T) {
	h := Console{Token: consoleTestToken}
	if err := h.provisionAuth(); err != nil {
		t.Fatal(err)
	}
	for path, ctype := range map[string]string{"/console/-/app.js": "text/javascript; charset=utf-8", "/console/-/console.css": "text/css; charset=utf-8"} {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil), nil); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype || w.Body.Len() == 0 {
			t.Errorf("%s: %d %q, %d bytes", path, w.Code, w.Header().Get("Content-Type"), w.Body.Len())
		}
	}
	// The page builds every piece of data with textContent (app.js's el), never as HTML.
	js, _ := consoleFiles.ReadFile("console/app.js")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if bytes.Contains(js, []byte(sink)) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}

// guarded_by basic_auth lets through only requests that basic_auth authenticated, and names
// their user for the audit log.
func TestConsoleGuardedByBasicAuth(t *testing.T) {
	h := Console{GuardedBy: "basic_auth"}
	if err := h.provisionAuth(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"operator", http.StatusNotFound}, // let in, to a path that does not exist
	} {
		repl := caddy.NewReplacer()
		if c.user != "" {
			repl.Set("http.auth.user.id", c.user)
		}
		r := httptest.NewRequest(http.MethodGet, "/console/-/nosuch", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.want {
			t.Errorf("user %q: %d, want %d", c.user, w.Code, c.want)
		}
		if by, ok := h.authorized(r); ok != (c.user != "") || by.user != c.user || by.via != "console" {
			t.Errorf("user %q: caller %+v, authorized %v", c.user, by, ok)
		}
	}
}

// Logging in: a wrong token goes back to the form, which says so; the right one sets a session
// cookie that lets the page in.
func TestConsoleLogin(t *testing.T) {
	h := Console{Token: consoleTestToken}
	if err := h.provisionAuth(); err != nil {
		t.Fatal(err)
	}
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		return w
	}
	login := func(token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/ops/console/-/login", strings.NewReader("token="+token))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return serve(r)
	}
	w := login("wrong")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ops/console/?login=failed" || len(w.Result().Cookies()) != 0 {
		t.Errorf("wrong token: %d %v", w.Code, w.Header())
	}
	w = serve(httptest.NewRequest(http.MethodGet, "/ops/console/?login=failed", nil))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `<p id="failed">`) {
		t.Errorf("the form after a wrong token: %d %s", w.Code, w.Body)
	}
	w = login(consoleTestToken)
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ops/console/" || len(cookies) != 1 {
		t.Fatalf("right token: %d %v", w.Code, w.Header())
	}
	if c := cookies[0]; c.Name != consoleCookie || c.Path != "/ops/console/" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, consoleTestToken) {
		t.Errorf("session cookie %+v", c)
	}
	r := httptest.NewRequest(http.MethodGet, "/ops/console/", nil)
	r.AddCookie(cookies[0])
	if w := serve(r); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<script src="-/app.js"`) {
		t.Errorf("the page with the session: %d", w.Code)
	}
}

// Package bitrix24test is a fake Bitrix24 portal and OAuth server for tests, following
// docs/bitrix24.md: the external-telephony methods answer only an application (a webhook gets
// 403 WRONG_AUTH_TYPE), access tokens expire after their lifetime (401 expired_token), a
// refresh returns a new pair and spends the old refresh token, the leaky bucket refuses with
// 503 QUERY_LIMIT_EXCEEDED, batch carries at most 50 commands, a second finish is "Call is not
// found", and attachRecord comes only after the finish. It plays the portal's side too: the
// installation, the uninstall and a click on a number. Its CRM has contacts and companies for
// the contact lookup (lookup/bitrix24.go), asked through the inbound webhook.
package bitrix24test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/bitrix24"
	"github.com/pbxbridge/pbxbridge/crm/crmtest"
)

// Portal is the fake portal and its OAuth server (one server; OAuth under /oauth/).
type Portal struct {
	URL           string // the portal's and the OAuth server's
	Domain        string // host:port, as auth[domain]
	ClientID      string
	ClientSecret  string
	MemberID      string
	WebhookSecret string // the inbound webhook's, in Webhook()

	srv *httptest.Server

	mu            sync.Mutex
	tokenLifetime time.Duration
	rate, burst   float64
	level         float64
	last          time.Time
	appToken      string
	access        map[string]time.Time // access token → expiry
	refresh       map[string]bool
	handlers      map[string]string // event → handler
	lines         []string
	users         map[string]string // ID → UF_PHONE_INNER
	cards         map[string][]card // CONTACT, COMPANY
	delay         time.Duration
	calls         map[string]*Call
	order         []string
	refreshes     int
	refused       map[string]int // error code → count
	requests      int
	batches       []int // commands per batch request
	down          bool
	fetchRecords  bool
	methodLog     []string
	changed       chan struct{} // closed and replaced when a call changes
}

// Call is a call the portal knows.
type Call struct {
	CallID, ExternalCallID, Phone, Type, UserID, Line, StartDate string
	Show, CRMCreate                                              string
	Registrations                                                int // register requests answered with this call
	Finishes                                                     int
	FinishUser, StatusCode                                       string
	Duration                                                     int
	Record                                                       string
	Shown, Hidden                                                []string // users show and hide named
	registered                                                   time.Time
}

// Options set the portal's numbers; zero values take Bitrix24's.
type Options struct {
	TokenLifetime time.Duration // default 1 h
	Rate          float64       // requests drained a second; default 2
	Burst         int           // default 50
	// FetchRecords has attachRecord fetch RECORD_URL, refusing one that does not answer 200.
	FetchRecords bool
	// WebhookSecret is the inbound webhook's secret; default random.
	WebhookSecret string
}

// New starts a portal; it stops with the test.
func New(t testing.TB, opts Options) *Portal {
	p := &Portal{
		ClientID: "local.6543210fedcba.12345678", ClientSecret: randomHex(20), MemberID: randomHex(16),
		tokenLifetime: opts.TokenLifetime, rate: opts.Rate, burst: float64(opts.Burst), fetchRecords: opts.FetchRecords,
		access: map[string]time.Time{}, refresh: map[string]bool{}, handlers: map[string]string{},
		users: map[string]string{"1": ""}, calls: map[string]*Call{}, refused: map[string]int{},
		cards: map[string][]card{}, WebhookSecret: opts.WebhookSecret, changed: make(chan struct{}),
	}
	if p.WebhookSecret == "" {
		p.WebhookSecret = randomHex(8)
	}
	if p.tokenLifetime == 0 {
		p.tokenLifetime = time.Hour
	}
	if p.rate == 0 {
		p.rate = 2
	}
	if p.burst == 0 {
		p.burst = 50
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	p.Domain = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AddUser adds an active employee with an inner phone number.
func (p *Portal) AddUser(id, inner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[id] = inner
}

// Webhook is an inbound webhook's URL for user 1.
func (p *Portal) Webhook() string { return p.URL + "/rest/1/" + p.WebhookSecret + "/" }

// card is a CRM contact (name, lastName) or company (title) with one phone.
type card struct {
	id, name, lastName, title, phone, assignedBy string
}

// AddContact adds a contact with one phone and its responsible user.
func (p *Portal) AddContact(name, lastName, phone, assignedBy string) {
	p.addCard("CONTACT", card{name: name, lastName: lastName, phone: phone, assignedBy: assignedBy})
}

// AddCompany adds a company with one phone and its responsible user.
func (p *Portal) AddCompany(title, phone, assignedBy string) {
	p.addCard("COMPANY", card{title: title, phone: phone, assignedBy: assignedBy})
}

func (p *Portal) addCard(typ string, c card) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.id = strconv.Itoa(100 + len(p.cards["CONTACT"]) + len(p.cards["COMPANY"]))
	p.cards[typ] = append(p.cards[typ], c)
}

// Delay makes every REST answer wait d, as a slow portal's.
func (p *Portal) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetDown makes the portal answer 502 to everything (true) or work again.
func (p *Portal) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// ExpireTokens makes every access token issued so far expired.
func (p *Portal) ExpireTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tok := range p.access {
		p.access[tok] = time.Now().Add(-time.Second)
	}
}

// RevokeRefresh spends every refresh token, as deleting the application does.
func (p *Portal) RevokeRefresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.refresh)
}

// Calls are the registered calls, in the order registered.
func (p *Portal) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, 0, len(p.order))
	for _, id := range p.order {
		c := *p.calls[id]
		c.Shown, c.Hidden = slices.Clone(c.Shown), slices.Clone(c.Hidden)
		out = append(out, c)
	}
	return out
}

// WaitCalls waits until cond holds for the registered calls.
func (p *Portal) WaitCalls(ctx context.Context, cond func([]Call) bool) error {
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if cond(p.Calls()) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitFinished waits until the portal has finished n calls.
func (p *Portal) WaitFinished(ctx context.Context, n int) error {
	return p.WaitCalls(ctx, func(calls []Call) bool {
		done := 0
		for _, c := range calls {
			done += c.Finishes
		}
		return done >= n
	})
}

func (p *Portal) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Stats are what the portal counted.
type Stats struct {
	Requests  int            // HTTP requests to /rest/
	Batches   []int          // commands of each batch request
	Refreshes int            // token refreshes granted
	Refused   map[string]int // error answers by code
	Handlers  map[string]string
	Lines     []string
	Methods   []string // methods run, batched ones included, in order
}

func (p *Portal) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := map[string]string{}
	for k, v := range p.handlers {
		h[k] = v
	}
	r := map[string]int{}
	for k, v := range p.refused {
		r[k] = v
	}
	return Stats{Requests: p.requests, Batches: slices.Clone(p.batches), Refreshes: p.refreshes, Refused: r,
		Handlers: h, Lines: slices.Clone(p.lines), Methods: slices.Clone(p.methodLog)}
}

// ApplicationToken is the installed application's token.
func (p *Portal) ApplicationToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.appToken
}

// newPairLocked issues an access and refresh token.
func (p *Portal) newPairLocked() (string, string) {
	access, refresh := randomHex(16), randomHex(16)
	p.access[access] = time.Now().Add(p.tokenLifetime)
	p.refresh[refresh] = true
	return access, refresh
}

// Install posts the installation callback to installURL, as the portal does when the admin
// saves the local application.
func (p *Portal) Install(ctx context.Context, installURL string) (*http.Response, error) {
	p.mu.Lock()
	auth := p.authLocked()
	auth.AccessToken, auth.RefreshToken = p.newPairLocked()
	auth.ExpiresIn = p.tokenLifetime
	p.mu.Unlock()
	return postForm(ctx, installURL, bitrix24.InstallForm(auth))
}

func (p *Portal) authLocked() bitrix24.Auth {
	if p.appToken == "" {
		p.appToken = randomHex(16)
	}
	return bitrix24.Auth{Domain: p.Domain, MemberID: p.MemberID, ApplicationToken: p.appToken,
		ClientEndpoint: p.URL + "/rest/", ServerEndpoint: p.URL + "/oauth/rest/"}
}

// Uninstall revokes the application's tokens and posts ONAPPUNINSTALL to its handler.
func (p *Portal) Uninstall(ctx context.Context) (*http.Response, error) {
	p.mu.Lock()
	handler := p.handlers["ONAPPUNINSTALL"]
	clear(p.access)
	clear(p.refresh)
	clear(p.handlers)
	auth := p.authLocked()
	p.mu.Unlock()
	if handler == "" {
		return nil, fmt.Errorf("no ONAPPUNINSTALL handler bound")
	}
	return postForm(ctx, handler, bitrix24.UninstallForm(auth))
}

// ClickToCall is an employee clicking a number: the portal registers the call (TYPE 1) and
// posts ONEXTERNALCALLSTART, with appToken ("" for the application's), to the bound handler.
func (p *Portal) ClickToCall(ctx context.Context, userID, phone, line, appToken string) (string, *http.Response, error) {
	p.mu.Lock()
	handler := p.handlers["ONEXTERNALCALLSTART"]
	c := p.registerLocked(url.Values{"USER_ID": {userID}, "PHONE_NUMBER": {phone}, "TYPE": {"1"}, "LINE_NUMBER": {line}})
	auth := p.authLocked()
	p.mu.Unlock()
	if handler == "" {
		return "", nil, fmt.Errorf("no ONEXTERNALCALLSTART handler bound")
	}
	if appToken != "" {
		auth.ApplicationToken = appToken
	}
	resp, err := postForm(ctx, handler, bitrix24.CallStartForm(auth, bitrix24.CallStart{CallID: c.CallID, UserID: userID, Phone: phone, Line: line}))
	return c.CallID, resp, err
}

func postForm(ctx context.Context, target string, form url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// apiErr is an error answer.
type apiErr struct {
	status      int
	code, descr string
}

func errf(status int, code, format string, args ...any) *apiErr {
	return &apiErr{status: status, code: code, descr: fmt.Sprintf(format, args...)}
}

func coreErr(format string, args ...any) *apiErr {
	return errf(http.StatusBadRequest, "ERROR_CORE", format, args...)
}

var webhookPath = regexp.MustCompile(`^/rest/(\d+)/([^/]+)/([^/]+)$`)

// appOnly are the methods that refuse a webhook (docs/bitrix24.md).
var appOnly = []string{"telephony.externalcall.register", "telephony.externalcall.finish",
	"telephony.externalline.add", "telephony.externalline.update", "telephony.externalline.get",
	"telephony.externalline.delete", "event.bind", "event.get", "event.unbind"}

func (p *Portal) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/oauth/token") {
		p.serveToken(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/rest/") {
		http.NotFound(w, r)
		return
	}
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	if !crmtest.Delay(r, delay) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	form, err := readParams(r.Header.Get("Content-Type"), body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "INVALID_REQUEST", "error_description": "Body is not JSON"})
		return
	}
	for k, v := range r.URL.Query() {
		form[k] = v
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if p.down {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
		return
	}
	webhook := false
	method := strings.TrimPrefix(r.URL.Path, "/rest/")
	if m := webhookPath.FindStringSubmatch(r.URL.Path); m != nil {
		if m[1] != "1" || m[2] != p.WebhookSecret {
			p.writeErr(w, errf(http.StatusUnauthorized, "INVALID_CREDENTIALS", "Invalid request credentials"))
			return
		}
		webhook, method = true, m[3]
	}
	method = strings.ToLower(strings.TrimSuffix(method, ".json"))
	if e := p.limitLocked(); e != nil {
		p.writeErr(w, e)
		return
	}
	if !webhook {
		if e := p.authLocked2(form.Get("auth")); e != nil {
			p.writeErr(w, e)
			return
		}
	}
	var result any
	var e *apiErr
	if method == "batch" {
		result, e = p.batchLocked(string(body), webhook)
	} else {
		result, e = p.runLocked(method, form, webhook)
	}
	if e != nil {
		p.writeErr(w, e)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": result, "time": timing()})
}

// readParams reads a request's parameters: a form, or a JSON object as the portal's PHP reads
// it, nested objects and lists as key[sub] fields ({"FILTER": {"ID": 7}} is FILTER[ID]=7).
func readParams(contentType string, body []byte) (url.Values, error) {
	if !strings.HasPrefix(contentType, "application/json") {
		return url.ParseQuery(string(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	form := url.Values{}
	var flatten func(key string, v any)
	flatten = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				flatten(key+"["+k+"]", x)
			}
		case []any:
			for i, x := range v {
				flatten(key+"["+strconv.Itoa(i)+"]", x)
			}
		case nil:
			form.Add(key, "")
		default:
			form.Add(key, fmt.Sprint(v))
		}
	}
	for k, x := range v {
		flatten(k, x)
	}
	return form, nil
}

func timing() map[string]any {
	now := time.Now()
	return map[string]any{"start": float64(now.UnixMicro()) / 1e6, "finish": float64(now.UnixMicro()) / 1e6,
		"duration": 0.001, "processing": 0.001, "date_start": now.Format(time.RFC3339), "date_finish": now.Format(time.RFC3339),
		"operating_reset_at": now.Add(10 * time.Minute).Unix(), "operating": 0}
}

func (p *Portal) writeErr(w http.ResponseWriter, e *apiErr) {
	p.refused[e.code]++
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.descr})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// limitLocked is the portal's leaky bucket: it drains rate a second and refuses a request
// that would take it above burst.
func (p *Portal) limitLocked() *apiErr {
	now := time.Now()
	if !p.last.IsZero() {
		p.level = max(0, p.level-now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	if p.level+1 > p.burst {
		return errf(http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	}
	p.level++
	return nil
}

func (p *Portal) authLocked2(token string) *apiErr {
	if token == "" {
		return errf(http.StatusUnauthorized, "NO_AUTH_FOUND", "Wrong authorization data")
	}
	exp, ok := p.access[token]
	switch {
	case !ok:
		return errf(http.StatusUnauthorized, "invalid_token", "The access token provided is invalid.")
	case time.Now().After(exp):
		return errf(http.StatusUnauthorized, "expired_token", "The access token provided has expired.")
	}
	return nil
}

// batchLocked runs a batch's commands in order; body keeps their order.
func (p *Portal) batchLocked(body string, webhook bool) (any, *apiErr) {
	type cmd struct{ key, value string }
	var cmds []cmd
	halt := false
	for _, pair := range strings.Split(body, "&") {
		k, v, _ := strings.Cut(pair, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		switch {
		case strings.HasPrefix(k, "cmd[") && strings.HasSuffix(k, "]"):
			cmds = append(cmds, cmd{k[4 : len(k)-1], v})
		case k == "halt":
			halt = v == "1" || v == "true"
		}
	}
	if len(cmds) > 50 {
		return nil, errf(http.StatusBadRequest, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
	}
	p.batches = append(p.batches, len(cmds))
	results, errs, times := map[string]any{}, map[string]any{}, map[string]any{}
	for _, c := range cmds {
		method, query, _ := strings.Cut(c.value, "?")
		method = strings.ToLower(strings.TrimSuffix(method, ".json"))
		if method == "batch" {
			errs[c.key] = map[string]string{"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}
			continue
		}
		params, _ := url.ParseQuery(query)
		res, e := p.runLocked(method, params, webhook)
		if e != nil {
			p.refused[e.code]++
			errs[c.key] = map[string]string{"error": e.code, "error_description": e.descr}
			if halt {
				break
			}
			continue
		}
		results[c.key] = res
		times[c.key] = timing()
	}
	out := map[string]any{"result": orEmpty(results), "result_error": orEmpty(errs), "result_total": []any{},
		"result_next": []any{}, "result_time": orEmpty(times)}
	return out, nil
}

// orEmpty is PHP's encoding of an empty array: [].
func orEmpty(m map[string]any) any {
	if len(m) == 0 {
		return []any{}
	}
	return m
}

var knownEvents = []string{"ONAPPINSTALL", "ONAPPUNINSTALL", "ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"}

func (p *Portal) runLocked(method string, f url.Values, webhook bool) (any, *apiErr) {
	if webhook && slices.Contains(appOnly, method) {
		return nil, errf(http.StatusForbidden, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")
	}
	p.methodLog = append(p.methodLog, method)
	switch method {
	case "event.bind":
		ev, handler := strings.ToUpper(f.Get("event")), f.Get("handler")
		if !slices.Contains(knownEvents, ev) {
			return nil, errf(http.StatusBadRequest, "ERROR_EVENT_NOT_FOUND", "Event not found")
		}
		if p.handlers[ev] == handler {
			return nil, coreErr("Handler already exists!")
		}
		p.handlers[ev] = handler
		return true, nil
	case "event.get":
		out := []map[string]string{}
		for ev, h := range p.handlers {
			out = append(out, map[string]string{"event": ev, "handler": h, "auth_type": "0", "offline": "0"})
		}
		return out, nil
	case "telephony.externalline.add":
		n := f.Get("NUMBER")
		if n == "" {
			return nil, errf(http.StatusBadRequest, "INVALID_ARGUMENT", "NUMBER is required")
		}
		if slices.Contains(p.lines, n) {
			return nil, coreErr("Line already exists")
		}
		p.lines = append(p.lines, n)
		return map[string]int{"ID": len(p.lines)}, nil
	case "telephony.externalline.get":
		out := []map[string]string{}
		for _, n := range p.lines {
			out = append(out, map[string]string{"NUMBER": n, "NAME": n, "CRM_AUTO_CREATE": "Y"})
		}
		return out, nil
	case "telephony.externalcall.register":
		return p.register(f)
	case "telephony.externalcall.show", "telephony.externalcall.hide":
		c := p.calls[f.Get("CALL_ID")]
		if c == nil || c.Finishes > 0 {
			return false, nil
		}
		if method == "telephony.externalcall.show" {
			c.Shown = append(c.Shown, userIDs(f)...)
		} else {
			c.Hidden = append(c.Hidden, userIDs(f)...)
		}
		return true, nil
	case "telephony.externalcall.finish":
		return p.finish(f)
	case "telephony.externalcall.attachrecord":
		return p.attachRecord(f)
	case "user.get":
		return p.userGet(f), nil
	case "crm.duplicate.findbycomm":
		return p.findByComm(f)
	case "crm.contact.get", "crm.company.get":
		return p.cardGet(strings.ToUpper(strings.Split(method, ".")[1]), f.Get("id"))
	}
	return nil, errf(http.StatusNotFound, "ERROR_METHOD_NOT_FOUND", "Method not found!")
}

func userIDs(f url.Values) []string { return list(f, "USER_ID") }

// list is a list parameter: name=v, or name[]=v / name[i]=v (in no particular order).
func list(f url.Values, name string) []string {
	if v := f.Get(name); v != "" {
		return []string{v}
	}
	var out []string
	for k, vs := range f {
		if strings.HasPrefix(k, name+"[") {
			out = append(out, vs...)
		}
	}
	return out
}

var phonePattern = regexp.MustCompile(`^\+?[0-9() -]{3,20}$`)

func (p *Portal) register(f url.Values) (any, *apiErr) {
	user := f.Get("USER_ID")
	if user == "" && f.Get("USER_PHONE_INNER") != "" {
		for id, inner := range p.users {
			if inner == f.Get("USER_PHONE_INNER") {
				user = id
			}
		}
		if user == "" {
			return nil, coreErr("User is not found or is not active")
		}
	}
	switch {
	case user == "":
		return nil, coreErr("USER_ID or USER_PHONE_INNER should be set")
	case !p.hasUser(user):
		return nil, coreErr("User is not found or is not active")
	case !phonePattern.MatchString(f.Get("PHONE_NUMBER")):
		return nil, coreErr("Unsupported phone number format")
	case !slices.Contains([]string{"1", "2", "3", "4", "5"}, f.Get("TYPE")):
		return nil, coreErr("Unknown TYPE")
	}
	if d := f.Get("CALL_START_DATE"); d != "" {
		if _, err := time.Parse(time.RFC3339, d); err != nil {
			return nil, coreErr("CALL_START_DATE should be in the ISO-8601 format")
		}
	}
	g := url.Values{}
	for k, v := range f {
		g[k] = v
	}
	g.Set("USER_ID", user)
	c := p.registerLocked(g)
	return map[string]any{"CALL_ID": c.CallID, "CRM_CREATED_LEAD": nil, "CRM_CREATED_ENTITIES": []any{},
		"CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": nil}, nil
}

func (p *Portal) hasUser(id string) bool {
	_, ok := p.users[id]
	return ok
}

// registerLocked is register's 30-minute rule: an unfinished call of the same number, type,
// user, line and external id gets its existing CALL_ID.
func (p *Portal) registerLocked(f url.Values) *Call {
	for _, id := range p.order {
		c := p.calls[id]
		if c.Finishes == 0 && time.Since(c.registered) < 30*time.Minute && c.Phone == f.Get("PHONE_NUMBER") &&
			c.Type == f.Get("TYPE") && c.UserID == f.Get("USER_ID") && c.Line == f.Get("LINE_NUMBER") &&
			c.ExternalCallID == f.Get("EXTERNAL_CALL_ID") {
			c.Registrations++
			return c
		}
	}
	now := time.Now()
	c := &Call{CallID: "externalCall." + randomHex(16) + "." + strconv.FormatInt(now.Unix(), 10),
		ExternalCallID: f.Get("EXTERNAL_CALL_ID"), Phone: f.Get("PHONE_NUMBER"), Type: f.Get("TYPE"),
		UserID: f.Get("USER_ID"), Line: f.Get("LINE_NUMBER"), StartDate: f.Get("CALL_START_DATE"),
		Show: f.Get("SHOW"), CRMCreate: f.Get("CRM_CREATE"), Registrations: 1, registered: now}
	p.calls[c.CallID] = c
	p.order = append(p.order, c.CallID)
	p.notifyLocked()
	return c
}

func (p *Portal) finish(f url.Values) (any, *apiErr) {
	id := f.Get("CALL_ID")
	if id == "" {
		return nil, errf(http.StatusBadRequest, "INVALID_ARGUMENT", "CALL_ID must be a string")
	}
	c := p.calls[id]
	if c == nil || c.Finishes > 0 {
		return nil, coreErr("Call is not found (call should be registered prior to finishing")
	}
	user := f.Get("USER_ID")
	if user == "" {
		return nil, coreErr("USER_ID or USER_PHONE_INNER should be set")
	}
	c.Finishes++
	c.FinishUser = user
	c.Duration, _ = strconv.Atoi(f.Get("DURATION"))
	c.StatusCode = f.Get("STATUS_CODE")
	if c.StatusCode == "" {
		c.StatusCode = "304"
		if c.Duration > 0 {
			c.StatusCode = "200"
		}
	}
	p.notifyLocked()
	status := "0"
	if c.Duration > 0 {
		status = "1"
	}
	return map[string]any{"ID": strconv.Itoa(len(p.order)), "CALL_ID": c.CallID, "EXTERNAL_CALL_ID": c.ExternalCallID,
		"PORTAL_USER_ID": user, "PHONE_NUMBER": c.Phone, "PORTAL_NUMBER": c.Line, "INCOMING": c.Type,
		"CALL_DURATION": strconv.Itoa(c.Duration), "CALL_START_DATE": c.StartDate, "CALL_STATUS": status,
		"CALL_VOTE": "0", "COST": "0.0000", "COST_CURRENCY": "RUB", "CALL_FAILED_CODE": c.StatusCode,
		"CALL_FAILED_REASON": "", "REST_APP_ID": "1", "REST_APP_NAME": "pbxbridge", "CRM_ACTIVITY_ID": "0",
		"COMMENT": nil, "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": nil}, nil
}

func (p *Portal) attachRecord(f url.Values) (any, *apiErr) {
	c := p.calls[f.Get("CALL_ID")]
	if c == nil || c.Finishes == 0 {
		return nil, coreErr("Call is not found in the statistic table. Finish the call using telephony.externalCall.finish method first")
	}
	if ext := strings.ToLower(path.Ext(f.Get("FILENAME"))); ext != ".mp3" && ext != ".wav" {
		return nil, coreErr("Wrong file extension. Only wav and mp3 are allowed")
	}
	link := f.Get("RECORD_URL")
	if link == "" {
		return map[string]string{"uploadUrl": p.URL + "/upload/" + randomHex(8), "fieldName": "file"}, nil
	}
	if p.fetchRecords {
		// The portal fetches the link itself; the lock waits, as the portal's request does.
		resp, err := http.Get(link)
		if err != nil {
			return nil, coreErr("Server returns HTTP error code 0")
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, coreErr("Server returns HTTP error code %d", resp.StatusCode)
		}
	}
	c.Record = link
	p.notifyLocked()
	return map[string]int{"FILE_ID": len(p.order)}, nil
}

func (p *Portal) userGet(f url.Values) any {
	out := []map[string]any{}
	for id, inner := range p.users {
		if v := f.Get("FILTER[ID]"); v != "" && v != id {
			continue
		}
		if v := f.Get("FILTER[UF_PHONE_INNER]"); v != "" && v != inner {
			continue
		}
		out = append(out, map[string]any{"ID": id, "ACTIVE": true, "UF_PHONE_INNER": inner})
	}
	return out
}

// findByComm is crm.duplicate.findbycomm for phones: the ids of the contacts and companies
// (entity_type, if given) with one of values, {"CONTACT": [100]}, or [] when there are none.
func (p *Portal) findByComm(f url.Values) (any, *apiErr) {
	values := list(f, "values")
	switch {
	case f.Get("type") != "PHONE" && f.Get("type") != "EMAIL":
		return nil, errf(http.StatusBadRequest, "INVALID_ARGUMENT", "Communication type is not defined or invalid")
	case len(values) == 0 || len(values) > 20:
		return nil, errf(http.StatusBadRequest, "INVALID_ARGUMENT", "Values must be a list of 1 to 20 items")
	}
	found := map[string][]int{}
	for typ, cards := range p.cards {
		if et := f.Get("entity_type"); et != "" && et != typ {
			continue
		}
		for _, c := range cards {
			for _, v := range values {
				if f.Get("type") == "PHONE" && crmtest.Last10(v) != "" && crmtest.Last10(v) == crmtest.Last10(c.phone) {
					id, _ := strconv.Atoi(c.id)
					found[typ] = append(found[typ], id)
					break
				}
			}
		}
	}
	if len(found) == 0 {
		return []any{}, nil
	}
	return found, nil
}

// cardGet is crm.contact.get or crm.company.get; an unknown id is 400 with an empty error code,
// as the portal answers it.
func (p *Portal) cardGet(typ, id string) (any, *apiErr) {
	for _, c := range p.cards[typ] {
		if c.id != id {
			continue
		}
		if typ == "CONTACT" {
			return map[string]string{"ID": c.id, "NAME": c.name, "LAST_NAME": c.lastName, "SECOND_NAME": "", "ASSIGNED_BY_ID": c.assignedBy}, nil
		}
		return map[string]string{"ID": c.id, "TITLE": c.title, "ASSIGNED_BY_ID": c.assignedBy}, nil
	}
	return nil, errf(http.StatusBadRequest, "", "Not found")
}

// serveToken is the OAuth server's refresh.
func (p *Portal) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case q.Get("grant_type") != "refresh_token":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Invalid grant_type"})
		return
	case q.Get("client_id") != p.ClientID || q.Get("client_secret") != p.ClientSecret:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Invalid client credentials"})
		return
	case !p.refresh[q.Get("refresh_token")]:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "Invalid grant"})
		return
	}
	delete(p.refresh, q.Get("refresh_token"))
	access, refresh := p.newPairLocked()
	p.refreshes++
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "refresh_token": refresh,
		"expires": time.Now().Add(p.tokenLifetime).Unix(), "expires_in": int(p.tokenLifetime / time.Second),
		"client_endpoint": p.URL + "/rest/", "server_endpoint": p.URL + "/oauth/rest/", "domain": "oauth.bitrix.info",
		"member_id": p.MemberID, "scope": "telephony,crm,user", "status": "L", "user_id": 1})
}

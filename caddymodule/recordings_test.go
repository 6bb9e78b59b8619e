package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
	"github.com/pbxbridge/pbxbridge/recording"
)

const recordingsTestToken = "crm-token-0123456789abcdef"

// newTestRecordings provisions a handler against fake: account office is Mango at the fake,
// main is XVB.
func newTestRecordings(t *testing.T, fake *gatewaytest.MangoRecordings, h *Recordings) (*Recordings, *App, *observer.ObservedLogs) {
	t.Helper()
	app := &App{accounts: map[string]pbx.Account{
		"office": provisioned(t, "mango", "office", &mango.Config{APIKey: fake.Key, APISalt: fake.Salt, APIURL: fake.APIURL(), Forward: []string{"crm"}}),
		"main":   provisioned(t, "xvb", "main", &xvb.Config{AccessCode: "10019", Sources: []string{"any"}, Forward: []string{"crm"}}),
	}}
	app.outbound, _ = outbound.NewPolicy([]string{"127.0.0.1"}) // the fake's file server
	core, logs := observer.New(zapcore.DebugLevel)
	if err := h.provision(app, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	h.fetch.Wait, h.fetch.Poll = 200*time.Millisecond, 20*time.Millisecond // a test that waits in vain is quick
	return h, app, logs
}

func serveRecording(h *Recordings, method, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	_ = h.ServeHTTP(w, req, nil)
	return w
}

// pathOf is the path and query of a link, as a request to the handler carries them.
func requestURI(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

func recordingCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func fetchesCounted(outcome string) float64 {
	return recordingCounter(metrics.recordingFetches.WithLabelValues("office", outcome))
}

func TestRecordingsServe(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the handler's temporary copies go
	fake := gatewaytest.NewMangoRecordings(t, "k-office", "s-office")
	id := "MToxMDAwNjA4NTo1MDA5/NDExMDIy+OjE=" // base64 ids carry / + =
	audio := fake.Add(id, 300_000)
	h, _, logs := newTestRecordings(t, fake, &Recordings{Token: recordingsTestToken, PublicURL: "https://pbx.example.com/recordings"})
	bearer := []string{"Authorization", "Bearer " + recordingsTestToken}
	path := "/recordings/office/" + url.PathEscape(id)
	okBefore := fetchesCounted("ok")
	bytesBefore := recordingCounter(metrics.recordingBytes.WithLabelValues("office"))

	t.Run("bearer", func(t *testing.T) {
		w := serveRecording(h, http.MethodGet, path, bearer...)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), audio) {
			t.Fatalf("%d, %d bytes (want %d): %.200s", w.Code, w.Body.Len(), len(audio), w.Body.String())
		}
		if ct, cl := w.Header().Get("Content-Type"), w.Header().Get("Content-Length"); ct != "audio/mp3" || cl != strconv.Itoa(len(audio)) {
			t.Errorf("Content-Type %q Content-Length %q", ct, cl)
		}
		if w.Header().Get("Accept-Ranges") != "bytes" || w.Header().Get("ETag") == "" {
			t.Errorf("no range support advertised: %v", w.Header())
		}
		fake.Mu.Lock()
		last := fake.Queries[len(fake.Queries)-1]
		fake.Mu.Unlock()
		if want, _ := json.Marshal(map[string]string{"action": "download", "recording_id": id}); !sameJSON(last, string(want)) {
			t.Errorf("Mango got query %s", last)
		}
	})
	t.Run("signed link", func(t *testing.T) {
		link := h.links.Link("office", id, time.Now())
		if !strings.HasPrefix(link, "https://pbx.example.com"+path+"?exp=") || strings.Contains(link, recordingsTestToken) {
			t.Fatalf("link %s", link)
		}
		w := serveRecording(h, http.MethodGet, requestURI(t, link))
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), audio) {
			t.Fatalf("%d, %d bytes: %.200s", w.Code, w.Body.Len(), w.Body.String())
		}
	})
	t.Run("range", func(t *testing.T) {
		w := serveRecording(h, http.MethodGet, path, append(bearer, "Range", "bytes=1000-1999")...)
		if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), audio[1000:2000]) {
			t.Fatalf("%d, %d bytes", w.Code, w.Body.Len())
		}
		if cr := w.Header().Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(audio)) {
			t.Errorf("Content-Range %q", cr)
		}
		w = serveRecording(h, http.MethodGet, path, append(bearer, "Range", "bytes=-100")...)
		if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), audio[len(audio)-100:]) {
			t.Errorf("suffix range: %d, %d bytes", w.Code, w.Body.Len())
		}
	})
	t.Run("if-range", func(t *testing.T) {
		etag := serveRecording(h, http.MethodHead, path, bearer...).Header().Get("ETag")
		w := serveRecording(h, http.MethodGet, path, append(bearer, "Range", "bytes=10-19", "If-Range", etag)...)
		if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), audio[10:20]) {
			t.Errorf("matching If-Range: %d, %d bytes", w.Code, w.Body.Len())
		}
		w = serveRecording(h, http.MethodGet, path, append(bearer, "Range", "bytes=10-19", "If-Range", `"changed"`)...)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), audio) {
			t.Errorf("stale If-Range must get the whole file: %d, %d bytes", w.Code, w.Body.Len())
		}
	})
	t.Run("head", func(t *testing.T) {
		w := serveRecording(h, http.MethodHead, path, bearer...)
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") != strconv.Itoa(len(audio)) {
			t.Errorf("%d, body %d, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
		}
	})
	t.Run("credentials", func(t *testing.T) {
		valid := h.links.Link("office", id, time.Now())
		u, _ := url.Parse(valid)
		exp, sig := u.Query().Get("exp"), u.Query().Get("sig")
		flipped := sig[:len(sig)-1] + "0"
		if strings.HasSuffix(sig, "0") {
			flipped = sig[:len(sig)-1] + "1"
		}
		expired := recording.NewLinks(recordingsTestToken, "https://pbx.example.com/recordings", -time.Minute)
		otherToken := recording.NewLinks("another-token", "https://pbx.example.com/recordings", time.Hour)
		later, _ := strconv.ParseInt(exp, 10, 64)
		queries := fake.QueryCount()
		for _, tt := range []struct {
			name   string
			target string
			header []string
			status int
			msg    string
		}{
			{"none", path, nil, http.StatusUnauthorized, "credentials required"},
			{"wrong bearer", path, []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized, "wrong bearer token"},
			{"basic", path, []string{"Authorization", "Basic " + recordingsTestToken}, http.StatusUnauthorized, "wrong bearer token"},
			{"expired", requestURI(t, expired.Link("office", id, time.Now())), nil, http.StatusForbidden, "expired"},
			{"tampered sig", path + "?exp=" + exp + "&sig=" + flipped, nil, http.StatusForbidden, "signature"},
			{"extended exp", path + fmt.Sprintf("?exp=%d&sig=%s", later+3600, sig), nil, http.StatusForbidden, "signature"},
			{"other recording", "/recordings/office/other?exp=" + exp + "&sig=" + sig, nil, http.StatusForbidden, "signature"},
			{"other account", "/recordings/main/" + url.PathEscape(id) + "?exp=" + exp + "&sig=" + sig, nil, http.StatusForbidden, "signature"},
			{"other token", requestURI(t, otherToken.Link("office", id, time.Now())), nil, http.StatusForbidden, "signature"},
			{"no sig", path + "?exp=" + exp, nil, http.StatusForbidden, "signature"},
			{"garbage", path + "?exp=x&sig=zz", nil, http.StatusForbidden, "signature"},
		} {
			w := serveRecording(h, http.MethodGet, tt.target, tt.header...)
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.msg) {
				t.Errorf("%s: %d %.200q, want %d %q", tt.name, w.Code, w.Body.String(), tt.status, tt.msg)
			}
			if tt.status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
			}
		}
		if n := fake.QueryCount(); n != queries {
			t.Errorf("refused requests reached Mango: %d queries", n-queries)
		}
	})

	if got := fetchesCounted("ok") - okBefore; got != 8 {
		t.Errorf("ok fetches counted %v, want 8", got)
	}
	if got := recordingCounter(metrics.recordingBytes.WithLabelValues("office")) - bytesBefore; got != float64(8*len(audio)) {
		t.Errorf("bytes counted %v, want %d", got, 8*len(audio))
	}
	assertNoTempFiles(t, tmp)
	// The token, link signatures and Mango's one-shot URLs are credentials: never logged.
	secrets := append([]string{recordingsTestToken, "sig="}, fake.FileLinks...)
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line has %q: %s", s, line)
			}
		}
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		t.Errorf("temporary file left behind: %s", e.Name())
	}
}

// Each way a fetch can fail gets its status, a message that says what happened, and its
// outcome counted; nothing is left in the temporary directory.
func TestRecordingsFailures(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	fake := gatewaytest.NewMangoRecordings(t, "k-office", "s-office")
	fake.Pending["pending"] = true
	fake.Add("stalled", 100_000)
	fake.Stalled["stalled"] = true
	slow := fake.Add("slow", 80_000)
	fake.Slow["slow"] = true
	h, app, _ := newTestRecordings(t, fake, &Recordings{Token: recordingsTestToken, Timeout: caddy.Duration(500 * time.Millisecond)})
	// Accounts whose Mango cannot be reached or refuses pbxbridge's signature.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	app.accounts["down"] = provisioned(t, "mango", "down", &mango.Config{APIKey: "k", APISalt: "s", APIURL: down.URL + "/vpbx", Forward: []string{"crm"}})
	app.accounts["badsalt"] = provisioned(t, "mango", "badsalt", &mango.Config{APIKey: fake.Key, APISalt: "wrong", APIURL: fake.APIURL(), Forward: []string{"crm"}})
	bearer := []string{"Authorization", "Bearer " + recordingsTestToken}

	t.Run("slow file arrives whole", func(t *testing.T) {
		w := serveRecording(h, http.MethodGet, "/recordings/office/slow", bearer...)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), slow) {
			t.Fatalf("%d, %d bytes", w.Code, w.Body.Len())
		}
	})
	long := strings.Repeat("x", 129)
	for _, tt := range []struct {
		name, method, target, outcome string
		status                        int
		msg                           string
		retryAfter                    bool
	}{
		{"unknown id", http.MethodGet, "/recordings/office/nope", "not_found", http.StatusNotFound, "no such recording", true},
		{"not yet downloadable", http.MethodGet, "/recordings/office/pending", "not_found", http.StatusNotFound, "record/added", true},
		{"stalled file", http.MethodGet, "/recordings/office/stalled", "timeout", http.StatusGatewayTimeout, "took longer than 500ms", false},
		{"Mango down", http.MethodGet, "/recordings/down/x", "", http.StatusBadGateway, "unreachable", true},
		{"bad signature", http.MethodGet, "/recordings/badsalt/x", "", http.StatusBadGateway, "signature mismatch", false},
		{"xvb account", http.MethodGet, "/recordings/main/x", "", http.StatusNotFound, "account main is xvb", false},
		{"unknown account", http.MethodGet, "/recordings/nobody/x", "", http.StatusNotFound, `no account named \"nobody\"`, false},
		{"no account in path", http.MethodGet, "/x", "", http.StatusBadRequest, "/<account>/<recording_id>", false},
		{"id too long", http.MethodGet, "/recordings/office/" + long, "", http.StatusBadRequest, "longer than Mango's 128 bytes", false},
		{"POST", http.MethodPost, "/recordings/office/slow", "", http.StatusMethodNotAllowed, "not allowed", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := 0.0
			if tt.outcome != "" {
				before = fetchesCounted(tt.outcome)
			}
			w := serveRecording(h, tt.method, tt.target, bearer...)
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.msg) {
				t.Errorf("%d %s, want %d %q", w.Code, w.Body.String(), tt.status, tt.msg)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			if tt.outcome != "" && fetchesCounted(tt.outcome)-before != 1 {
				t.Errorf("outcome %s not counted", tt.outcome)
			}
		})
	}
	// Mango announces a recording before it can be downloaded: a fetch in between waits for it.
	t.Run("stored during the wait", func(t *testing.T) {
		asked := make(chan struct{}, 1)
		fake.Mu.Lock()
		fake.Pending["later"] = true
		fake.Queried = asked
		fake.Mu.Unlock()
		waiting := *h
		waiting.fetch.Wait = 30 * time.Second // the test ends as soon as the file is served
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- serveRecording(&waiting, http.MethodGet, "/recordings/office/later", bearer...) }()
		<-asked // Mango said "not yet" once
		audio := fake.Add("later", 10_000)
		fake.Mu.Lock()
		delete(fake.Pending, "later")
		fake.Queried = nil
		fake.Mu.Unlock()
		w := <-done
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), audio) {
			t.Errorf("%d %s, want the recording", w.Code, w.Body.String())
		}
	})
	t.Run("rate limited", func(t *testing.T) {
		fake.Mu.Lock()
		fake.Busy = true
		fake.Mu.Unlock()
		defer func() { fake.Mu.Lock(); fake.Busy = false; fake.Mu.Unlock() }()
		before := fetchesCounted("unavailable")
		w := serveRecording(h, http.MethodGet, "/recordings/office/slow", bearer...)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || fetchesCounted("unavailable")-before != 1 {
			t.Errorf("%d %s", w.Code, w.Body.String())
		}
	})
	t.Run("too large", func(t *testing.T) {
		small := *h
		small.fetch.MaxSize = 50_000
		for _, id := range []string{"slow", "stalled"} { // without and with Content-Length
			before := fetchesCounted("too_large")
			w := serveRecording(&small, http.MethodGet, "/recordings/office/"+id, bearer...)
			if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "larger than") || fetchesCounted("too_large")-before != 1 {
				t.Errorf("%s: %d %s", id, w.Code, w.Body.String())
			}
		}
	})
	assertNoTempFiles(t, tmp)
}

func TestLinkRecordings(t *testing.T) {
	now := time.Now()
	mango := event.Origin{PBX: "mango", Account: "office"}
	xvbSrc := event.Origin{PBX: "xvb", Account: "main"}
	ready := mango.New(event.TypeRecordingReady, "r1", "call1", now)
	ready.Data.RecordingID = "rec/1"
	completed := mango.New(event.TypeCompleted, "c1", "call1", now)
	completed.Data.RecordingID = "rec/2"
	plain := mango.New(event.TypeCompleted, "c2", "call2", now)
	given := mango.New(event.TypeRecordingReady, "r3", "call3", now)
	given.Data.RecordingID, given.Data.RecordingURL = "rec/3", "https://elsewhere/rec3"
	answered := mango.New(event.TypeAnswered, "a1", "call1", now)
	answered.Data.RecordingID = "rec/4" // not a type that carries recordings
	xvbReady := xvbSrc.New(event.TypeRecordingReady, "x1", "call4", now)
	xvbReady.Data.RecordingURL = "https://pbx.example.net/ui/msg_download/1"
	events := []event.Event{ready, completed, plain, given, answered, xvbReady}

	var app App
	app.linkRecordings(events, now) // no handler with a public_url: nothing to link to
	if events[0].Data.RecordingURL != "" {
		t.Fatalf("linked without a handler: %s", events[0].Data.RecordingURL)
	}
	links := recording.NewLinks(recordingsTestToken, "https://pbx.example.com/recordings", time.Hour)
	if err := app.setRecordingLinks(links); err != nil {
		t.Fatal(err)
	}
	app.linkRecordings(events, now)
	for i, want := range []string{
		links.Link("office", "rec/1", now), links.Link("office", "rec/2", now), "", "https://elsewhere/rec3", "",
		"https://pbx.example.net/ui/msg_download/1",
	} {
		if got := events[i].Data.RecordingURL; got != want {
			t.Errorf("event %d (%s): recording_url %q, want %q", i, events[i].Type, got, want)
		}
	}

	if err := app.setRecordingLinks(recording.NewLinks(recordingsTestToken, links.Base(), links.TTL())); err != nil {
		t.Errorf("a second handler with the same settings: %v", err)
	}
	if err := app.setRecordingLinks(recording.NewLinks("other", links.Base(), links.TTL())); err == nil {
		t.Error("a second handler with another token was accepted")
	}
}

func TestRecordingsProvision(t *testing.T) {
	fake := gatewaytest.NewMangoRecordings(t, "k", "s")
	t.Setenv("TEST_RECORDINGS_TOKEN", recordingsTestToken)
	h, app, _ := newTestRecordings(t, fake, &Recordings{Token: "{env.TEST_RECORDINGS_TOKEN}", PublicURL: "https://pbx.example.com/recordings/"})
	if h.token != recordingsTestToken || h.Token != "{env.TEST_RECORDINGS_TOKEN}" {
		t.Errorf("token %q, config keeps %q", h.token, h.Token)
	}
	if app.recordingLinks != h.links || h.links.Base() != "https://pbx.example.com/recordings" || h.links.TTL() != 7*24*time.Hour ||
		time.Duration(h.Timeout) != time.Minute {
		t.Errorf("links %+v timeout %v", h.links, time.Duration(h.Timeout))
	}
	_, app, _ = newTestRecordings(t, fake, &Recordings{Token: "t"})
	if app.recordingLinks != nil {
		t.Error("a handler without public_url registered links")
	}
	for _, bad := range []Recordings{
		{},
		{Token: "{env.TEST_RECORDINGS_UNSET}"},
		{Token: "t", PublicURL: "pbx.example.com/recordings"},
		{Token: "t", PublicURL: "ftp://pbx.example.com/recordings"},
		{Token: "t", PublicURL: "https://pbx.example.com/recordings?x=1"},
	} {
		if err := bad.provision(&App{}, zap.NewNop()); err == nil {
			t.Errorf("%+v provisioned", bad)
		}
	}
}

func TestRecordingsCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`pbx_recordings {
		token {env.CRM_TOKEN}
		public_url https://pbx.example.com/recordings
		link_ttl 2d
		timeout 90s
	}`)
	var h Recordings
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Recordings{Token: "{env.CRM_TOKEN}", PublicURL: "https://pbx.example.com/recordings",
		LinkTTL: caddy.Duration(48 * time.Hour), Timeout: caddy.Duration(90 * time.Second)}
	if h.Token != want.Token || h.PublicURL != want.PublicURL || h.LinkTTL != want.LinkTTL || h.Timeout != want.Timeout {
		t.Errorf("got %+v", h)
	}
	for _, bad := range []string{
		"pbx_recordings office",
		"pbx_recordings {\n token\n}",
		"pbx_recordings {\n token a b\n}",
		"pbx_recordings {\n link_ttl soon\n}",
		"pbx_recordings {\n cache 1m\n}",
	} {
		var h Recordings
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}

	// The directive needs no `order` line: it works outside a route too.
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`
example.com {
	pbx_recordings {
		token t
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(adapted, []byte(`"handler":"pbx_recordings","token":"t"`)) {
		t.Errorf("adapted: %s", adapted)
	}
}

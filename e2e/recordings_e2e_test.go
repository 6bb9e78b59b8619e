package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/recording"
)

// recordingsGateway has a Mango account whose API is the fake, an XVB account, and
// pbx_recordings with the token from the environment variable tokenVar. The fake's file
// server, like everything in tests, is on 127.0.0.1: outbound_allow names it.
func recordingsGateway(crmURL, apiURL, tokenVar string) string {
	return recordingsGatewayAllowing(crmURL, apiURL, tokenVar, "outbound_allow 127.0.0.1/32")
}

func recordingsGatewayAllowing(crmURL, apiURL, tokenVar, outboundAllow string) string {
	return gatewaytest.Caddyfile{
		PBX: []string{
			outboundAllow,
			"target crm " + crmURL,
			gatewaytest.Block("mango office", "api_key e2e-key", "api_salt e2e-salt", "sources any", "forward crm", "api_url "+apiURL),
			gatewaytest.Block("xvb main", "access_code 10019", "sources any", "forward crm"),
		},
		Site: []string{
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /recordings/*", gatewaytest.Block("pbx_recordings", "token {env."+tokenVar+"}", "public_url {HTTP}/recordings")),
		},
	}.String()
}

// recordAdded posts Mango's /events/record/added for id and returns the link the CRM got in
// recording.ready.
func recordAdded(t *testing.T, g *gatewaytest.Gateway, crm *gatewaytest.CRM, id string) string {
	t.Helper()
	js := fmt.Sprintf(`{"entry_id":"NTAwOTQxMTAyMg==","product_id":300022532,"user_id":-1,"timestamp":%d,"recording_id":%q}`,
		time.Now().Unix(), id)
	if code, body := g.Post("/hooks/mango/events/record/added", "application/x-www-form-urlencoded",
		mango.FormBody("e2e-key", "e2e-salt", js)); code != http.StatusOK {
		t.Fatalf("record/added: %d %s", code, body)
	}
	ev := waitRecordingEvent(t, crm, func(ev event.Event) bool {
		return ev.Type == event.TypeRecordingReady && ev.Data.RecordingID == id
	})
	return ev.Data.RecordingURL
}

func waitRecordingEvent(t *testing.T, crm *gatewaytest.CRM, match func(event.Event) bool) event.Event {
	t.Helper()
	for n := 1; ; n++ {
		for _, d := range crm.WaitDelivered(t, n, 30*time.Second) {
			if match(d.Event) {
				return d.Event
			}
		}
	}
}

// Through the built binary: a Mango record/added reaches the CRM with a signed link that plays
// without credentials; a Bearer request seeks with Range; altered, expired and missing
// credentials are refused; XVB's record_link passes through; a reload to a new token makes
// new links and retires the old ones.
func TestRecordingsEndToEnd(t *testing.T) {
	fake := gatewaytest.NewMangoRecordings(t, "e2e-key", "e2e-salt")
	id := "MToxMDAwNjA4NTo1MDA5/NDExMDIy+OjE="
	audio := fake.Add(id, 200_000)
	crm := gatewaytest.NewCRM(t, nil)
	const tokenOne, tokenTwo = "e2e-token-one-0123456789", "e2e-token-two-0123456789"
	g := gatewaytest.Start(t, recordingsGateway(crm.URL, fake.APIURL(), "TEST_REC_TOKEN_ONE"),
		"TEST_REC_TOKEN_ONE="+tokenOne, "TEST_REC_TOKEN_TWO="+tokenTwo)
	g.WaitReady()
	path := g.URL + "/recordings/office/" + url.PathEscape(id)

	link := recordAdded(t, g, crm, id)
	if !strings.HasPrefix(link, path+"?exp=") || strings.Contains(link, tokenOne) {
		t.Fatalf("recording_url %q, want a signed link under %s", link, path)
	}
	t.Run("link plays without credentials", func(t *testing.T) {
		resp, body := gatewaytest.Request(t, http.MethodGet, link, "", "")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, audio) || resp.Header.Get("Content-Type") != "audio/mp3" {
			t.Fatalf("%d %s, %d bytes (want %d)", resp.StatusCode, resp.Header.Get("Content-Type"), len(body), len(audio))
		}
	})
	t.Run("bearer with range", func(t *testing.T) {
		resp, body := gatewaytest.Request(t, http.MethodGet, path, "", "", "Authorization", "Bearer "+tokenOne, "Range", "bytes=5000-5999")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, audio[5000:6000]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 5000-5999/%d", len(audio)) {
			t.Fatalf("%d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
		}
	})
	t.Run("refused", func(t *testing.T) {
		expired := recording.NewLinks(tokenOne, g.URL+"/recordings", -time.Minute).Link("office", id, time.Now())
		tampered := link[:len(link)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(link, "0")]
		for _, tt := range []struct {
			name, target string
			header       []string
			status       int
		}{
			{"tampered", tampered, nil, http.StatusForbidden},
			{"expired", expired, nil, http.StatusForbidden},
			{"another recording", strings.Replace(link, url.PathEscape(id), "other", 1), nil, http.StatusForbidden},
			{"no credentials", path, nil, http.StatusUnauthorized},
			{"unknown recording", g.URL + "/recordings/office/unknown", []string{"Authorization", "Bearer " + tokenOne}, http.StatusNotFound},
			{"xvb account", g.URL + "/recordings/main/x", []string{"Authorization", "Bearer " + tokenOne}, http.StatusNotFound},
		} {
			if resp, body := gatewaytest.Request(t, http.MethodGet, tt.target, "", "", tt.header...); resp.StatusCode != tt.status {
				t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, body, tt.status)
			}
		}
	})
	t.Run("xvb record_link as given", func(t *testing.T) {
		form, err := os.ReadFile(filepath.Join("..", "pbx", "xvb", "testdata", "fixtures", "02-xvb-event-completed.form"))
		if err != nil {
			t.Fatal(err)
		}
		if code, body := g.Post("/hooks/xvb", "application/x-www-form-urlencoded", string(form)); code != http.StatusOK {
			t.Fatalf("xvb: %d %s", code, body)
		}
		ev := waitRecordingEvent(t, crm, func(ev event.Event) bool {
			return ev.Data.PBX == "xvb" && ev.Type == event.TypeRecordingReady
		})
		if want := "https://vpbx18-dev/ui/msg_download/120/10019/f92H16GAUDE7R10EMOLYYw.q722"; ev.Data.RecordingURL != want {
			t.Errorf("xvb recording_url %q, want %q", ev.Data.RecordingURL, want)
		}
	})

	metricsText := g.MetricsText()
	for _, want := range []string{
		`pbxbridge_recording_fetches_total{account="office",outcome="ok"} 2`,
		`pbxbridge_recording_fetches_total{account="office",outcome="not_found"} 1`,
		fmt.Sprintf(`pbxbridge_recording_bytes_total{account="office"} %d`, 2*len(audio)),
		`pbxbridge_recording_fetch_duration_seconds_count{account="office"} 3`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A reload to another token: the new config's handler makes the links of new events, the
	// old links stop working, and the counters carry on.
	if err := g.Reload(recordingsGateway(crm.URL, fake.APIURL(), "TEST_REC_TOKEN_TWO")); err != nil {
		t.Fatal(err)
	}
	second := "rec-after-reload"
	audio2 := fake.Add(second, 50_000)
	link2 := recordAdded(t, g, crm, second)
	if resp, body := gatewaytest.Request(t, http.MethodGet, link2, "", ""); resp.StatusCode != http.StatusOK || !bytes.Equal(body, audio2) {
		t.Errorf("link after reload: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ := gatewaytest.Request(t, http.MethodGet, link, "", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a link of the old token after reload: %d, want 403", resp.StatusCode)
	}
	if resp, _ := gatewaytest.Request(t, http.MethodGet, path, "", "", "Authorization", "Bearer "+tokenOne); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old token after reload: %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(g.MetricsText(), `pbxbridge_recording_fetches_total{account="office",outcome="ok"} 3`) {
		t.Error("fetch counter did not carry on across the reload")
	}

	logs := g.Logs()
	fake.Mu.Lock()
	secrets := append([]string{tokenOne, tokenTwo, "sig="}, fake.FileLinks...)
	fake.Mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("gateway log contains %q", s)
		}
	}
}

// A Mango API (malicious, intercepted, or a plain-http api_url) that redirects the recording
// query to the inside: Caddy's admin /config/, another loopback port, the cloud metadata
// address. Without outbound_allow none is fetched: the client gets 502 and nothing of the
// target. api_url itself is on 127.0.0.1 and is reached: the operator wrote it.
func TestRecordingRedirectsToTheInsideAreNotFetched(t *testing.T) {
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("pbxbridge fetched %s from the inside", r.URL)
		fmt.Fprint(w, "inside secret")
	}))
	defer inside.Close()
	var location atomic.Value
	var queries atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		http.Redirect(w, r, location.Load().(string), http.StatusFound)
	}))
	defer api.Close()
	crm := gatewaytest.NewCRM(t, nil)
	g := gatewaytest.Start(t, recordingsGatewayAllowing(crm.URL, api.URL+"/vpbx", "TEST_REC_TOKEN", ""), "TEST_REC_TOKEN=e2e-token-0123456789")
	for _, target := range []string{
		"http://" + g.AdminAddr + "/config/",
		inside.URL + "/dl/x",
		"http://localhost:" + strings.TrimPrefix(inside.URL, "http://127.0.0.1:") + "/dl/x",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:" + strings.TrimPrefix(inside.URL, "http://127.0.0.1:") + "/dl/x",
		"http://10.0.0.1/dl/x",
	} {
		location.Store(target)
		resp, body := gatewaytest.Request(t, http.MethodGet, g.URL+"/recordings/office/rec-1", "", "", "Authorization", "Bearer e2e-token-0123456789")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "does not fetch") || strings.Contains(string(body), "admin") {
			t.Errorf("redirect to %s: %d %s, want 502 naming the refusal", target, resp.StatusCode, body)
		}
	}
	if n := queries.Load(); n != 6 {
		t.Errorf("the configured api_url got %d queries, want 6", n)
	}
}

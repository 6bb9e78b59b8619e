package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

const diskCommandToken = "disk-test-command-token"

// smallDiskGateway is mangoGateway with its store on dir, the default max_store, the write
// timeout docs/originate.md recommends and pbx_originate at /calls.
func smallDiskGateway(crmURL, dir string) string {
	config := mangoGateway(crmURL, "127.0.0.1")
	config.Global = []string{gatewaytest.Block("servers", gatewaytest.Block("timeouts", "write 15s"))}
	config.Store = "data_dir " + filepath.Join(dir, "store")
	config.Site = append(config.Site, gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token "+diskCommandToken)))
	return config.String()
}

// webhooks posts Mango call starts of calls prefix-0, prefix-1, … to g.
type webhooks struct {
	t        *testing.T
	g        *gatewaytest.Gateway
	n        int
	accepted int
}

// post sends the next call's first message and returns the answer.
func (w *webhooks) post(prefix string) (int, string) {
	m := mango.SampleCall(fmt.Sprintf("E-%s-%d", prefix, w.n), fmt.Sprintf("L-%s-%d", prefix, w.n), time.Unix(1764065700, 0))[0]
	w.n++
	code, body := w.g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON))
	if code == http.StatusOK {
		w.accepted++
	}
	return code, body
}

// acceptAll posts n webhooks that must all be accepted.
func (w *webhooks) acceptAll(prefix string, n int) {
	w.t.Helper()
	for range n {
		if code, body := w.post(prefix); code != http.StatusOK {
			w.t.Fatalf("%s webhook: %d %s", prefix, code, body)
		}
	}
}

// TestFullDiskHealsWithoutRestart, through the built binary on a 48 MB disk with the default
// max_store and the CRM down: a disk that fills faster than pbxbridge watches it makes a store
// write fail; /healthz, /pbx/status, the metrics and the refusals' log lines say so at once
// with the cause, and POST /calls answers 503 with Retry-After inside the write timeout. Once
// space returns the gateway heals by itself within seconds. It also starts on a full disk and
// on a just-freed one, and every webhook answered 200 reaches the CRM exactly once.
func TestFullDiskHealsWithoutRestart(t *testing.T) {
	const diskSize = 48 << 20
	disk := gatewaytest.SmallDisk(t, diskSize)
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusServiceUnavailable })
	g := gatewaytest.Start(t, smallDiskGateway(crm.URL+"/events", disk), "TEST_MANGO_SALT="+testSalt)
	g.WaitReady()
	hooks := &webhooks{t: t, g: g}
	hooks.acceptAll("before", 50)
	filler := gatewaytest.NewFiller(t, disk)
	dataDir := filepath.Join(disk, "store")

	// Room, then none at once: the next writes meet ENOSPC before pbxbridge measures the
	// disk again. Should it measure first, webhooks get "disk full": try again.
	const reserve = diskSize / 8
	failed := ""
	for try := 0; failed == "" && try < 20; try++ {
		filler.Leave(reserve + 4<<20)
		waitHealth(t, g, http.StatusOK, "")
		filler.Leave(0)
		for range 100 {
			code, body := hooks.post("fill")
			if code == http.StatusServiceUnavailable && strings.Contains(body, "store write failed") {
				failed = body
			}
			if code != http.StatusOK {
				break
			}
		}
	}
	if failed == "" {
		t.Fatal("no webhook met a store write error")
	}
	cause := "store write failed: no space left on device on " + dataDir
	if !strings.Contains(failed, cause) {
		t.Errorf("refusal %s, want it to say %q", failed, cause)
	}
	wantUnhealthy(t, health(t, g), cause)
	var st struct {
		Ready      bool   `json:"ready"`
		StoreError string `json:"store_error"`
	}
	g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &st)
	if st.Ready || st.StoreError != cause {
		t.Errorf("/pbx/status ready %v store_error %q, want false, %q", st.Ready, st.StoreError, cause)
	}
	m := g.MetricsText()
	for _, want := range []string{"pbxbridge_store_write_failed 1", "pbxbridge_queue_ready 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(g.Logs(), "no space left on device on "+dataDir) {
		t.Error("no refusal's log line names the cause")
	}
	start := time.Now()
	resp, body := gatewaytest.Request(t, http.MethodPost, g.URL+"/calls", "application/json",
		`{"account":"office","from":"101","to":"+79001234567","command_id":"on-full-disk"}`, "Authorization", "Bearer "+diskCommandToken)
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || took > 15*time.Second {
		t.Errorf("POST /calls on a failed store: %d %s (Retry-After %q) after %s; want 503 with Retry-After within the write timeout",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), took)
	}
	t.Logf("POST /calls on the failed store: %d %s in %s", resp.StatusCode, strings.TrimSpace(string(body)), time.Since(start).Round(time.Millisecond))

	filler.Remove()
	freed := time.Now()
	gatewaytest.Eventually(t, 10*time.Second, "pbx_health ok within 10 s of space returning", func() bool {
		return health(t, g).code == http.StatusOK
	})
	t.Logf("healthy %s after space returned", time.Since(freed).Round(time.Millisecond))
	hooks.acceptAll("healed", 20)

	// Restart on a full disk: it starts, refuses webhooks, health says why.
	filler = gatewaytest.NewFiller(t, disk)
	filler.Leave(0)
	g.Stop()
	g.Restart()
	g.WaitReady()
	if h := health(t, g); h.code != http.StatusServiceUnavailable || !strings.Contains(h.Reason, "disk full") {
		t.Errorf("pbx_health on a full disk after restart: %+v", h)
	}
	if code, body := hooks.post("full-restart"); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk full") {
		t.Errorf("webhook on a full disk: %d %s", code, body)
	}
	// And on a just-freed one: it starts and takes webhooks.
	g.Stop()
	filler.Remove()
	g.Restart()
	g.WaitReady()
	waitHealth(t, g, http.StatusOK, "")
	hooks.acceptAll("freed-restart", 20)

	crm.SetRespond(nil)
	crm.WaitDelivered(t, hooks.accepted, time.Minute)
	time.Sleep(12 * time.Second) // a redelivery would come within one ack deadline (10 s)
	delivered := crm.Delivered()
	if distinct := len(gatewaytest.UniqueIDs(delivered)); distinct != hooks.accepted || len(delivered) != distinct {
		t.Errorf("%d webhooks accepted, %d events delivered, %d distinct: want each exactly once", hooks.accepted, len(delivered), distinct)
	}
	t.Logf("%d webhooks posted, %d accepted, each delivered once", hooks.n, hooks.accepted)
}

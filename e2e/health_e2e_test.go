package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/internal/natstest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

type healthAnswer struct {
	code       int
	retryAfter string
	Status     string `json:"status"`
	Reason     string `json:"reason"`
}

func health(t *testing.T, g *gatewaytest.Gateway) healthAnswer {
	t.Helper()
	resp, err := http.Get(g.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h := healthAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("pbx_health Content-Type %q", ct)
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("pbx_health answered %d %q: %v", resp.StatusCode, body, err)
	}
	return h
}

func wantHealthy(t *testing.T, h healthAnswer) {
	t.Helper()
	if h.code != http.StatusOK || h.Status != "ok" || h.Reason != "" {
		t.Fatalf("pbx_health = %+v, want 200 ok", h)
	}
}

func wantUnhealthy(t *testing.T, h healthAnswer, reason string) {
	t.Helper()
	if h.code != http.StatusServiceUnavailable || h.Status != "unavailable" || h.Reason != reason || h.retryAfter == "" {
		t.Fatalf("pbx_health = %+v, want 503 unavailable %q with Retry-After", h, reason)
	}
}

// waitHealth waits for an answer with the code and reason ("" for 200).
func waitHealth(t *testing.T, g *gatewaytest.Gateway, code int, reason string) healthAnswer {
	t.Helper()
	var h healthAnswer
	gatewaytest.Eventually(t, 30*time.Second, fmt.Sprintf("pbx_health %d %s", code, reason), func() bool {
		h = health(t, g)
		return h.code == code && h.Reason == reason
	})
	return h
}

// With the CRM down events pile up in a small store: pbx_health turns 503 "store full" before
// any webhook is refused, so a load balancer moves PBX traffic away in time; once the CRM
// takes the backlog it is 200 again and nothing accepted was lost.
func TestHealthStoreFull(t *testing.T) {
	var up atomic.Bool
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int {
		if !up.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	config := mangoGateway(crm.URL+"/events", "127.0.0.1")
	config.PBX = append(config.PBX, "max_store 64KiB")
	g := startMangoGateway(t, config)
	wantHealthy(t, health(t, g))

	accepted := 0
fill:
	for call := 0; call < 100; call++ {
		for _, m := range mango.SampleCall(fmt.Sprintf("E-health-%d", call), fmt.Sprintf("E-health-%d-leg", call), time.Now()) {
			code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON))
			if code != http.StatusOK {
				t.Fatalf("webhook %d refused (%d %s) while pbx_health still said 200", accepted+1, code, body)
			}
			accepted++
			if h := health(t, g); h.code != http.StatusOK {
				wantUnhealthy(t, h, "store full")
				break fill
			}
		}
	}
	wantUnhealthy(t, health(t, g), "store full")
	t.Logf("pbx_health turned 503 after %d events", accepted)

	up.Store(true)
	wantHealthy(t, waitHealth(t, g, http.StatusOK, ""))
	crm.WaitDelivered(t, accepted, 30*time.Second)
}

// With an external NATS cluster that goes away, pbx_health turns 503 "queue not ready",
// webhooks get 503 and pbxbridge_queue_ready is 0; when NATS is back, all recover and
// delivery goes on.
func TestHealthQueueNotReady(t *testing.T) {
	dir := t.TempDir()
	nats := natstest.RunServer(t, &server.Options{StoreDir: dir})
	port := nats.Addr().(*net.TCPAddr).Port // the restart takes the same one
	t.Cleanup(func() { nats.Shutdown() })
	crm := gatewaytest.NewCRM(t, nil)
	config := mangoGateway(crm.URL+"/events", "127.0.0.1")
	config.Store = fmt.Sprintf("nats nats://127.0.0.1:%d", port)
	g := startMangoGateway(t, config)
	wantHealthy(t, health(t, g))
	waitMetric(t, g, "pbxbridge_queue_ready", 1)
	postCall(t, g, "E-nats-1")
	crm.WaitDelivered(t, 4, 30*time.Second)

	nats.Shutdown()
	nats.WaitForShutdown()
	wantUnhealthy(t, waitHealth(t, g, http.StatusServiceUnavailable, "queue not ready"), "queue not ready")
	waitMetric(t, g, "pbxbridge_queue_ready", 0)
	postMango(t, g, mango.SampleCall("E-nats-2", "L", time.Now())[0], http.StatusServiceUnavailable)

	nats = natstest.RunServer(t, &server.Options{Port: port, StoreDir: dir})
	wantHealthy(t, waitHealth(t, g, http.StatusOK, ""))
	waitMetric(t, g, "pbxbridge_queue_ready", 1)
	postCall(t, g, "E-nats-3")
	crm.WaitDelivered(t, 8, 30*time.Second)
}

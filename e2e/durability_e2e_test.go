package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// flakyCRM answers 503 to about one attempt in ten, so some events are always in backoff.
func flakyCRM(t *testing.T) *gatewaytest.CRM {
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(1, 2))
	return gatewaytest.NewCRM(t, func(event.Event, int) int {
		mu.Lock()
		defer mu.Unlock()
		if rnd.IntN(10) == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
}

func TestKill9UnderLoadLosesNothing(t *testing.T) {
	crm := flakyCRM(t)
	g := startMango(t, crm, "127.0.0.1")
	deadline := time.Now().Add(3 * time.Minute)
	done := make(chan *gatewaytest.Accepted, 1)
	go func() {
		done <- gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", testKey, testSalt, "kill", 150, 8, deadline)
	}()

	// The first kill comes as soon as the CRM has an event, so it falls within the load however
	// fast the machine runs it; the others at random moments until the load is done.
	crm.WaitDelivered(t, 1, 30*time.Second)
	kills := 0
	for running := true; running && kills < 3; {
		g.Kill()
		kills++
		g.Restart()
		select {
		case acc := <-done:
			done <- acc
			running = false
		case <-time.After(time.Duration(200+rand.IntN(800)) * time.Millisecond):
		}
	}
	acc := <-done
	dups := gatewaytest.CheckDelivered(t, crm, acc, 2*time.Minute)
	t.Logf("kills %d; events acknowledged %d, delivered %d distinct + %d re-deliveries; requests %d, refused %v",
		kills, acc.Count(), acc.Count(), dups, acc.Posted, acc.Refused)
	if kills == 0 {
		t.Fatal("the load finished before any kill")
	}
}

func TestFullStoreAnswers503ThenRecovers(t *testing.T) {
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusServiceUnavailable })
	config := mangoGateway(crm.URL+"/events", "127.0.0.1")
	config.PBX = append(config.PBX, "max_store 48KiB")
	g := startMangoGateway(t, config)

	accepted := 0
	var full string
	for i := 0; i < 500 && full == ""; i++ {
		m := mango.SampleCall(fmt.Sprintf("E-full-%d", i), fmt.Sprintf("L-%d", i), time.Now())[0]
		code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON))
		switch code {
		case http.StatusOK:
			accepted++
		case http.StatusServiceUnavailable:
			full = body
		default:
			t.Fatalf("%d %s", code, body)
		}
	}
	if full == "" || !strings.Contains(full, "store full") {
		t.Fatalf("after %d accepted webhooks no 503 for a full store (last answer %q)", accepted, full)
	}
	code := http.StatusOK
	resp, err := http.Get(g.URL + "/healthz")
	if err == nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("pbx_health %d while the store is full", code)
	}
	crm.SetRespond(nil) // the CRM is back: deliveries free the store
	crm.WaitDelivered(t, accepted, time.Minute)
	gatewaytest.Eventually(t, 30*time.Second, "webhooks accepted again", func() bool {
		m := mango.SampleCall("E-after-full", "L-after-full", time.Now())[0]
		code, _ := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON))
		return code == http.StatusOK
	})
	t.Logf("accepted %d webhooks before the store filled (48KiB)", accepted)
}

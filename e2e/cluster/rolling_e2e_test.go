package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

const (
	commandToken = "cluster-command-token-0123456789"
	// handoverWithin is what a graceful stop of the delivering gateway may cost: the other
	// takes over in seconds, not after the pin's TTL and the ack deadlines (about 33 s).
	handoverWithin = 5 * time.Second
)

// commandGatewayConfig is gatewayConfig with the Mango account's command API at mangoAPI and
// pbx_originate at /calls.
func commandGatewayConfig(name string, urls []string, natsBlock, crmURL, mangoAPI string) string {
	return strings.NewReplacer(
		"\t\t\tforward crm\n", "\t\t\tapi_url "+mangoAPI+"\n\t\t\tforward crm\n",
		"\troute /healthz {", "\troute /calls {\n\t\tpbx_originate {\n\t\t\ttoken {env.TEST_COMMAND_TOKEN}\n\t\t}\n\t}\n\troute /healthz {",
	).Replace(gatewayConfig(name, urls, natsBlock, crmURL))
}

// Two gateways of a cluster share one Mango account. A burst of click-to-call commands through
// both keeps to Mango's 4 a second, and the lock-out Mango answers one gateway holds on the
// other. Then a rolling deploy under a steady stream of calls: each gateway in turn is stopped
// gracefully (SIGTERM) and started again; when the stopped one was delivering, the other takes
// over within handoverWithin, and every acknowledged event reaches the CRM in call order.
func TestCommandLimitsAndRollingRestart(t *testing.T) {
	// Not parallel: beside TestScaleOut's and the TLS test's clusters, a NATS node's port
	// (picked free, then bound) was once taken before it bound ("did not start").
	nats := startNATSCluster(t, 3)
	mangoAPI := gatewaytest.NewMangoAPI(t, mangoKey, mangoSalt)
	crm := flakyCRM(t, 5, nil)
	gws := map[string]*gatewaytest.Gateway{}
	for _, name := range []string{"g1", "g2"} {
		gws[name] = gatewaytest.Start(t, commandGatewayConfig(name, nats.URLs(), replicatedNATS, crm.URL+"/events", mangoAPI.APIURL()),
			"TEST_MANGO_SALT="+mangoSalt, "TEST_COMMAND_TOKEN="+commandToken)
		gws[name].WaitReady()
	}

	t.Run("commands keep to Mango's limit across gateways", func(t *testing.T) {
		const burst = 24
		codes := make([]int, burst)
		var wg sync.WaitGroup
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := gws[fmt.Sprintf("g%d", i%2+1)]
				resp, _ := gatewaytest.Request(t, http.MethodPost, g.URL+"/calls", "application/json",
					fmt.Sprintf(`{"account":"office","from":"101","to":"7900555%04d"}`, i), "Authorization", "Bearer "+commandToken)
				codes[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		accepted := 0
		for _, code := range codes {
			switch code {
			case http.StatusOK:
				accepted++
			case http.StatusTooManyRequests:
			default:
				t.Errorf("answer %d to a command of the burst", code)
			}
		}
		mangoAPI.CheckNoViolations(t)
		if got := len(mangoAPI.Received()); got != accepted || accepted < 4 {
			t.Errorf("%d commands accepted through two gateways, Mango got %d", accepted, got)
		}
		t.Logf("burst of %d through two gateways: %d accepted, %d answered 429", burst, accepted, burst-accepted)

		mangoAPI.Play("401")
		for i, name := range []string{"g1", "g2"} {
			before := mangoAPI.Requests()
			resp, body := gatewaytest.Request(t, http.MethodPost, gws[name].URL+"/calls", "application/json",
				fmt.Sprintf(`{"account":"office","from":"101","to":"7900666%04d"}`, i), "Authorization", "Bearer "+commandToken)
			sent := mangoAPI.Requests() - before
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || sent != 1-i {
				t.Errorf("%s during Mango's lock-out: %d %s, Mango got %d requests", name, resp.StatusCode, body, sent)
			}
		}
		mangoAPI.CheckNoViolations(t)
	})

	lb := newBalancer(t, 15*time.Millisecond, gws, "g1", "g2")
	fl := &fleet{gws: gws, since: map[string]int{}}
	done := make(chan *gatewaytest.Accepted, 1)
	go func() {
		done <- gatewaytest.MangoLoad(t, lb.URL+"/hooks/mango", mangoKey, mangoSalt, "rolling", 600, 16, time.Now().Add(5*time.Minute))
	}()
	crm.WaitDelivered(t, 100, time.Minute)
	var handovers []string
	for _, name := range []string{"g1", "g2", "g1"} {
		delivering := fl.holder(t) == name
		went := fl.count(settled)
		stopped := time.Now()
		fl.stop(name)
		if delivering {
			gatewaytest.Eventually(t, time.Minute, "the other gateway delivering after "+name+" stopped", func() bool {
				return fl.count(settled) > went
			})
			took := time.Since(stopped)
			handovers = append(handovers, fmt.Sprintf("%s stopped while delivering: the other delivered %s later", name, took.Round(time.Millisecond)))
			if took > handoverWithin {
				t.Errorf("graceful stop of %s, which delivered: the other gateway delivered %s later, want < %s", name, took.Round(time.Millisecond), handoverWithin)
			}
		}
		fl.restart(name)
	}
	acc := <-done
	dups := gatewaytest.CheckDelivered(t, crm, acc, 3*time.Minute)
	t.Logf("rolling restart: %d events acknowledged, all delivered, %d re-deliveries (same webhook-id); %s",
		acc.Count(), dups, strings.Join(handovers, "; "))
	if len(handovers) == 0 {
		t.Error("no gateway was stopped while delivering")
	}
	for name, g := range gws {
		logs := g.Logs()
		if strings.Contains(logs, "handing delivery over failed") {
			t.Errorf("%s could not hand delivery over", name)
		}
		if t.Failed() {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "instance") || strings.Contains(line, "SIGTERM") || strings.Contains(line, "queue ready") {
					t.Logf("%s: %s", name, line)
				}
			}
		}
	}
}

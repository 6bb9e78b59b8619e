package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/bitrix24/bitrix24test"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// bitrix24GatewayConfig is a cluster gateway with a Bitrix24 target for the portal p and the
// Mango account office (commands to mangoAPI) forwarding to it.
func bitrix24GatewayConfig(urls []string, p *bitrix24test.Portal, mangoAPI string) string {
	return fmt.Sprintf(`{
	admin {ADMIN}
	pbx {
		nats %s {
			%s
		}
		outbound_allow 127.0.0.1/32
		target b24 bitrix24 %s {
			client_id %s
			client_secret {env.TEST_B24_SECRET}
			oauth_url %s
			lines {
				+74951234567 office
			}
			retry {
				backoff 50ms 1s
			}
		}
		mango office {
			api_key %s
			api_salt {env.TEST_MANGO_SALT}
			api_url %s
			sources 127.0.0.1
			forward b24
		}
	}
}
{HTTP} {
	bind 127.0.0.1
	route /hooks/mango/* {
		pbx_webhook office
	}
	route /bitrix24 {
		pbx_crm b24
	}
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`, strings.Join(urls, " "), replicatedNATS, p.URL, p.ClientID, p.URL, mangoKey, mangoAPI)
}

// Two gateways of a cluster share the installation: it is made through one, the other uses the
// stored pair; the access token expires mid-run while both need it (one delivers calls, the
// other places clicks) and is refreshed once, not once per gateway; after the delivering
// gateway is killed, the other finishes the calls with the stored pair.
func TestBitrix24Cluster(t *testing.T) {
	nats := startNATSCluster(t, 3)
	p := bitrix24test.New(t, bitrix24test.Options{})
	p.AddUser("7", "101")
	mangoAPI := gatewaytest.NewMangoAPI(t, mangoKey, mangoSalt)
	gws := map[string]*gatewaytest.Gateway{}
	for _, name := range []string{"g1", "g2"} {
		gws[name] = gatewaytest.Start(t, bitrix24GatewayConfig(nats.URLs(), p, mangoAPI.APIURL()),
			"TEST_MANGO_SALT="+mangoSalt, "TEST_B24_SECRET="+p.ClientSecret)
		gws[name].WaitReady()
	}
	ctx := context.Background()
	if resp, err := p.Install(ctx, gws["g2"].URL+"/bitrix24"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("install through g2: %v %v", resp, err)
	}

	const calls = 60
	lb := newBalancer(t, 10*time.Millisecond, gws, "g1", "g2")
	var load sync.WaitGroup
	load.Add(1)
	go func() {
		defer load.Done()
		gatewaytest.MangoLoad(t, lb.URL+"/hooks/mango", mangoKey, mangoSalt, "cluster", calls, 4, time.Now().Add(90*time.Second))
	}()
	waitFinished := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := p.WaitFinished(ctx, n); err != nil {
			t.Fatalf("%d calls not finished", n)
		}
	}
	waitFinished(10)
	p.ExpireTokens()
	var clicks sync.WaitGroup
	for i := range 3 {
		clicks.Add(1)
		go func() {
			defer clicks.Done()
			_, resp, err := p.ClickToCall(ctx, "7", fmt.Sprintf("+7900123456%d", i), "+74951234567", "")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("click through g2: %v %v", resp, err)
			}
		}()
	}
	clicks.Wait()
	waitFinished(30)
	if n := p.Stats().Refreshes; n != 1 {
		t.Errorf("%d token refreshes after the token expired, want 1", n)
	}
	if n := len(mangoAPI.Received()); n != 3 {
		t.Errorf("Mango got %d callbacks, want 3", n)
	}

	holder := ""
	for name, g := range gws {
		if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_bitrix24_calls_total{target="b24",step="registered"}`); v > 0 {
			holder = name
		}
	}
	if holder == "" {
		t.Fatal("no gateway registered a call")
	}
	gws[holder].Kill()
	t.Logf("killed %s, the delivering gateway; the other takes over", holder)
	load.Wait()
	waitFinished(calls)
	for _, c := range p.Calls() {
		if strings.HasPrefix(c.ExternalCallID, "cluster-") && c.Finishes != 1 {
			t.Errorf("call %s finished %d times", c.ExternalCallID, c.Finishes)
		}
	}
	if n := p.Stats().Refreshes; n != 1 {
		t.Errorf("%d token refreshes in all, want 1", n)
	}
}

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// TestReloadsUnderLoadEveryHandlerAnswers: 20 reloads while 32 senders post webhooks and a CRM
// sends click-to-call commands. During a reload every handler uses the running queue, so none
// answers 503; nothing accepted is lost or delivered twice.
func TestReloadsUnderLoadEveryHandlerAnswers(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	fakeMango := gatewaytest.NewMangoAPI(t, fakeMangoKey, fakeMangoSalt)
	config := originateGateway(crm.URL+"/events", fakeMango.APIURL(), "http://127.0.0.1:9/xvb")
	configs := []string{config, strings.Replace(config, "timeout 2s", "timeout 3s", 1)}
	g := gatewaytest.Start(t, config,
		"TEST_MANGO_SALT="+fakeMangoSalt, "TEST_XVB_TOKEN="+fakeXVBToken, "CRM_COMMAND_TOKEN="+originateToken)
	g.WaitReady()

	load := make(chan *gatewaytest.Accepted, 1)
	go func() {
		load <- gatewaytest.MangoLoad(t, g.URL+"/hooks/mango", fakeMangoKey, fakeMangoSalt, "reload", 400, 32, time.Now().Add(3*time.Minute))
	}()
	stop := make(chan struct{})
	var commandWG sync.WaitGroup
	commands := map[int]int{} // by status
	commandWG.Add(1)
	go func() { // two a second: within Mango's 4/s even when a loaded machine bunches them
		defer commandWG.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			code, body := sendCommandAgain(g, fmt.Sprintf(`{"account":"office","from":"101","to":"7900777%04d","command_id":"reload-%d"}`, i, i))
			commands[code]++
			if code != http.StatusOK {
				t.Errorf("command during reloads: %d %s", code, body)
			}
		}
	}()
	for i := range 20 {
		if err := g.Reload(configs[(i+1)%2]); err != nil {
			t.Fatal(err)
		}
	}
	acc := <-load
	close(stop)
	commandWG.Wait()

	fakeMango.CheckNoViolations(t)
	r := gatewaytest.CheckDeliveries(t, crm, acc, time.Minute)
	if r.Duplicates > 0 || acc.Refused[http.StatusServiceUnavailable] > 0 {
		t.Errorf("%d delivered twice, %d webhooks answered 503", r.Duplicates, acc.Refused[http.StatusServiceUnavailable])
	}
	m := g.MetricsText()
	if want := `pbxbridge_events_total{pbx="mango",type="call.ringing"} 400`; !strings.Contains(m, want) {
		t.Errorf("counters did not keep counting across reloads: want %s", want)
	}
	t.Logf("20 reloads: %d webhooks accepted of %d requests (refused %v), commands by status %v", acc.Count(), acc.Posted, acc.Refused, commands)
}

// sendCommandAgain sends a command as a CRM does, repeating it under the same command_id when
// the connection fails without an answer (a keep-alive connection the stopping config closed
// as the request went out): the repetition gets the first answer, or sends it if none came.
func sendCommandAgain(g *gatewaytest.Gateway, body string) (int, string) {
	var err error
	for range 5 {
		var req *http.Request
		req, err = http.NewRequest(http.MethodPost, g.URL+"/calls", strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+originateToken)
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
	}
	return 0, err.Error()
}

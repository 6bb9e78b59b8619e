// Package cluster tests scale-out end to end: several built pbxbridge gateways behind a load
// balancer, sharing a 3-node NATS JetStream cluster, while gateways and NATS nodes fail.
package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

const (
	mangoKey  = "clusterkey0123456789abcdefghijkl"
	mangoSalt = "clustersalt0123456789abcdefghijk"
	formType  = "application/x-www-form-urlencoded"
	// prefix names the gateways' streams: E2E_EVENTS, consumer target-crm.
	prefix = "e2e"
)

// gatewayConfig is every gateway's Caddyfile; name only sets the X-Gateway header that tells
// the CRM which gateway delivered an event. natsBlock goes inside `nats <urls> { … }`.
func gatewayConfig(name string, urls []string, natsBlock, crmURL string) string {
	return fmt.Sprintf(`{
	admin {ADMIN}
	pbx {
		nats %s {
			%s
		}
		target crm %s {
			header X-Gateway %s
			retry {
				backoff 100ms 1s
			}
		}
		mango office {
			api_key %s
			api_salt {env.TEST_MANGO_SALT}
			sources 127.0.0.1
			forward crm
		}
	}
}
{HTTP} {
	bind 127.0.0.1
	route /hooks/mango/* {
		pbx_webhook office
	}
	route /healthz {
		pbx_health
	}
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`, strings.Join(urls, " "), natsBlock, crmURL, name, mangoKey)
}

func startGateway(t *testing.T, name string, urls []string, natsBlock, crmURL string) *gatewaytest.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, gatewayConfig(name, urls, natsBlock, crmURL), "TEST_MANGO_SALT="+mangoSalt)
	g.WaitReady()
	return g
}

// balancer stands in for the load balancer in front of the gateways: round robin, and the
// next gateway when one cannot be reached (a 503 goes back to the PBX, which sends again).
// PBX traffic arrives at a steady pace, not as fast as the gateways take it.
type balancer struct {
	*httptest.Server
	pace     *time.Ticker
	next     atomic.Uint64
	mu       sync.Mutex
	accepted map[string]int // 200s by gateway
}

func newBalancer(t *testing.T, pace time.Duration, gateways map[string]*gatewaytest.Gateway, order ...string) *balancer {
	b := &balancer{pace: time.NewTicker(pace), accepted: map[string]int{}}
	client := &http.Client{Timeout: 10 * time.Second}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-b.pace.C
		body, _ := io.ReadAll(r.Body)
		n := b.next.Add(1)
		for i := range order {
			name := order[(int(n)+i)%len(order)]
			resp, err := client.Post(gateways[name].URL+r.URL.Path, r.Header.Get("Content-Type"), bytes.NewReader(body))
			if err != nil {
				continue // down: try the next one, as lb_try_duration does
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				b.mu.Lock()
				b.accepted[name]++
				b.mu.Unlock()
			}
			w.WriteHeader(resp.StatusCode)
			w.Write(answer)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(func() { b.Close(); b.pace.Stop() })
	return b
}

func (b *balancer) acceptedBy() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.accepted {
		out[k] = v
	}
	return out
}

// deliveredBy counts the CRM's successful requests by the gateway that made them.
func deliveredBy(ds []gatewaytest.Delivery) map[string]int {
	out := map[string]int{}
	for _, d := range ds {
		out[d.Header.Get("X-Gateway")]++
	}
	return out
}

// rounds is how many times the test kills the delivering gateway and the consumer's NATS
// leader: 1 in CI; PBXBRIDGE_CLUSTER_ROUNDS=10 for a longer run.
func rounds(t *testing.T) int {
	n := 1
	if v := os.Getenv("PBXBRIDGE_CLUSTER_ROUNDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("PBXBRIDGE_CLUSTER_ROUNDS=%q: want a positive number", v)
		}
	}
	return n
}

// Two gateways on a 3-node NATS cluster behind a load balancer take a steady stream of Mango
// calls. Mid-run the gateway that delivers is killed (-9) and the NATS node that leads the
// CRM's consumer is shut down; both come back. Every acknowledged event must reach the CRM,
// each call's events in order, re-deliveries only with the same webhook-id. Then, with the
// cluster calm: the same webhooks sent to both gateways are delivered once, and dead letters
// made through one gateway are listed, shown, replayed and purged through the other.
func TestScaleOut(t *testing.T) {
	t.Parallel() // mostly waiting for handovers
	nats := startNATSCluster(t, 3)
	var rejectDead atomic.Bool
	crm := flakyCRM(t, 3, func(ev event.Event) bool {
		return rejectDead.Load() && strings.HasPrefix(ev.Data.CallID, "dead-")
	})
	gws := map[string]*gatewaytest.Gateway{
		"g1": startGateway(t, "g1", nats.URLs(), replicatedNATS, crm.URL+"/events"),
		"g2": startGateway(t, "g2", nats.URLs(), replicatedNATS, crm.URL+"/events"),
	}
	lb := newBalancer(t, 15*time.Millisecond, gws, "g1", "g2")
	fl := &fleet{gws: gws, since: map[string]int{}}

	n := rounds(t)
	start := time.Now()
	since := func() string { return time.Since(start).Round(100 * time.Millisecond).String() }
	done := make(chan *gatewaytest.Accepted, 1)
	go func() {
		done <- gatewaytest.MangoLoad(t, lb.URL+"/hooks/mango", mangoKey, mangoSalt, "load", 1000*n, 32, time.Now().Add(time.Duration(n)*5*time.Minute))
	}()

	var faults []string
	// handover waits until some gateway took over delivery after a fault and then for
	// deliveries to go on.
	// handover applies a fault and waits until a gateway has taken over delivery and then
	// released what it held back.
	handover := func(what string, fault func()) {
		t.Helper()
		took, went := fl.count(tookOver), fl.count(settled)
		fault()
		gatewaytest.Eventually(t, 90*time.Second, "a gateway taking over delivery after "+what, func() bool {
			return fl.count(tookOver) > took
		})
		tookAt := since()
		gatewaytest.Eventually(t, 90*time.Second, "delivery going on after "+what, func() bool {
			return fl.count(settled) > went
		})
		faults = append(faults, fmt.Sprintf("%s: %s took over by %s, delivered from %s", what, fl.holder(t), tookAt, since()))
	}
	crm.WaitDelivered(t, 100, time.Minute)
	for round := range n {
		// Kill the gateway that delivers: the other takes over after PinnedTTL, and its held
		// events come back to the other when their ack deadline passes.
		victim := fl.holder(t)
		handover(fmt.Sprintf("round %d: kill -9 %s (delivering) at %s", round+1, victim, since()), func() { fl.kill(victim) })
		fl.restart(victim)

		// Shut down the node leading the consumer: the pin moves while both gateways live.
		leader := nats.consumerLeader(strings.ToUpper(prefix)+"_EVENTS", "target-crm")
		handover(fmt.Sprintf("round %d: NATS %s (consumer leader) down at %s", round+1, nats.nodes[leader].name, since()), func() { nats.stop(leader) })
		for _, g := range gws {
			waitHealth(t, g, http.StatusOK) // two of three nodes are a working cluster
		}
		nats.start(leader)
		faults = append(faults, fmt.Sprintf("round %d: NATS %s back at %s", round+1, nats.nodes[leader].name, since()))
	}
	acc := <-done
	ingestEnd := since()
	dups := gatewaytest.CheckDelivered(t, crm, acc, 3*time.Minute)
	all := crm.Delivered()
	t.Logf("scale-out summary: %d webhooks posted (re-sends included), %d events acknowledged, %d delivered + %d re-deliveries (same webhook-id), order violations: %s; refused %v; ingest %s, all delivered %s",
		acc.Posted, acc.Count(), acc.Count(), dups, violations(t), acc.Refused, ingestEnd, since())
	t.Logf("accepted by gateway %v, delivered by gateway %v", lb.acceptedBy(), deliveredBy(all))
	for _, f := range faults {
		t.Log(f)
	}
	for _, name := range []string{"g1", "g2"} {
		logs := gws[name].Logs()
		t.Logf("%s took over delivery %d times, let go of it %d times", name, strings.Count(logs, tookOver), strings.Count(logs, letGo))
		if strings.Contains(logs, "delivering anyway") {
			t.Errorf("%s gave up waiting for another instance's events (settleMax)", name)
		}
	}
	for name, n := range lb.acceptedBy() {
		if n == 0 {
			t.Errorf("gateway %s accepted no webhook", name)
		}
	}
	if by := deliveredBy(all); by["g1"] == 0 || by["g2"] == 0 {
		t.Errorf("both gateways should have delivered: %v", by)
	}
	for name, g := range gws {
		if v := metricValue(t, g, "pbxbridge_queue_ready"); v != 1 {
			t.Errorf("%s: pbxbridge_queue_ready %v after the faults", name, v)
		}
	}

	checkDedupeAcrossGateways(t, crm, gws["g1"], gws["g2"])
	checkDeadLettersFromAnyGateway(t, crm, &rejectDead, gws["g1"], gws["g2"])
}

// replicatedNATS is the gateways' nats block on the 3-node cluster.
const replicatedNATS = "replicas 3\n\t\t\tprefix " + prefix

// flakyCRM is a CRM stand-in that answers one request in five with 503 (a seeded sequence), so
// that some events are always in backoff, held in their lanes, and 422 to the events reject
// picks (nil: none).
func flakyCRM(t *testing.T, seed uint64, reject func(event.Event) bool) *gatewaytest.CRM {
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	return gatewaytest.NewCRM(t, func(ev event.Event, _ int) int {
		if reject != nil && reject(ev) {
			return http.StatusUnprocessableEntity
		}
		mu.Lock()
		defer mu.Unlock()
		if rnd.IntN(5) == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
}

// What a gateway logs when it gets a target's pin, when it starts delivering after holding
// back what it fetched, and when it loses the pin.
const (
	tookOver = "this instance now delivers"
	settled  = "delivering: no other instance holds events"
	letGo    = "another instance took over delivery"
)

// fleet reads the gateways' logs to tell which one delivers the CRM's events.
type fleet struct {
	gws   map[string]*gatewaytest.Gateway
	since map[string]int // where the running process's log starts
}

// count counts a log message over every gateway process so far.
func (f *fleet) count(msg string) int {
	n := 0
	for _, g := range f.gws {
		n += strings.Count(g.Logs(), msg)
	}
	return n
}

// holder is the gateway that holds the pin: its running process took over last and has not
// let go since.
func (f *fleet) holder(t *testing.T) string {
	t.Helper()
	var holders []string
	gatewaytest.Eventually(t, 90*time.Second, "one gateway delivering", func() bool {
		holders = nil
		for name, g := range f.gws {
			logs := g.Logs()[f.since[name]:]
			if i := strings.LastIndex(logs, tookOver); i >= 0 && i > strings.LastIndex(logs, letGo) {
				holders = append(holders, name)
			}
		}
		return len(holders) == 1
	})
	return holders[0]
}

// kill kills a gateway with SIGKILL; what it logged no longer says who delivers.
func (f *fleet) kill(name string) {
	f.gws[name].Kill()
	f.since[name] = len(f.gws[name].Logs())
}

// stop stops a gateway gracefully; what it logged no longer says who delivers.
func (f *fleet) stop(name string) {
	f.gws[name].Stop()
	f.since[name] = len(f.gws[name].Logs())
}

// restart starts a killed or stopped gateway again.
func (f *fleet) restart(name string) {
	f.gws[name].Restart()
	f.gws[name].WaitReady()
}

func violations(t *testing.T) string {
	if t.Failed() {
		return "see errors"
	}
	return "none"
}

// A PBX re-send that reaches the other gateway is a duplicate there (same Nats-Msg-Id in the
// shared stream) and is delivered once.
func checkDedupeAcrossGateways(t *testing.T, crm *gatewaytest.CRM, g1, g2 *gatewaytest.Gateway) {
	t.Helper()
	duplicates := `pbxbridge_webhooks_received_total{account="office",outcome="duplicate",pbx="mango"}`
	before := metricValue(t, g2, duplicates)
	call := mango.SampleCall("dup-1", "dup-1-leg", time.Now())
	ids := map[string]bool{}
	for _, g := range []*gatewaytest.Gateway{g1, g2} {
		for _, m := range call {
			if code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(mangoKey, mangoSalt, m.JSON)); code != http.StatusOK {
				t.Fatalf("%s: %d %s", m.Name, code, body)
			}
			for _, ev := range mango.Translate(event.Origin{PBX: "mango", Account: "office"}, strings.TrimPrefix(m.Suffix, "/"), []byte(m.JSON), time.Now()) {
				ids[ev.ID] = true
			}
		}
	}
	if got := metricValue(t, g2, duplicates) - before; got != float64(len(call)) {
		t.Errorf("the second gateway counted %v duplicates, want %d", got, len(call))
	}
	waitDrained(t, g1)
	count := map[string]int{}
	for _, d := range crm.Delivered() {
		if id := d.Header.Get("webhook-id"); ids[id] {
			count[id]++
		}
	}
	if len(count) != len(ids) {
		t.Errorf("delivered %d of the %d events sent to both gateways", len(count), len(ids))
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("event %s sent to both gateways was delivered %d times", id, n)
		}
	}
}

// Dead letters live in JetStream: whichever gateway made them, any gateway lists, shows,
// replays and purges them.
func checkDeadLettersFromAnyGateway(t *testing.T, crm *gatewaytest.CRM, rejectDead *atomic.Bool, g1, g2 *gatewaytest.Gateway) {
	t.Helper()
	rejectDead.Store(true)
	for _, m := range mango.SampleCall("dead-1", "dead-1-leg", time.Now()) {
		if code, body := g1.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(mangoKey, mangoSalt, m.JSON)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", m.Name, code, body)
		}
	}
	var dls []delivery.DeadLetter
	gatewaytest.Eventually(t, time.Minute, "4 dead letters listed by the other gateway", func() bool {
		// While a NATS node that was down rejoins, JetStream may not answer for a moment (500).
		code, body := g2.Admin(http.MethodGet, "/pbx/dead-letters?target=crm")
		dls = nil
		return code == http.StatusOK && json.Unmarshal(body, &dls) == nil && len(dls) == 4
	})
	var one delivery.DeadLetter
	g1.AdminJSON(http.MethodGet, "/pbx/dead-letters/"+dls[0].ID, http.StatusOK, &one)
	if one.ID != dls[0].ID || one.Status != http.StatusUnprocessableEntity {
		t.Errorf("dead letter shown by g1: %+v", one)
	}
	rejectDead.Store(false)
	g2.AdminJSON(http.MethodPost, "/pbx/dead-letters/"+dls[0].ID+"/replay", http.StatusOK, nil)
	eventID := strings.TrimPrefix(dls[0].ID, "crm/")
	gatewaytest.Eventually(t, time.Minute, "the replayed dead letter delivered", func() bool {
		for _, d := range crm.Delivered() {
			if d.Header.Get("webhook-id") == eventID {
				return true
			}
		}
		return false
	})
	g1.AdminJSON(http.MethodDelete, "/pbx/dead-letters?target=crm", http.StatusOK, nil)
	dls = nil
	g2.AdminJSON(http.MethodGet, "/pbx/dead-letters?target=crm", http.StatusOK, &dls)
	if len(dls) != 0 {
		t.Errorf("dead letters left after g1 purged them: %+v", dls)
	}
}

// waitDrained waits until the CRM's consumer has nothing pending or unacknowledged.
func waitDrained(t *testing.T, g *gatewaytest.Gateway) {
	t.Helper()
	gatewaytest.Eventually(t, time.Minute, "an empty queue", func() bool {
		var st delivery.Status
		g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &st)
		return len(st.Targets) == 1 && st.Targets[0].Depth == 0
	})
}

func waitHealth(t *testing.T, g *gatewaytest.Gateway, code int) {
	t.Helper()
	gatewaytest.Eventually(t, time.Minute, fmt.Sprintf("pbx_health %d", code), func() bool {
		resp, err := http.Get(g.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == code
	})
}

// metricValue reads one series (name and labels as exposed) from a gateway's metrics.
func metricValue(t *testing.T, g *gatewaytest.Gateway, series string) float64 {
	t.Helper()
	v, ok := gatewaytest.Metric(g.MetricsText(), series)
	if !ok {
		t.Fatalf("no %s in the metrics", series)
	}
	return v
}

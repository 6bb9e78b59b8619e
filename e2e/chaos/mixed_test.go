package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// scale sizes the mixed-load scenario.
type scale struct {
	drivers  int           // load goroutines per PBX, each playing one call after another
	burst    int           // calls per PBX started at once before each kill
	pause    time.Duration // between a driver's calls
	measure  time.Duration // each latency phase
	rounds   int           // of the faults in turn
	together time.Duration // of all faults at once
	drain    time.Duration // for the last deliveries after the load stops
	maxStore string        // room for a latency phase's backlog, small enough to fill in seconds
}

var (
	shortScale = scale{drivers: 1, burst: 16, pause: 100 * time.Millisecond, measure: 3 * time.Second, rounds: 1, together: 20 * time.Second, drain: 3 * time.Minute, maxStore: "512KiB"}
	longScale  = scale{drivers: 2, burst: 32, pause: 100 * time.Millisecond, measure: 15 * time.Second, rounds: 3, together: 8 * time.Minute, drain: 10 * time.Minute, maxStore: "6MiB"}
)

// slowCRM is how long the slow CRM takes per request.
const slowCRM = 2 * time.Second

// Latency bound: while the CRMs are down or slow, the p99 of webhook answers stays within
// latencyFactor × the healthy phase's p99 + latencySlack. The machine is shared and noisy, so
// the bound is loose; a gateway that waited on the CRM would take ≥ 2 s.
const (
	latencyFactor = 3
	latencySlack  = 150 * time.Millisecond
)

// faults counts what was done to the gateway and the CRMs, by kind.
type faults struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *faults) add(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[kind]++
}

func (f *faults) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f.n)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, f.n[k]))
	}
	return strings.Join(parts, ", ")
}

// load plays Mango and XVB calls, each driver one after another, until stopped; like PBXs it
// re-sends every webhook until it is answered 200.
type load struct {
	t        *testing.T
	h        *harness
	deadline time.Time
	acc      *gatewaytest.Accepted // what finished calls got acknowledged
	stop     chan struct{}
	wg       sync.WaitGroup
	bursts   int
}

func startLoad(t *testing.T, h *harness, sc scale) *load {
	l := &load{t: t, h: h, acc: &gatewaytest.Accepted{}, stop: make(chan struct{}),
		deadline: time.Now().Add(sc.together + time.Duration(sc.rounds)*10*time.Minute)}
	for _, pbx := range []string{"mango", "xvb"} {
		for d := range sc.drivers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for n := 0; ; n++ {
					l.play(pbx, fmt.Sprintf("%s%d-%d", pbx, d, n), 1)
					select {
					case <-l.stop:
						return
					case <-time.After(sc.pause):
					}
				}
			}()
		}
	}
	return l
}

// play plays n calls of pbx at once (prefix makes them unique) and records what was acknowledged.
func (l *load) play(pbx, prefix string, n int) {
	if pbx == "mango" {
		l.acc.Add(gatewaytest.MangoLoad(l.t, l.h.g.URL+"/hooks/mango", mangoKey, mangoSalt, prefix, n, n, l.deadline))
		return
	}
	l.acc.Add(gatewaytest.XVBLoad(l.t, l.h.xvbURL("/hooks/xvb"), xvbAccessCode, prefix, n, n, l.deadline))
}

// burst starts n calls of each PBX at once, so the group commit forms large batches, whose
// publishes and fsync a kill -9 can cut.
func (l *load) burst(n int) {
	l.bursts++
	for _, pbx := range []string{"mango", "xvb"} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.play(pbx, fmt.Sprintf("burst%d-%s", l.bursts, pbx), n)
		}()
	}
}

// finish stops the load once every call under way is acknowledged.
func (l *load) finish() *gatewaytest.Accepted {
	close(l.stop)
	l.wg.Wait()
	return l.acc
}

// window is a phase whose webhook answers are measured.
type window struct {
	name     string
	from, to time.Time
}

type latency struct {
	n, refused    int
	p50, p99, max time.Duration
}

func measure(answers []gatewaytest.Answer, w window) latency {
	var took []time.Duration
	var l latency
	for _, a := range answers {
		if a.At.Before(w.from) || !a.At.Before(w.to) {
			continue
		}
		if a.Status != http.StatusOK {
			l.refused++
			continue
		}
		took = append(took, a.Took)
	}
	slices.Sort(took)
	if l.n = len(took); l.n == 0 {
		return l
	}
	at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	l.p50, l.p99, l.max = at(0.50), at(0.99), took[len(took)-1]
	return l
}

// status is the part of GET /pbx/status the scenario watches.
type status struct {
	Ready   bool `json:"ready"`
	Targets []struct {
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	} `json:"targets"`
}

func (h *harness) status() (status, bool) {
	resp, err := http.Get("http://" + h.g.AdminAddr + "/pbx/status")
	if err != nil {
		return status{}, false
	}
	defer resp.Body.Close()
	var s status
	return s, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&s) == nil
}

// waitCaughtUp waits until both targets deliver what arrives within a second: a latency
// phase starts without backlog, so the store has room for it.
func (h *harness) waitCaughtUp(timeout time.Duration) {
	h.t.Helper()
	gatewaytest.Eventually(h.t, timeout, "targets caught up", func() bool {
		s, ok := h.status()
		if !ok || !s.Ready || len(s.Targets) != 2 {
			return false
		}
		for _, t := range s.Targets {
			if t.OldestAgeSeconds > 1 {
				return false
			}
		}
		return true
	})
}

func (h *harness) health() (int, string) {
	resp, err := http.Get(h.g.URL + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body struct{ Reason string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Reason
}

func setCRMs(fronts []*front, state string) {
	for _, f := range fronts {
		switch state {
		case "down":
			f.down()
		case "slow":
			f.slow(slowCRM)
			f.up()
		case "healthy":
			f.slow(0)
			f.up()
		}
	}
}

// Mixed Mango and XVB load against two targets while, in turn and then together, the gateway
// is killed with SIGKILL and restarted, the config is reloaded with changes, the CRMs go down,
// come back slow (2 s per request) and recover, and the store fills up and frees again.
// Afterwards both CRMs have every acknowledged event, signed, in per-call order, duplicates
// only with their event's webhook-id; webhook answers stayed fast while the CRMs were down
// or slow.
func TestChaosMixedLoad(t *testing.T) {
	sc := shortScale
	if long() {
		sc = longScale
	}
	base, other := baseConfig, otherConfig
	base.maxStore, other.maxStore = sc.maxStore, sc.maxStore
	h := start(t, base)
	fronts := []*front{h.crm, h.erp}
	var done faults
	var windows []window
	phase := func(name string) {
		from := time.Now()
		time.Sleep(sc.measure) // the phase lasts this long under load: a measurement, not a wait for a signal
		windows = append(windows, window{name, from, time.Now()})
	}
	began := time.Now()
	l := startLoad(t, h, sc)
	// kill -9 while a burst of webhooks is being committed, and a restart.
	killMidBurst := func(rnd *rand.Rand) {
		l.burst(sc.burst)
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond) // into the burst: the fault's timing
		h.g.Kill()
		done.add("kill")
		h.g.Restart()
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault schedule seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 11))

	for round := range sc.rounds {
		// The CRMs go down, come back slow, then healthy; each phase measured.
		h.waitCaughtUp(2 * time.Minute)
		phase(fmt.Sprintf("healthy %d", round))
		setCRMs(fronts, "down")
		done.add("crm_down")
		phase(fmt.Sprintf("down %d", round))
		setCRMs(fronts, "slow")
		done.add("crm_slow")
		phase(fmt.Sprintf("slow %d", round))
		setCRMs(fronts, "healthy")

		// The store fills while the CRMs are down, and frees once they are back.
		h.waitCaughtUp(2 * time.Minute)
		unavailable := func() float64 { return h.metricSum("pbxbridge_webhooks_rejected_total", `reason="unavailable"`) }
		refusedBefore := unavailable()
		setCRMs(fronts, "down")
		gatewaytest.Eventually(t, 2*time.Minute, "webhooks refused for a full store", func() bool {
			return unavailable() > refusedBefore
		})
		done.add("store_full")
		if !strings.Contains(h.g.Logs(), "store full") {
			t.Errorf("no webhook refusal in the log says the store is full")
		}
		setCRMs(fronts, "healthy")
		gatewaytest.Eventually(t, time.Minute, "the store freed", func() bool {
			code, _ := h.health()
			return code == http.StatusOK
		})

		killMidBurst(rnd)

		// Reloads with changes, and back.
		h.reload(other)
		done.add("reload")
		h.reload(base)
		done.add("reload")
	}

	// Everything together: the CRMs flap on their own schedule while the gateway is killed
	// and reloaded on another.
	end := time.Now().Add(sc.together)
	crmsDone := make(chan struct{})
	go func() {
		defer close(crmsDone)
		rnd := rand.New(rand.NewPCG(seed, 7))
		for time.Now().Before(end) {
			which := [][]*front{{h.crm}, {h.erp}, fronts}[rnd.IntN(3)]
			switch rnd.IntN(4) {
			case 0:
				setCRMs(which, "down")
				done.add("crm_down")
			case 1:
				setCRMs(which, "slow")
				done.add("crm_slow")
			case 2:
				setCRMs(which, "healthy")
			case 3: // both down until the store is full
				setCRMs(fronts, "down")
				for time.Now().Before(end) {
					if code, reason := h.health(); code == http.StatusServiceUnavailable && reason == "store full" {
						done.add("store_full")
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			time.Sleep(time.Duration(500+rnd.IntN(2500)) * time.Millisecond)
		}
		setCRMs(fronts, "healthy")
	}()
	configs := []config{other, base}
	for reloads := 0; time.Now().Before(end); {
		time.Sleep(time.Duration(1000+rnd.IntN(3000)) * time.Millisecond)
		if rnd.IntN(3) == 0 {
			killMidBurst(rnd)
			continue
		}
		h.reload(configs[reloads%2])
		reloads++
		done.add("reload")
	}
	<-crmsDone
	h.reload(base)
	acc := l.finish()

	// Every acknowledged event reached both CRMs, signed, in per-call order.
	var reports []string
	lost, dups, violations := 0, 0, 0
	for _, target := range []struct {
		name    string
		f       *front
		secrets []string
	}{{"crm", h.crm, []string{crmSecret}}, {"erp", h.erp, []string{erpSecret}}} {
		r := gatewaytest.CheckDeliveries(t, target.f.crm, acc, sc.drain)
		checkSignatures(t, target.name, target.f.crm, target.secrets...)
		lost += r.Lost
		dups += r.Duplicates
		violations += r.OrderViolations
		reports = append(reports, fmt.Sprintf("%s delivered %d (lost %d, duplicates %d, order violations %d)",
			target.name, r.Delivered, r.Lost, r.Duplicates, r.OrderViolations))
	}

	// Ingest latency while the CRMs were down or slow, against the healthy phase before.
	answers := acc.Answers()
	var lat []string
	var healthy latency
	for _, w := range windows {
		m := measure(answers, w)
		lat = append(lat, fmt.Sprintf("%s: n %d p50 %s p99 %s max %s refused %d", w.name, m.n,
			m.p50.Round(time.Millisecond), m.p99.Round(time.Millisecond), m.max.Round(time.Millisecond), m.refused))
		if m.n < 20 {
			t.Errorf("%s: only %d webhooks answered 200 in %s", w.name, m.n, sc.measure)
		}
		if m.refused > 0 {
			t.Errorf("%s: %d webhooks refused; the store must take a CRM outage of %s", w.name, m.refused, sc.measure)
		}
		if strings.HasPrefix(w.name, "healthy") {
			healthy = m
			continue
		}
		if bound := latencyFactor*healthy.p99 + latencySlack; m.p99 > bound {
			t.Errorf("%s: webhook p99 %s over %s (%d × healthy p99 %s + %s)", w.name, m.p99, bound, latencyFactor, healthy.p99, latencySlack)
		}
	}
	t.Logf("ingest latency by phase:\n\t%s", strings.Join(lat, "\n\t"))
	t.Logf("chaos summary (%s form, %s): events sent %d (requests %d), acknowledged %d; %s; lost %d, duplicates %d, order violations %d; refused answers %v; faults: %s",
		map[bool]string{false: "short", true: "long"}[long()], time.Since(began).Round(time.Second),
		acc.Sent, acc.Posted, acc.Count(), strings.Join(reports, "; "), lost, dups, violations, refusedString(acc.Refused), done.String())
}

func refusedString(m map[int]int) string {
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strconv.Itoa(status)+": "+strconv.Itoa(m[status]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

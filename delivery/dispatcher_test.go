package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/internal/natstest"
)

// The dispatcher's metrics are process-wide and labelled by target, so every test here has a
// target name of its own.

// deliverWithin bounds waits for deliveries that nothing holds back.
const deliverWithin = 30 * time.Second

func applyTargets(t *testing.T, e *Engine, targets ...Target) {
	t.Helper()
	if err := e.Apply(context.Background(), Config{}, targets); err != nil {
		t.Fatal(err)
	}
}

// enqueueCalls stores calls×perCall events from workers goroutines, as a PBX posting
// concurrently: one worker posts a call's events in order. It returns each event's position
// within its call, for CheckCallOrder.
func enqueueCalls(t *testing.T, e *Engine, prefix string, calls, perCall, workers int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	position := map[string]int{}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for call := range next {
				for i, ev := range callEvents(fmt.Sprintf("%s-%d", prefix, call), perCall) {
					if _, err := e.Enqueue(context.Background(), []event.Event{ev}); err != nil {
						t.Errorf("enqueue %s: %v", ev.ID, err)
						continue
					}
					mu.Lock()
					position[ev.ID] = i
					mu.Unlock()
				}
			}
		})
	}
	for call := range calls {
		next <- call
	}
	close(next)
	wg.Wait()
	return position
}

func targetStatus(t *testing.T, e *Engine, name string) TargetStatus {
	t.Helper()
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range st.Targets {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("no target %s in status %+v", name, st)
	return TargetStatus{}
}

func gauge(v *prometheus.GaugeVec, target string) float64 {
	return testutil.ToFloat64(v.WithLabelValues(target))
}

// lagSeconds reads a target's pbxbridge_delivery_lag_seconds: observations, their sum and
// how many were at most 1 s.
func lagSeconds(t *testing.T, target string) (count uint64, sum float64, upTo1s uint64) {
	t.Helper()
	var m dto.Metric
	if err := metrics.lag.WithLabelValues(target).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	h := m.GetHistogram()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 1 {
			upTo1s = b.GetCumulativeCount()
		}
	}
	return h.GetSampleCount(), h.GetSampleSum(), upTo1s
}

// requestsOf are the CRM's requests for one call, in arrival order.
func requestsOf(c *gatewaytest.CRM, call string) []gatewaytest.Delivery {
	var out []gatewaytest.Delivery
	for _, d := range c.Requests() {
		if d.Event.Data.CallID == call {
			out = append(out, d)
		}
	}
	return out
}

// 200 calls × 5 events posted by 16 workers, a CRM with 0–20 ms latency that answers 10 % of
// requests 503: every call arrives complete and in order, never more than concurrency
// requests at the CRM at once, never two of one call.
func TestLanesKeepCallOrderUnderFlakyCRM(t *testing.T) {
	const calls, perCall, concurrency = 200, 5, 16
	var mu sync.Mutex
	inflight, maxInflight, sameCall, refused := 0, 0, 0, 0
	callInflight := map[string]int{}
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		call := ev.Data.CallID
		fail := rand.IntN(10) == 0
		mu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		if callInflight[call]++; callInflight[call] > 1 {
			sameCall++
		}
		if fail {
			refused++
		}
		mu.Unlock()
		time.Sleep(rand.N(20 * time.Millisecond)) // the CRM's latency
		mu.Lock()
		inflight--
		callInflight[call]--
		mu.Unlock()
		if fail {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := openEngine(t, Config{})
	tg := testTarget(c.URL)
	tg.Name, tg.Concurrency, tg.BackoffMin, tg.BackoffMax = "flaky", concurrency, 20*time.Millisecond, 2*time.Second
	applyTargets(t, e, tg)

	start := time.Now()
	position := enqueueCalls(t, e, "flaky", calls, perCall, concurrency)
	enqueued := time.Since(start)
	got := c.WaitDelivered(t, calls*perCall, 2*time.Minute)
	elapsed := time.Since(start)

	gatewaytest.CheckCallOrder(t, got, position)
	for id := range gatewaytest.UniqueIDs(got) {
		if _, ok := position[id]; !ok {
			t.Errorf("delivered %s, which was never enqueued", id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInflight > concurrency {
		t.Errorf("%d requests at the CRM at once, concurrency is %d", maxInflight, concurrency)
	}
	if sameCall > 0 {
		t.Errorf("%d requests started while another of the same call was at the CRM", sameCall)
	}
	if dls, err := e.DeadLetters(context.Background(), tg.Name); err != nil || len(dls) != 0 {
		t.Errorf("dead letters %v, %v; want none", dls, err)
	}
	gatewaytest.Eventually(t, 5*time.Second, "no parked events", func() bool { return gauge(metrics.lanesParked, tg.Name) == 0 })
	t.Logf("%d events of %d calls: enqueued in %s, all delivered in %s; %d requests, %d answered 503, at most %d at once",
		calls*perCall, calls, enqueued.Round(time.Millisecond), elapsed.Round(time.Millisecond), len(c.Requests()), refused, maxInflight)
}

// A CRM that answers 500 for one call only: 30 other calls are delivered within 2 s, the
// poisoned call's later events wait parked behind its first, the circuit never opens, and once
// the CRM heals the poisoned call arrives complete and in order.
func TestPoisonedCallDoesNotHoldOthers(t *testing.T) {
	const poison = "poison"
	var poisoned atomic.Bool
	poisoned.Store(true)
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.Data.CallID == poison && poisoned.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	e, logs := openEngineLogs(t, Config{})
	tg := testTarget(c.URL)
	tg.Name, tg.BackoffMin, tg.BackoffMax = "poison", 20*time.Millisecond, 500*time.Millisecond
	applyTargets(t, e, tg)
	ctx := context.Background()

	position := map[string]int{}
	for i, ev := range callEvents(poison, 5) {
		if _, err := e.Enqueue(ctx, []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		position[ev.ID] = i
	}
	start := time.Now()
	healthy := enqueueCalls(t, e, "healthy", 30, 5, 16)
	got := c.WaitDelivered(t, len(healthy), time.Until(start.Add(2*time.Second)))
	t.Logf("30 healthy calls (%d events) delivered %s after their first was enqueued", len(healthy), time.Since(start).Round(time.Millisecond))
	for id := range gatewaytest.UniqueIDs(got) {
		if _, ok := healthy[id]; !ok {
			t.Errorf("delivered %s of the poisoned call while the CRM refuses it", id)
		}
	}
	gatewaytest.Eventually(t, 5*time.Second, "the poisoned call's 4 later events parked", func() bool {
		return gauge(metrics.lanesParked, tg.Name) == 4
	})
	gatewaytest.Eventually(t, 5*time.Second, "the poisoned call refused 3 times", func() bool { return len(requestsOf(c, poison)) >= 3 })
	refusals := len(requestsOf(c, poison))

	poisoned.Store(false)
	for id, pos := range healthy {
		position[id] = pos
	}
	got = c.WaitDelivered(t, len(position), deliverWithin)
	gatewaytest.CheckCallOrder(t, got, position)
	// The lane: nothing of the poisoned call reached the CRM before its first event was taken.
	reqs := requestsOf(c, poison)
	for i, d := range reqs {
		if p := position[d.Event.ID]; i < refusals && p != 0 {
			t.Errorf("request %d for the poisoned call was its event %d while its first was refused", i, p)
		}
	}
	if n := logs.FilterMessage("circuit opened").Len(); n != 0 {
		t.Errorf("the circuit opened %d times for one poisoned call", n)
	}
	if v := gauge(metrics.circuitOpen, tg.Name); v != 0 {
		t.Errorf("circuit_open %v", v)
	}
	gatewaytest.Eventually(t, 5*time.Second, "no parked events", func() bool { return gauge(metrics.lanesParked, tg.Name) == 0 })
	t.Logf("the poisoned call was refused %d times, then delivered in %d requests", refusals, len(reqs)-refusals)
}

// countingListener counts the TCP connections a CRM accepts.
type countingListener struct {
	net.Listener
	accepted *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

// serveOn serves h on addr (127.0.0.1:0 for a free port), counting connections. It returns
// the server and the address it listens on.
func serveOn(t *testing.T, addr string, h http.Handler, accepted *atomic.Int64) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(countingListener{ln, accepted})
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

// probesWithin is how many probes an open circuit makes in d: the first BackoffMin after it
// opened, each next after twice the previous delay, capped at BackoffMax (circuit.record).
func probesWithin(t Target, d time.Duration) int {
	n := 0
	var at, delay time.Duration
	for {
		delay = min(max(2*delay, t.BackoffMin), t.BackoffMax)
		if at += delay; at > d {
			return n
		}
		n++
	}
}

// The CRM's port closed for 60 s (15 s with -short) under a stream of webhooks and a burst of
// more events than a dispatcher holds: one refused connection opens the circuit, then only the
// probes of the backoff schedule try the port, circuit_open is 1 throughout, nothing is
// dead-lettered although the outage outlasts max_age, held events stay held (kept alive, not
// redelivered), and after the port re-opens everything arrives in per-call order.
func TestOutageOpensCircuitProbesAndLosesNothing(t *testing.T) {
	t.Parallel() // mostly waiting
	outage := 60 * time.Second
	if testing.Short() {
		outage = 15 * time.Second
	}
	const concurrency = 16
	c := gatewaytest.NewCRM(t, nil)
	var accepted atomic.Int64
	srv, addr := serveOn(t, "127.0.0.1:0", c.Config.Handler, &accepted)
	e, logs := openEngineLogs(t, Config{})
	tg := testTarget("http://" + addr)
	tg.Name, tg.Concurrency = "outage", concurrency
	tg.BackoffMin, tg.BackoffMax = 250*time.Millisecond, 8*time.Second
	tg.MaxAge = 5 * time.Second // shorter than the outage: max_age is for a CRM that refuses, not one that is gone
	applyTargets(t, e, tg)
	ctx := context.Background()
	deadBefore := testutil.ToFloat64(metrics.deadLettered.WithLabelValues(tg.Name))

	// A stream of 10 webhooks a second: three calls at a time, five events each, interleaved.
	var mu sync.Mutex
	position := map[string]int{}
	produce := func(k int) {
		call := fmt.Sprintf("out-%d", k/15*3+k%3)
		ev := callEvent(event.TypeRinging, call, k/3%5)
		if _, err := e.Enqueue(ctx, []event.Event{ev}); err != nil {
			t.Errorf("enqueue %s: %v", ev.ID, err)
			return
		}
		mu.Lock()
		position[ev.ID] = k / 3 % 5
		mu.Unlock()
	}
	k := 0
	for ; k < 30; k++ {
		produce(k)
	}
	// Close the port when everything so far is delivered and its answers are in, so the
	// refused connections counted below are the circuit's doing alone. (Closing it once the
	// CRM has only seen them cuts an answer off now and then: that event is rightly sent again.)
	c.WaitDelivered(t, k, deliverWithin)
	gatewaytest.Eventually(t, deliverWithin, "every delivered event settled", func() bool { return targetStatus(t, e, tg.Name).Held == 0 })
	srv.Close()
	closedAt := time.Now()
	stop := make(chan struct{})
	produced := make(chan int)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				produced <- k
				return
			case <-tick.C:
				produce(k)
				k++
			}
		}
	}()

	gatewaytest.Eventually(t, 5*time.Second, "circuit_open 1", func() bool { return gauge(metrics.circuitOpen, tg.Name) == 1 })
	// A burst of more events than the dispatcher holds: it stops pulling until the CRM is
	// back, longer than the pin's TTL in the full-length outage.
	burst := enqueueCalls(t, e, "burst", maxHeld/5+50, 5, concurrency)
	mu.Lock()
	for id, pos := range burst {
		position[id] = pos
	}
	mu.Unlock()
	for time.Since(closedAt) < outage {
		if v := gauge(metrics.circuitOpen, tg.Name); v != 1 {
			t.Fatalf("circuit_open %v %s into the outage", v, time.Since(closedAt).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond) // sampling the gauge; it is the thing observed
	}

	before := accepted.Load()
	serveOn(t, addr, c.Config.Handler, &accepted)
	reopened := time.Now()
	close(stop)
	total := <-produced + len(burst)
	got := c.WaitDelivered(t, total, tg.BackoffMax+deliverWithin)
	recovery := time.Since(reopened)

	var refused int
	for _, entry := range logs.FilterMessage("delivery attempt").All() {
		if err, _ := entry.ContextMap()["error"].(string); strings.Contains(err, "connection refused") {
			refused++
		}
	}
	// One refused connection opens the circuit, then the probes; one more for the probe that
	// may fall between the end of the outage and the listener's return.
	bound := 1 + probesWithin(tg, outage) + 1
	if refused > bound {
		t.Errorf("%d connection attempts to the closed port in %s; the backoff schedule allows %d", refused, outage, bound)
	}
	gatewaytest.CheckCallOrder(t, got, position)
	if dup := len(got) - len(gatewaytest.UniqueIDs(got)); dup != 0 {
		t.Errorf("%d events delivered twice: a held event was redelivered during the outage", dup)
	}
	// Kept-alive connections: about one per concurrency slot (Go's transport may dial one more
	// for a request that then takes a freed connection), not one per event.
	if n := accepted.Load() - before; n > 2*concurrency {
		t.Errorf("the CRM accepted %d connections for %d events after its return", n, total)
	}
	if dls, err := e.DeadLetters(ctx, tg.Name); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after an outage: %d, %v", len(dls), err)
	}
	if v := testutil.ToFloat64(metrics.deadLettered.WithLabelValues(tg.Name)); v != deadBefore {
		t.Errorf("dead_lettered_total went from %v to %v", deadBefore, v)
	}
	gatewaytest.Eventually(t, 5*time.Second, "circuit_open 0", func() bool { return gauge(metrics.circuitOpen, tg.Name) == 0 })
	if n := logs.FilterMessage("fetching events").Len(); n != 0 {
		t.Errorf("%d failed pulls; the first was: %v", n, logs.FilterMessage("fetching events").All()[0].ContextMap())
	}
	t.Logf("port closed %s: %d connection attempts (bound %d; with the defaults 1s..10m the schedule allows %d), %d events (%d during the outage, %d of them at once) all delivered %s after the port returned, %d connections after",
		outage, refused, bound, 1+probesWithin(Target{BackoffMin: defaultBackoffMin, BackoffMax: defaultBackoffMax}, outage),
		total, total-30, len(burst), recovery.Round(time.Millisecond), accepted.Load()-before)
}

// A keep-alive that comes too late (the process starved of CPU for longer than the ack
// deadline) makes JetStream hand held events out again while their call's first event is
// still at the CRM. The copies are the same events: each is delivered once, in call order.
// The lapse is forced by shrinking the consumer's ack deadline far below the keep-alive
// period; without the check in dispatcher.take the copies queue in the lane behind the
// originals and reach the CRM twice.
func TestLateKeepAliveDeliversNothingTwice(t *testing.T) {
	evs := callEvents("late", 4)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.ID == evs[0].ID && attempt == 1 {
			close(entered)
			<-release
		}
		return http.StatusOK
	})
	e, logs := openEngineLogs(t, Config{})
	tg := testTarget(c.URL)
	tg.Name, tg.Timeout = "late-keepalive", time.Minute
	applyTargets(t, e, tg)
	ctx := context.Background()
	if _, err := e.Enqueue(ctx, evs); err != nil {
		t.Fatal(err)
	}
	<-entered
	gatewaytest.Eventually(t, deliverWithin, "all four events held", func() bool { return targetStatus(t, e, tg.Name).Held == len(evs) })

	cons, err := e.js.Consumer(ctx, e.names.events, consumerName(tg.Name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.AckWait = 100 * time.Millisecond
	if _, err := e.js.UpdateConsumer(ctx, e.names.events, cfg); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Eventually(t, deliverWithin, "JetStream handing the held events out again", func() bool {
		return logs.FilterMessageSnippet("handed out again").Len() >= len(evs) || targetStatus(t, e, tg.Name).Held > len(evs)
	})
	cfg.AckWait = ackWait
	if _, err := e.js.UpdateConsumer(ctx, e.names.events, cfg); err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })

	c.WaitDelivered(t, len(evs), deliverWithin)
	gatewaytest.Eventually(t, deliverWithin, "every event settled", func() bool { return targetStatus(t, e, tg.Name).Held == 0 })
	position := map[string]int{}
	for i, ev := range evs {
		position[ev.ID] = i
	}
	gatewaytest.CheckCallOrder(t, c.Delivered(), position)
	if n := len(c.Delivered()); n != len(evs) {
		t.Errorf("the CRM got %d deliveries of %d events", n, len(evs))
	}
}

// Fan-out to two targets; then one hangs (answers nothing until its timeout): the live
// target's delivery lag does not change and the hung one gets everything once it answers.
func TestTwoTargetsOneDownLeavesTheOtherUnaffected(t *testing.T) {
	live := gatewaytest.NewCRM(t, nil)
	var hang atomic.Bool
	heal := make(chan struct{})
	down := gatewaytest.NewCRM(t, func(event.Event, int) int {
		if hang.Load() {
			<-heal
		}
		return http.StatusOK
	})
	healOnce := sync.OnceFunc(func() { close(heal) })
	t.Cleanup(healOnce) // before the CRM's Close, which waits for its handlers
	e := openEngine(t, Config{})
	lt, dt := testTarget(live.URL), testTarget(down.URL)
	lt.Name = "live"
	dt.Name, dt.Timeout, dt.BackoffMin, dt.BackoffMax = "down", 300*time.Millisecond, 100*time.Millisecond, time.Second
	applyTargets(t, e, lt, dt)

	measure := func(prefix string) (n uint64, mean float64, over1s uint64) {
		c0, s0, b0 := lagSeconds(t, lt.Name)
		delivered := len(gatewaytest.UniqueIDs(live.Delivered()))
		position := enqueueCalls(t, e, prefix, 20, 5, 4)
		got := live.WaitDelivered(t, delivered+len(position), deliverWithin)
		gatewaytest.CheckCallOrder(t, got, position)
		// The lag is observed just after the CRM answers.
		gatewaytest.Eventually(t, 5*time.Second, "lag observed", func() bool {
			c, _, _ := lagSeconds(t, lt.Name)
			return c >= c0+uint64(len(position))
		})
		c1, s1, b1 := lagSeconds(t, lt.Name)
		return c1 - c0, (s1 - s0) / float64(c1-c0), (c1 - c0) - (b1 - b0)
	}
	n1, mean1, _ := measure("both-up")
	down.WaitDelivered(t, 100, deliverWithin) // fan-out: the other target got every event too

	hang.Store(true)
	n2, mean2, over1s := measure("one-down")
	gatewaytest.Eventually(t, 5*time.Second, "the hung target's circuit open", func() bool { return gauge(metrics.circuitOpen, dt.Name) == 1 })
	if v := gauge(metrics.circuitOpen, lt.Name); v != 0 {
		t.Errorf("the live target's circuit_open is %v", v)
	}
	t.Logf("live target's mean lag: %.1f ms over %d events with both up, %.1f ms over %d with the other hung", mean1*1000, n1, mean2*1000, n2)
	if over1s != 0 {
		t.Errorf("%d live deliveries took over 1 s while the other target was down", over1s)
	}
	if mean2 > mean1+0.1 {
		t.Errorf("live target's mean lag rose from %.1f ms to %.1f ms while the other target was down", mean1*1000, mean2*1000)
	}

	healOnce()
	down.WaitDelivered(t, 200, deliverWithin)
}

// Paused: events queue and nothing is attempted, also after a restart (the state is in the
// store) and for events already parked in a lane; resumed: all delivered in order.
func TestPauseQueuesResumeDelivers(t *testing.T) {
	const name = "paused"
	var firstHeld atomic.Bool
	inFirst, releaseFirst := make(chan struct{}), make(chan struct{})
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.Data.CallID == "held" && ev.Data.Seq == 1 && firstHeld.CompareAndSwap(false, true) {
			close(inFirst)
			<-releaseFirst
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	ctx := context.Background()
	tg := testTarget(c.URL)
	tg.Name = name

	first, closeFirst := openEngineToClose(t, Config{DataDir: dir})
	applyTargets(t, first, tg)
	if err := first.Pause(ctx, name); err != nil {
		t.Fatal(err)
	}
	closeFirst(ctx)
	e := openEngine(t, Config{DataDir: dir})
	applyTargets(t, e, tg)
	if v := gauge(metrics.targetPaused, name); v != 1 {
		t.Fatalf("target_paused %v after a restart, want 1", v)
	}
	if !targetStatus(t, e, name).Paused {
		t.Fatal("status says not paused after a restart")
	}

	attemptsBefore := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "success"))
	position := enqueueCalls(t, e, "p", 10, 3, 4)
	gatewaytest.Eventually(t, 10*time.Second, "30 events queued", func() bool { return targetStatus(t, e, name).Depth == 30 })
	time.Sleep(500 * time.Millisecond) // a window in which an unpaused target would have delivered them all
	if n := len(c.Requests()); n != 0 {
		t.Fatalf("the CRM got %d requests from a paused target", n)
	}
	if v := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "success")); v != attemptsBefore {
		t.Fatalf("attempts_total went from %v to %v while paused", attemptsBefore, v)
	}
	if err := e.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	if v := gauge(metrics.targetPaused, name); v != 0 {
		t.Errorf("target_paused %v after resume", v)
	}
	gatewaytest.CheckCallOrder(t, c.WaitDelivered(t, 30, deliverWithin), position)

	// Pausing while a call's first event is at the CRM: that attempt completes, the call's
	// parked events wait.
	for i, ev := range callEvents("held", 3) {
		if _, err := e.Enqueue(ctx, []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		position[ev.ID] = i
	}
	<-inFirst
	gatewaytest.Eventually(t, 5*time.Second, "two events parked behind the first", func() bool {
		return gauge(metrics.lanesParked, name) == 2
	})
	if err := e.Pause(ctx, name); err != nil {
		t.Fatal(err)
	}
	close(releaseFirst)
	c.WaitDelivered(t, 31, deliverWithin)
	time.Sleep(500 * time.Millisecond) // a window in which an unpaused lane would have moved on
	if n := len(requestsOf(c, "held")); n != 1 {
		t.Fatalf("the CRM got %d requests of the held call while paused, want 1", n)
	}
	if err := e.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	gatewaytest.CheckCallOrder(t, c.WaitDelivered(t, 33, deliverWithin), position)
}

// openEngineToClose opens an engine for a test that closes it itself (to open another on its
// directory, or to stop an instance of a cluster); the cleanup closes it if the test ends first.
func openEngineToClose(t *testing.T, cfg Config) (*Engine, func(context.Context) error) {
	t.Helper()
	e, err := Open(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var closeErr error
	closeOnce := func(ctx context.Context) error {
		once.Do(func() { closeErr = e.Close(ctx) })
		return closeErr
	}
	t.Cleanup(func() { closeOnce(context.Background()) })
	return e, closeOnce
}

// A graceful stop lets the attempt at the CRM finish and acknowledges it: nothing is left to
// redeliver after the restart, and the stop counts no failure.
func TestStopLetsInFlightAttemptsFinish(t *testing.T) {
	const name = "graceful"
	entered, release := make(chan struct{}), make(chan struct{})
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if attempt == 1 {
			close(entered)
			<-release
		}
		return http.StatusOK
	})
	dir := t.TempDir()
	ctx := context.Background()
	tg := testTarget(c.URL)
	tg.Name = name
	first, closeFirst := openEngineToClose(t, Config{DataDir: dir})
	applyTargets(t, first, tg)
	d := first.dispatcher(name)
	success := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "success"))
	failed := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "retry"))
	if _, err := first.Enqueue(ctx, callEvents("graceful", 1)); err != nil {
		t.Fatal(err)
	}
	<-entered
	closed := make(chan error)
	go func() {
		grace, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		closed <- closeFirst(grace)
	}()
	gatewaytest.Eventually(t, 5*time.Second, "the dispatcher stopping", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.stopping
	})
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "success")); v != success+1 {
		t.Errorf("successful attempts went from %v to %v; the attempt at the CRM during the stop should count", success, v)
	}
	if v := testutil.ToFloat64(metrics.attempts.WithLabelValues(name, "retry")); v != failed {
		t.Errorf("failed attempts went from %v to %v during a graceful stop", failed, v)
	}
	e := openEngine(t, Config{DataDir: dir})
	applyTargets(t, e, tg)
	if depth := targetStatus(t, e, name).Depth; depth != 0 {
		t.Errorf("%d events left for the target after a graceful stop, want 0", depth)
	}
}

// Acknowledgements wait for their batch (ackDelay); a graceful stop right after the CRM took
// the events sends the last batch, so the restarted gateway delivers none of them again.
func TestStopSendsTheLastAcknowledgements(t *testing.T) {
	const name = "acks"
	c := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusOK })
	dir := t.TempDir()
	tg := testTarget(c.URL)
	tg.Name = name
	first, closeFirst := openEngineToClose(t, Config{DataDir: dir})
	applyTargets(t, first, tg)
	d := first.dispatcher(name)
	const calls = 40
	for i := range calls {
		if _, err := first.Enqueue(context.Background(), callEvents(fmt.Sprintf("acks-%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitDelivered(t, calls, deliverWithin)
	d.mu.Lock()
	waiting := len(d.acks)
	d.mu.Unlock()
	if err := closeFirst(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledgements were waiting for their batch at the stop", waiting)

	e := openEngine(t, Config{DataDir: dir})
	applyTargets(t, e, tg)
	if depth := targetStatus(t, e, name).Depth; depth != 0 {
		t.Errorf("%d events left for the target after a graceful stop, want 0", depth)
	}
	// Unacknowledged ones would come back when their ack deadline passes.
	info, err := e.dispatcher(name).cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 {
		t.Errorf("%d events delivered before the stop are still unacknowledged after it", info.NumAckPending)
	}
	if n := len(c.Requests()); n != calls {
		t.Errorf("the CRM got %d requests for %d events: delivered again after the restart", n, calls)
	}
}

// An outage four times as long as max_age: the event waits, is not dead-lettered, and is
// delivered when the port opens.
func TestOutageLongerThanMaxAgeDeadLettersNothing(t *testing.T) {
	c := gatewaytest.NewCRM(t, nil)
	var accepted atomic.Int64
	srv, addr := serveOn(t, "127.0.0.1:0", c.Config.Handler, &accepted)
	srv.Close()
	e := openEngine(t, Config{})
	tg := testTarget("http://" + addr)
	tg.Name, tg.MaxAge = "outage-max-age", 500*time.Millisecond
	tg.BackoffMin, tg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	applyTargets(t, e, tg)
	position := map[string]int{}
	for i, ev := range callEvents("long", 3) {
		if _, err := e.Enqueue(context.Background(), []event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		position[ev.ID] = i
	}
	time.Sleep(4 * tg.MaxAge) // the outage
	if probes := testutil.ToFloat64(metrics.failures.WithLabelValues(tg.Name, "connection")); probes < 4 {
		t.Fatalf("%v attempts during the outage; the test needs some after max_age", probes)
	}
	serveOn(t, addr, c.Config.Handler, &accepted)
	gatewaytest.CheckCallOrder(t, c.WaitDelivered(t, 3, deliverWithin), position)
	if dls, err := e.DeadLetters(context.Background(), tg.Name); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after an outage: %+v, %v", dls, err)
	}
}

// `events` globs: each target gets only the types it asked for, also when globs overlap; a
// target added on reload gets a consumer, a removed one loses it (and its interest: the
// stream empties without it), and the kept targets deliver right after the reload.
func TestEventFiltersAndReloadedConsumers(t *testing.T) {
	calls, recordings, all, added := gatewaytest.NewCRM(t, nil), gatewaytest.NewCRM(t, nil), gatewaytest.NewCRM(t, nil), gatewaytest.NewCRM(t, nil)
	ct, rt, at, xt := testTarget(calls.URL), testTarget(recordings.URL), testTarget(all.URL), testTarget(added.URL)
	ct.Name, ct.Events = "f-calls", []string{"call.*", "call.completed"}
	rt.Name, rt.Events = "f-recordings", []string{"*.ready"}
	at.Name = "f-all"
	xt.Name = "f-added"
	e := openEngine(t, Config{})
	applyTargets(t, e, ct, rt, at)
	ctx := context.Background()

	types := []string{event.TypeRinging, event.TypeAnswered, event.TypeCompleted, event.TypeRecordingReady, event.TypeUnmapped}
	enqueue := func(call string) {
		t.Helper()
		for i, typ := range types {
			if _, err := e.Enqueue(ctx, []event.Event{callEvent(typ, call, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	typesOf := func(c *gatewaytest.CRM) []string {
		var out []string
		for _, d := range c.Delivered() {
			out = append(out, d.Event.Type)
		}
		return out
	}
	streamMsgs := func() uint64 {
		s, err := e.js.Stream(ctx, e.names.events)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	enqueue("f-1")
	all.WaitDelivered(t, 5, deliverWithin)
	calls.WaitDelivered(t, 3, deliverWithin)
	recordings.WaitDelivered(t, 1, deliverWithin)
	// Once every target has settled what it takes, nothing is left in the stream.
	gatewaytest.Eventually(t, 5*time.Second, "stream empty", func() bool { return streamMsgs() == 0 })
	if got, want := strings.Join(typesOf(calls), " "), "call.ringing call.answered call.completed"; got != want {
		t.Errorf("f-calls got %s, want %s", got, want)
	}
	if got, want := strings.Join(typesOf(recordings), " "), "recording.ready"; got != want {
		t.Errorf("f-recordings got %s, want %s", got, want)
	}

	applyTargets(t, e, ct, rt, xt)
	if _, err := e.js.Consumer(ctx, e.names.events, consumerName(at.Name)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the removed target's consumer: %v, want not found", err)
	}
	if _, err := e.js.Consumer(ctx, e.names.events, consumerName(xt.Name)); err != nil {
		t.Errorf("the added target's consumer: %v", err)
	}
	enqueue("f-2")
	added.WaitDelivered(t, 5, deliverWithin)
	recordings.WaitDelivered(t, 2, deliverWithin)
	calls.WaitDelivered(t, 6, deliverWithin)
	gatewaytest.Eventually(t, 5*time.Second, "stream empty without the removed target", func() bool { return streamMsgs() == 0 })
	if n := len(all.Requests()); n != 5 {
		t.Errorf("the removed target's CRM got %d requests, want the 5 from before the reload", n)
	}

	// A kept target's pull requests outlive the reload by up to fetchWait; events that come
	// later are fetched through the consumer as the reload left it, and must not wait.
	time.Sleep(fetchWait + time.Second)
	enqueued := time.Now()
	enqueue("f-3")
	calls.WaitDelivered(t, 9, 2*time.Second)
	t.Logf("a kept target delivered events enqueued %s after the reload in %s", fetchWait+time.Second, time.Since(enqueued).Round(time.Millisecond))
}

// Retry-After is honoured (a wait of 1 s where the backoff would be 20 ms) and clamped to
// the backoff cap (an hour becomes 2 s).
func TestRetryAfterHonouredAndCapped(t *testing.T) {
	var mu sync.Mutex
	at := map[string][]time.Time{}
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		mu.Lock()
		at[ev.Data.CallID] = append(at[ev.Data.CallID], time.Now())
		mu.Unlock()
		if attempt == 1 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	short, long := callEvent(event.TypeRinging, "ra-1s", 0), callEvent(event.TypeRinging, "ra-1h", 0)
	retryAfter := map[string]string{short.ID: "1", long.ID: "3600"}
	withRetryAfter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", retryAfter[r.Header.Get("webhook-id")])
		c.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(withRetryAfter.Close)
	e := openEngine(t, Config{})
	tg := testTarget(withRetryAfter.URL)
	tg.Name, tg.BackoffMin, tg.BackoffMax = "retry-after", 20*time.Millisecond, 2*time.Second
	applyTargets(t, e, tg)
	if _, err := e.Enqueue(context.Background(), []event.Event{short, long}); err != nil {
		t.Fatal(err)
	}
	c.WaitDelivered(t, 2, deliverWithin)
	mu.Lock()
	defer mu.Unlock()
	for call, want := range map[string]time.Duration{"ra-1s": time.Second, "ra-1h": tg.BackoffMax} {
		ts := at[call]
		if len(ts) != 2 {
			t.Fatalf("%s: %d attempts, want 2", call, len(ts))
		}
		gap := ts[1].Sub(ts[0])
		if gap < want || gap > want+time.Second {
			t.Errorf("%s: retried after %s, want %s", call, gap.Round(time.Millisecond), want)
		}
		t.Logf("%s: retried after %s", call, gap.Round(time.Millisecond))
	}
}

// Two instances on one NATS cluster: only the one holding the consumer's pin delivers, so a
// call's lane is never split. It keeps the pin while paused through the other instance and
// while it holds more events than it takes during an outage longer than the pin's TTL; the
// other takes over after the TTL once it is gone.
func TestClusterDeliversFromOneInstanceAtATime(t *testing.T) {
	t.Parallel() // mostly waiting
	srv := natstest.RunBasicJetStreamServer(t)
	var down atomic.Bool
	c := gatewaytest.NewCRM(t, func(event.Event, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cluster := Config{NATS: &NATSConfig{URLs: []string{srv.ClientURL()}}}
	a, closeA := openEngineToClose(t, cluster)
	b, _ := openEngineToClose(t, cluster)
	ctx := context.Background()
	ta, tb := testTarget(c.URL), testTarget(c.URL)
	ta.Name, ta.UserAgent, ta.BackoffMin, ta.BackoffMax = "cluster", "instance-a", 50*time.Millisecond, time.Second
	tb.Name, tb.UserAgent, tb.BackoffMin, tb.BackoffMax = "cluster", "instance-b", 50*time.Millisecond, time.Second
	applyTargets(t, a, ta)
	position := enqueueCalls(t, a, "c-first", 1, 1, 1)
	c.WaitDelivered(t, 1, deliverWithin) // a pulled first: it holds the pin
	applyTargets(t, b, tb)
	add := func(m map[string]int) {
		for id, pos := range m {
			position[id] = pos
		}
	}
	deliveredBy := func(agent string) (n int) {
		for _, d := range c.Requests() {
			if d.Header.Get("User-Agent") == agent {
				n++
			}
		}
		return n
	}

	// Paused through b, the instance that does not deliver: a stops too.
	if err := b.Pause(ctx, "cluster"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Eventually(t, 5*time.Second, "a paused", func() bool { return targetStatus(t, a, "cluster").Paused })
	add(enqueueCalls(t, b, "c-paused", 10, 3, 4))
	time.Sleep(time.Second) // a window in which an unpaused instance would have delivered
	if n := len(c.Requests()); n != 1 {
		t.Fatalf("the CRM got %d requests while the target was paused through the other instance", n-1)
	}
	if err := b.Resume(ctx, "cluster"); err != nil {
		t.Fatal(err)
	}
	c.WaitDelivered(t, len(position), deliverWithin)

	// The CRM down for longer than the pin's TTL, with more events than a holds.
	down.Store(true)
	add(enqueueCalls(t, b, "c-burst", maxHeld/5+50, 5, 16))
	time.Sleep(2*ackWait + fetchWait) // the pin's TTL and one pull: a must keep it meanwhile
	down.Store(false)
	gatewaytest.CheckCallOrder(t, c.WaitDelivered(t, len(position), deliverWithin), position)
	if n := deliveredBy("instance-b"); n != 0 {
		t.Fatalf("instance b made %d requests while a held the pin", n)
	}

	// a stops gracefully: it hands the target over to b at once, not after the pin's TTL.
	if err := closeA(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	add(enqueueCalls(t, b, "c-failover", 5, 1, 1))
	got := c.WaitDelivered(t, len(position), 2*ackWait+fetchWait+deliverWithin)
	gatewaytest.CheckCallOrder(t, got, position)
	t.Logf("%d requests from a alone; after a stopped, b made %d within %s (without the handover: pin TTL %s, then %s)",
		deliveredBy("instance-a"), deliveredBy("instance-b"), time.Since(stopped).Round(time.Millisecond), 2*ackWait, handover)
}

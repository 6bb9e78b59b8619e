package gatewaytest

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

// Accepted records what a gateway acknowledged with 200, as a PBX would see it. The zero
// value is an empty record that loads can be added to.
type Accepted struct {
	mu       sync.Mutex
	position map[string]int // event id → its order within its call
	answers  []Answer
	Sent     int         // events the load tried to deliver, each counted once
	Posted   int         // requests sent, re-sends included
	Refused  map[int]int // non-200 answers by status (0: no answer)
}

// Answer is one request of a load: when it was sent, how long its answer took and its status
// (0: no answer).
type Answer struct {
	At     time.Time
	Took   time.Duration
	Status int
}

func newAccepted() *Accepted {
	return &Accepted{position: map[string]int{}, Refused: map[int]int{}}
}

// Position returns each accepted event's order within its call, for CheckCallOrder.
func (a *Accepted) Position() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.position)
}

// Count is the number of distinct events acknowledged.
func (a *Accepted) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.position)
}

// Answers returns every request's answer so far.
func (a *Accepted) Answers() []Answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Answer(nil), a.answers...)
}

// Add merges b, a load that ran beside a (other calls), into a.
func (a *Accepted) Add(b *Accepted) {
	position, answers := b.Position(), b.Answers()
	b.mu.Lock()
	sent, posted, refused := b.Sent, b.Posted, maps.Clone(b.Refused)
	b.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.position == nil {
		a.position, a.Refused = map[string]int{}, map[int]int{}
	}
	maps.Copy(a.position, position)
	a.answers = append(a.answers, answers...)
	a.Sent += sent
	a.Posted += posted
	for status, n := range refused {
		a.Refused[status] += n
	}
}

// webhook is one message of a call as a PBX posts it, and the events it becomes.
type webhook struct {
	name   string
	url    string
	body   string
	xvbAC  string // the X-XVB-AC header, when XVB sends it
	events []event.Event
}

// play posts `calls` calls from `workers` goroutines, each call's webhooks in order. Like a
// PBX, it re-sends a webhook that was not answered 200 (gateway down, 503) until it is, or
// until deadline. It returns when every call was played.
func play(t testing.TB, calls, workers int, deadline time.Time, call func(i int) (string, []webhook)) *Accepted {
	acc := newAccepted()
	client := &http.Client{Timeout: 10 * time.Second}
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id, hooks := call(i)
				for n, h := range hooks {
					acc.mu.Lock()
					acc.Sent += len(h.events)
					acc.mu.Unlock()
					if !postUntilAccepted(client, acc, h, deadline) {
						t.Errorf("call %s message %s never accepted", id, h.name)
						return
					}
					acc.mu.Lock()
					for _, ev := range h.events {
						acc.position[ev.ID] = n
					}
					acc.mu.Unlock()
				}
			}
		}()
	}
	for i := range calls {
		work <- i
	}
	close(work)
	wg.Wait()
	return acc
}

// MangoLoad plays `calls` sample calls of Mango account `office` against the gateway (baseURL
// is the webhook URL without Mango's suffixes) from `workers` goroutines, as play does.
func MangoLoad(t testing.TB, baseURL, key, salt, prefix string, calls, workers int, deadline time.Time) *Accepted {
	src := event.Origin{PBX: "mango", Account: "office"}
	return play(t, calls, workers, deadline, func(i int) (string, []webhook) {
		entry := fmt.Sprintf("%s-%d", prefix, i)
		var hooks []webhook
		for _, m := range mango.SampleCall(entry, entry+"-leg", time.Now()) {
			hooks = append(hooks, webhook{m.Name, baseURL + m.Suffix, mango.FormBody(key, salt, m.JSON), "",
				mango.Translate(src, strings.TrimPrefix(m.Suffix, "/"), []byte(m.JSON), time.Now())})
		}
		return entry, hooks
	})
}

// XVBLoad plays `calls` sample calls of XVB account `main` (xvb.SampleCall, each from its own
// phone number, its COMPLETED with callid and a recording link) against hookURL (with its
// ?key= when the account has a secret) from `workers` goroutines, as play does; the contact
// lookups, which make no event, are left out. XVB event ids come from the payload alone, so
// prefix must make the calls unique across loads.
func XVBLoad(t testing.TB, hookURL, accessCode, prefix string, calls, workers int, deadline time.Time) *Accepted {
	src := event.Origin{PBX: "xvb", Account: "main"}
	return play(t, calls, workers, deadline, func(i int) (string, []webhook) {
		call := fmt.Sprintf("%s-%d", prefix, i)
		var hooks []webhook
		for _, m := range xvb.SampleCall(accessCode, call, fmt.Sprintf("7920%07d", i%10_000_000), xvb.Completed{CallID: true, Recording: true}) {
			if m.Fields.IsContact() {
				continue
			}
			hooks = append(hooks, webhook{m.Name, hookURL, m.Body(), m.AC,
				xvb.Translate(src, m.Fields, xvb.Correlation{}, time.Now())})
		}
		return call, hooks
	})
}

func postUntilAccepted(client *http.Client, acc *Accepted, h webhook, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		status := 0
		start := time.Now()
		req, err := http.NewRequest(http.MethodPost, h.url, strings.NewReader(h.body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if h.xvbAC != "" {
			req.Header.Set("X-XVB-AC", h.xvbAC)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		acc.mu.Lock()
		acc.Posted++
		acc.answers = append(acc.answers, Answer{At: start, Took: time.Since(start), Status: status})
		if status != http.StatusOK {
			acc.Refused[status]++
		}
		acc.mu.Unlock()
		if status == http.StatusOK {
			return true
		}
		time.Sleep(20 * time.Millisecond) // a PBX's re-send pause; the gateway may be restarting
	}
	return false
}

// DeliveryReport is what CheckDeliveries found at one CRM.
type DeliveryReport struct {
	Acknowledged    int // distinct events the gateway answered 200
	Delivered       int // distinct acknowledged events the CRM answered 2xx
	Lost            int // acknowledged, never delivered
	Unacknowledged  int // delivered, never acknowledged
	Duplicates      int // re-deliveries, each with its event's webhook-id
	OrderViolations int
}

// CheckDeliveries waits up to timeout for the CRM to receive every accepted event and fails
// the test unless it received all of them, nothing it did not accept, in per-call order;
// re-deliveries must carry the same webhook-id (ids are deterministic, so any other id would
// be an event nobody sent).
func CheckDeliveries(t testing.TB, crm *CRM, acc *Accepted, timeout time.Duration) DeliveryReport {
	t.Helper()
	position := acc.Position()
	got := crm.waitIDs(len(position), timeout)
	ids := UniqueIDs(got)
	r := DeliveryReport{Acknowledged: len(position), Duplicates: len(got) - len(ids)}
	for id := range ids {
		if _, ok := position[id]; !ok {
			r.Unacknowledged++
			t.Errorf("CRM received event %s that was never acknowledged", id)
		}
	}
	for id := range position {
		if ids[id] {
			r.Delivered++
			continue
		}
		if r.Lost++; r.Lost <= 20 {
			t.Errorf("acknowledged event %s was not delivered", id)
		}
	}
	if r.Lost > 0 {
		t.Errorf("%d of %d acknowledged events were not delivered within %s", r.Lost, r.Acknowledged, timeout)
	}
	r.OrderViolations = CheckCallOrder(t, got, position)
	return r
}

// CheckDelivered is CheckDeliveries returning the number of re-deliveries.
func CheckDelivered(t testing.TB, crm *CRM, acc *Accepted, timeout time.Duration) int {
	t.Helper()
	return CheckDeliveries(t, crm, acc, timeout).Duplicates
}

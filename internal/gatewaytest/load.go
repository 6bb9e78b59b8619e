package gatewaytest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/translators"
	"github.com/pbxbridge/pbxbridge/translators/mango"
)

// Accepted records what a gateway acknowledged with 200, as a PBX would see it.
type Accepted struct {
	mu       sync.Mutex
	position map[string]int // event id → its order within its call
	Posted   int            // requests sent, re-sends included
	Refused  map[int]int    // non-200 answers by status (0: no answer)
}

// Position returns each accepted event's order within its call, for CheckCallOrder.
func (a *Accepted) Position() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.position))
	for k, v := range a.position {
		out[k] = v
	}
	return out
}

// Count is the number of distinct events acknowledged.
func (a *Accepted) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.position)
}

// MangoLoad plays `calls` sample Mango calls against the gateway from `workers` goroutines,
// each call's webhooks in order. Like Mango, it re-sends a webhook that was not answered 200
// (gateway down, 503) until it is, or until deadline. It returns when every call was played.
func MangoLoad(t testing.TB, baseURL, key, salt, prefix string, calls, workers int, deadline time.Time) *Accepted {
	acc := &Accepted{position: map[string]int{}, Refused: map[int]int{}}
	src := translators.Source{PBX: "mango", Account: "office"}
	client := &http.Client{Timeout: 10 * time.Second}
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				entry := fmt.Sprintf("%s-%d", prefix, i)
				for n, m := range mango.SampleCall(entry, entry+"-leg", time.Unix(1764065700, 0)) {
					if !postUntilAccepted(client, acc, baseURL+m.Suffix, mango.FormBody(key, salt, m.JSON), deadline) {
						t.Errorf("call %s message %s never accepted", entry, m.Name)
						return
					}
					acc.mu.Lock()
					for _, ev := range mango.Translate(src, strings.TrimPrefix(m.Suffix, "/"), []byte(m.JSON), time.Now()) {
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

func postUntilAccepted(client *http.Client, acc *Accepted, url, body string, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		status := 0
		resp, err := client.Post(url, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		acc.mu.Lock()
		acc.Posted++
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

// CheckDelivered fails the test unless the CRM received every accepted event, nothing it did
// not accept, in per-call order; re-deliveries must carry the same webhook-id (ids are
// deterministic, so any other id would be an event nobody sent). It returns the number of
// re-deliveries.
func CheckDelivered(t testing.TB, crm *CRM, acc *Accepted, timeout time.Duration) int {
	t.Helper()
	position := acc.Position()
	got := crm.WaitDelivered(t, len(position), timeout)
	ids := UniqueIDs(got)
	for id := range ids {
		if _, ok := position[id]; !ok {
			t.Errorf("CRM received event %s that was never acknowledged", id)
		}
	}
	for id := range position {
		if !ids[id] {
			t.Errorf("acknowledged event %s was not delivered", id)
		}
	}
	CheckCallOrder(t, got, position)
	return len(got) - len(ids)
}

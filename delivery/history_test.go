package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// The history finds a call by its id and by either of its numbers, with every attempt of each
// event in order: the CRM's 503 and then the delivery.
func TestFindCalls(t *testing.T) {
	c := gatewaytest.NewCRM(t, func(ev event.Event, attempt int) int {
		if ev.Data.CallID == "A.1" && ev.Data.Seq == 2 && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := openEngine(t, Config{})
	ctx := context.Background()
	if err := e.Apply(ctx, Config{}, []Target{testTarget(c.URL)}); err != nil {
		t.Fatal(err)
	}
	numbered := func(call, from, to string, n int) []event.Event {
		evs := callEvents(call, n)
		for i := range evs {
			evs[i].Data.From.Number, evs[i].Data.To.Number = from, to
		}
		return evs
	}
	// Call ids and numbers as PBXs send them: dots, slashes, '=' and '*' must not turn into
	// subject tokens or wildcards.
	a := numbered("A.1", "+79161234567", "sip:101@pbx.example", 3)
	b := numbered("B/2=*", "+74951234567", "+79161234567", 1)
	other := numbered("C", "+70000000000", "", 1)
	for _, evs := range [][]event.Event{a, b, other} {
		if _, err := e.Enqueue(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitDelivered(t, 5, 30*time.Second)
	name := map[string]string{} // event id → call/index
	for _, evs := range [][]event.Event{a, b, other} {
		for i, ev := range evs {
			name[ev.ID] = fmt.Sprintf("%s/%d", ev.Data.CallID, i)
		}
	}

	summary := func(calls []CallHistory) string {
		var parts []string
		for _, call := range calls {
			s := call.CallID + ":"
			for _, ev := range call.Events {
				s += " " + name[ev.ID]
				for _, at := range ev.Attempts {
					s += fmt.Sprintf(" %d/%s/%d", at.Attempt, at.Result, at.Status)
				}
			}
			parts = append(parts, s)
		}
		slices.Sort(parts) // calls of one phone come most recent first, which the timing decides
		return strings.Join(parts, " | ")
	}
	for _, c := range []struct{ callID, phone, want string }{
		{"A.1", "", "A.1: A.1/0 1/success/200 A.1/1 1/retry/503 2/success/200 A.1/2 1/success/200"},
		{"", "+79161234567", "A.1: A.1/0 1/success/200 A.1/1 1/retry/503 2/success/200 A.1/2 1/success/200 | B/2=*: B/2=*/0 1/success/200"},
		{"", "sip:101@pbx.example", "A.1: A.1/0 1/success/200 A.1/1 1/retry/503 2/success/200 A.1/2 1/success/200"},
		{"B/2=*", "", "B/2=*: B/2=*/0 1/success/200"},
		{"A", "", ""},
		{"*", "", ""},
	} {
		var calls []CallHistory
		gatewaytest.Eventually(t, 10*time.Second, "the history of "+c.callID+c.phone, func() bool {
			var err error
			calls, err = e.FindCalls(ctx, c.callID, c.phone)
			if err != nil {
				t.Fatal(err)
			}
			return summary(calls) == c.want
		})
		if c.want == "" {
			continue
		}
		at := calls[0].Events[0].Attempts[0]
		if at.Target != "crm" || at.Type != event.TypeRinging || at.At.IsZero() || at.Duration <= 0 {
			t.Errorf("%s%s: attempt %+v", c.callID, c.phone, at)
		}
	}
	if _, err := e.FindCalls(ctx, "", ""); !errors.Is(err, ErrNoQuery) {
		t.Errorf("no query: %v", err)
	}
}

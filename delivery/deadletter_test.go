package delivery

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// An admin operation on dead letters is tried again while JetStream does not answer (a NATS
// node rejoining its cluster), and ends with ErrNotReady, not the raw error, when that lasts.
func TestAnsweredRetriesNoResponders(t *testing.T) {
	other := errors.New("stream not found")
	for _, tc := range []struct {
		name      string
		answers   []error // op's results in turn; the last repeats
		timeout   time.Duration
		wantCalls int
		want      error
	}{
		{"answered at once", []error{nil}, time.Second, 1, nil},
		{"answered after a moment", []error{nats.ErrNoResponders, nats.ErrNoResponders, nil}, 5 * time.Second, 3, nil},
		{"another error is not retried", []error{other}, time.Second, 1, other},
		{"no answer until the deadline", []error{nats.ErrNoResponders}, time.Nanosecond, 1, ErrNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			calls := 0
			err := answered(ctx, func() error {
				calls++
				return tc.answers[min(calls, len(tc.answers))-1]
			})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("answered: %v, want %v", err, tc.want)
			}
			if calls != tc.wantCalls {
				t.Errorf("op ran %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}

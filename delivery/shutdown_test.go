package delivery

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/translators"
)

// A stop lets an in-flight attempt finish within the grace period: the event is delivered
// and acknowledged, so the next run does not deliver it again.
func TestCloseDrainsInFlightAttempts(t *testing.T) {
	started := make(chan struct{}, 1)
	crm := gatewaytest.NewCRM(t, func(translators.Event, int) int {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond) // a slow CRM: the attempt is in flight at Close
		return http.StatusOK
	})
	dir := t.TempDir()
	e, err := Open(Config{DataDir: dir}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Apply(ctx, Config{}, []Target{testTarget(crm.URL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enqueue(ctx, callEvents("drain", 1)); err != nil {
		t.Fatal(err)
	}
	<-started
	grace, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.Close(grace); err != nil {
		t.Fatal(err)
	}
	if n := len(crm.Delivered()); n != 1 {
		t.Fatalf("delivered %d events during the drain, want 1", n)
	}

	// The next run finds nothing pending.
	e, err = Open(Config{DataDir: dir}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	if err := e.Apply(ctx, Config{}, []Target{testTarget(crm.URL)}); err != nil {
		t.Fatal(err)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Targets[0].Depth != 0 {
		t.Fatalf("after a drained stop the queue holds %d events", st.Targets[0].Depth)
	}
}

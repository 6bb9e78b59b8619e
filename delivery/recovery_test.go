package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// nats-server can lose, while recovering from a kill -9 during an atomic batch commit, messages
// of that batch yet keep their ids for deduplication (found by the chaos suite and
// TestKill9UnderLoadLosesNothing). Simulated here: after a restart the stored event is deleted
// while its id stays known. The PBX's re-send is then stored again and delivered, once, with its
// webhook-id; later re-sends are duplicates of the copy, before and after its delivery.
func TestResendOfEventLostInCrashRecovery(t *testing.T) {
	ctx := context.Background()
	crm := gatewaytest.NewCRM(t, nil)
	dir := t.TempDir()
	delivered, lost := callEvent(event.TypeRinging, "A", 0), callEvent(event.TypeRinging, "B", 0)

	first := openEngine(t, Config{DataDir: dir})
	if err := first.Apply(ctx, Config{}, []Target{testTarget(crm.URL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Enqueue(ctx, []event.Event{delivered}); err != nil {
		t.Fatal(err)
	}
	crm.WaitDelivered(t, 1, 30*time.Second)
	if err := first.Pause(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	if res, err := first.Enqueue(ctx, []event.Event{lost}); err != nil || res.Accepted != 1 {
		t.Fatalf("enqueue: %+v %v", res, err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}

	e := openEngine(t, Config{DataDir: dir})
	if err := e.Apply(ctx, Config{}, []Target{testTarget(crm.URL)}); err != nil {
		t.Fatal(err)
	}
	stream, err := e.js.Stream(ctx, e.names.events)
	if err != nil {
		t.Fatal(err)
	}
	lostSeq := stream.CachedInfo().State.LastSeq
	if err := stream.DeleteMsg(ctx, lostSeq); err != nil { // what the crash recovery did
		t.Fatal(err)
	}

	if res, err := e.Enqueue(ctx, []event.Event{lost}); err != nil || res.Accepted != 1 {
		t.Fatalf("re-send of the lost event: %+v %v, want it stored again", res, err)
	}
	if res, err := e.Enqueue(ctx, []event.Event{lost}); err != nil || res.Duplicates != 1 {
		t.Fatalf("second re-send: %+v %v, want a duplicate of the copy", res, err)
	}
	if err := e.Resume(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	got := crm.WaitDelivered(t, 2, 30*time.Second)
	gatewaytest.Eventually(t, 10*time.Second, "the copy acknowledged and removed", func() bool {
		_, err := stream.GetMsg(ctx, lostSeq+1)
		return err != nil
	})
	if res, err := e.Enqueue(ctx, []event.Event{lost}); err != nil || res.Duplicates != 1 {
		t.Fatalf("re-send after delivery: %+v %v, want a duplicate of the delivered copy", res, err)
	}
	if n := len(crm.Delivered()); n != 2 {
		t.Errorf("CRM got %d deliveries, want 2", n)
	}
	if id := got[len(got)-1].Header.Get("webhook-id"); id != lost.ID {
		t.Errorf("the copy was delivered as %s, want the event's id %s", id, lost.ID)
	}
}

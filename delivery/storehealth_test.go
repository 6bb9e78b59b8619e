package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// enqueueOne stores one event of its own call and returns Enqueue's error.
func enqueueOne(e *Engine, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), durableTestWait)
	defer cancel()
	_, err := e.Enqueue(ctx, []event.Event{callEvent(event.TypeRinging, id, 0)})
	return err
}

// durableTestWait is a webhook's wait for its durable write (the handler's budget).
const durableTestWait = 2 * time.Second

// TestStoreWriteErrorHealsWithoutRestart: the disk fills faster than the free space is
// watched, so a write meets ENOSPC and the file store keeps that error; the engine reports it
// at once (Writable, status, metric), refuses without waiting, and once space returns restarts
// JetStream by itself: webhooks are accepted again and every accepted event is delivered once.
func TestStoreWriteErrorHealsWithoutRestart(t *testing.T) {
	disk := gatewaytest.SmallDisk(t, 40<<20)
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusServiceUnavailable })
	cfg := Config{DataDir: filepath.Join(disk, "store"), MaxStore: 16 << 20}
	e := openEngine(t, cfg)
	applyTargets(t, e, testTarget(crm.URL))
	filler := gatewaytest.NewFiller(t, disk)

	accepted := map[string]bool{}
	n := 0
	accept := func(what string) {
		t.Helper()
		for range 50 {
			id := fmt.Sprintf("%s-%d", what, n)
			n++
			if err := enqueueOne(e, id); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			accepted[id] = true
		}
	}
	accept("before")

	// Room enough, then all of it gone at once: the next write meets ENOSPC before the next
	// measurement. Should a measurement come first, webhooks get "disk full": try again.
	var failure error
	for try := 0; failure == nil && try < 20; try++ {
		filler.Leave(e.health.reserve + 4<<20)
		gatewaytest.Eventually(t, 10*time.Second, "room measured", func() bool { return e.Writable() == nil })
		filler.Leave(0)
	fill:
		for i := range 200 {
			id := fmt.Sprintf("fill-%d-%d", try, i)
			switch err := enqueueOne(e, id); {
			case err == nil:
				accepted[id] = true
			case errors.Is(err, ErrStoreFailed):
				failure = err
				break fill
			case errors.Is(err, ErrDiskFull):
				break fill
			default:
				t.Fatalf("%s: %v", id, err)
			}
		}
	}
	if failure == nil {
		t.Fatal("no write met a full disk")
	}
	want := "store write failed: no space left on device on " + cfg.DataDir
	if !strings.Contains(failure.Error(), want) {
		t.Errorf("refusal %q, want it to say %q", failure, want)
	}
	start := time.Now()
	if err := enqueueOne(e, "while-failed"); !errors.Is(err, ErrStoreFailed) || time.Since(start) > time.Second {
		t.Errorf("while failed: %v after %s, want an immediate ErrStoreFailed", err, time.Since(start))
	}
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready || !strings.Contains(st.StoreError, want) {
		t.Errorf("status ready %v, store_error %q; want not ready, %q", st.Ready, st.StoreError, want)
	}
	if v := testutil.ToFloat64(metrics.storeWriteFailed); v != 1 {
		t.Errorf("pbxbridge_store_write_failed %v while failed", v)
	}

	filler.Remove()
	freed := time.Now()
	gatewaytest.Eventually(t, 10*time.Second, "the store to heal", func() bool { return e.Writable() == nil })
	t.Logf("healed %s after space returned", time.Since(freed).Round(time.Millisecond))
	if v := testutil.ToFloat64(metrics.storeWriteFailed); v != 0 {
		t.Errorf("pbxbridge_store_write_failed %v after healing", v)
	}
	accept("after")
	crm.SetRespond(nil)
	crm.WaitDelivered(t, len(accepted), time.Minute)
	time.Sleep(ackWait + time.Second) // a redelivery would come within one ack deadline
	got := map[string]int{}
	for _, d := range crm.Delivered() {
		got[d.Event.Data.CallID]++
	}
	for id := range accepted {
		if got[id] != 1 {
			t.Errorf("accepted %s delivered %d times", id, got[id])
		}
	}
	t.Logf("accepted %d events, each delivered once", len(accepted))
}

// TestRestartOnFullDiskStartsAndDrains: a gateway holding accepted events starts again on a
// disk with no byte free (JetStream's own store limit no longer depends on the free space),
// refuses webhooks with "disk full", and delivers what it holds.
func TestRestartOnFullDiskStartsAndDrains(t *testing.T) {
	disk := gatewaytest.SmallDisk(t, 40<<20)
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusServiceUnavailable })
	cfg := Config{DataDir: filepath.Join(disk, "store")}
	e, closeEngine := openEngineToClose(t, cfg)
	applyTargets(t, e, testTarget(crm.URL))
	for i := range 100 {
		if err := enqueueOne(e, fmt.Sprintf("held-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeEngine(context.Background()); err != nil {
		t.Fatal(err)
	}
	filler := gatewaytest.NewFiller(t, disk)
	filler.Leave(0)

	crm.SetRespond(nil)
	e = openEngine(t, cfg)
	applyTargets(t, e, testTarget(crm.URL))
	if err := enqueueOne(e, "on-full-disk"); !errors.Is(err, ErrDiskFull) {
		t.Errorf("webhook on a full disk: %v, want ErrDiskFull", err)
	}
	crm.WaitDelivered(t, 100, time.Minute)
	filler.Remove()
	gatewaytest.Eventually(t, 10*time.Second, "room measured", func() bool { return e.Writable() == nil })
	if err := enqueueOne(e, "after"); err != nil {
		t.Fatal(err)
	}
	crm.WaitDelivered(t, 101, time.Minute)
	time.Sleep(ackWait + time.Second) // a redelivery would come within one ack deadline
	if n, distinct := len(crm.Delivered()), len(gatewaytest.UniqueIDs(crm.Delivered())); n != distinct {
		t.Errorf("%d deliveries of %d events: some were delivered twice", n, distinct)
	}
}

// TestDefaultMaxStoreFitsATinyDisk: with no max_store the engine starts on an 8 MB disk, its
// limit a quarter of the disk, and takes events.
func TestDefaultMaxStoreFitsATinyDisk(t *testing.T) {
	disk := gatewaytest.SmallDisk(t, 8<<20)
	crm := gatewaytest.NewCRM(t, nil)
	e := openEngine(t, Config{DataDir: filepath.Join(disk, "store")})
	applyTargets(t, e, testTarget(crm.URL))
	if got := e.maxStore(); got != 2<<20 {
		t.Errorf("default max_store %d on an 8 MiB disk, want 2 MiB", got)
	}
	if err := enqueueOne(e, "tiny"); err != nil {
		t.Fatal(err)
	}
	crm.WaitDelivered(t, 1, 30*time.Second)
}

func TestWriteErrorCause(t *testing.T) {
	for line, want := range map[string]string{
		"Filestore [PBX_EVENTS] Critical write error: write /d/jetstream/jetstream/$G/streams/PBX_EVENTS/msgs/1.blk: no space left on device": "no space left on device",
		"JetStream stream '$G > PBX_DEAD' critical write error: write /d/1.blk: read-only file system":                                        "read-only file system",
		"JetStream failed to store a msg on stream '$G > PBX_EVENTS': write /d/1.blk: no space left on device":                                "",
		"Error trying to connect to route": "",
	} {
		if got := writeErrorCause(line); got != want {
			t.Errorf("writeErrorCause(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestWriteErrno(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&os.PathError{Op: "sync", Path: "/d/1.blk", Err: syscall.EIO}, "input/output error"},
		{fmt.Errorf("syncing: %w", &os.PathError{Op: "write", Path: "/d/1.blk", Err: syscall.ENOSPC}), "no space left on device"},
		{&os.PathError{Op: "open", Path: "/d/1.blk", Err: syscall.ENOENT}, ""},
		{errors.New("no message block in /d"), ""},
	} {
		if got := writeErrno(tt.err); got != tt.want {
			t.Errorf("writeErrno(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

package delivery

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// The block the group commit syncs is the one the embedded server wrote the event to, and a
// dead letter's is the one it was written to: the server's file layout is as blockSyncer
// expects.
func TestBlockSyncerSyncsWhatWasStored(t *testing.T) {
	ctx := context.Background()
	// The CRM answers only once the events block was read: a dead letter acknowledges the
	// event, and the store then removes the block it was in.
	read := make(chan struct{})
	var once sync.Once
	readDone := func() { once.Do(func() { close(read) }) }
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { <-read; return 422 })
	e := openEngine(t, Config{})
	t.Cleanup(readDone) // before the engine and the CRM stop, which wait for the attempt
	if err := e.Apply(ctx, Config{}, []Target{testTarget(crm.URL)}); err != nil {
		t.Fatal(err)
	}
	ev := callEvent(event.TypeRinging, "synced-call", 0)
	if _, err := e.Enqueue(ctx, []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	holds := func(s *blockSyncer, what string) {
		t.Helper()
		s.mu.Lock()
		last := s.last
		s.mu.Unlock()
		data, err := os.ReadFile(s.block(last))
		if err != nil || !bytes.Contains(data, []byte(ev.ID)) {
			t.Fatalf("%s: block %s does not hold event %s (%v)", what, s.block(last), ev.ID, err)
		}
	}
	holds(e.eventsSync, "events")
	readDone()
	gatewaytest.Eventually(t, 30*time.Second, "the dead letter", func() bool {
		dls, err := e.DeadLetters(ctx, "crm")
		return err == nil && len(dls) == 1
	})
	holds(e.deadSync, "dead letters")
}

// The syncer follows the store from block to block, whether the one it knew is gone or not,
// and whatever indices were skipped.
func TestBlockSyncerFollowsBlocks(t *testing.T) {
	dir := t.TempDir()
	s := newBlockSyncer(dir, "$G", "EV")
	if err := s.sync(); err == nil {
		t.Fatal("sync without a stream directory succeeded")
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	create := func(names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(s.dir, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, step := range []struct {
		create []string
		remove string
		want   int
	}{
		{create: []string{"index.db", "1.blk", "2.blk"}, want: 2},
		{want: 2},
		{create: []string{"3.blk", "4.blk"}, want: 4},
		{create: []string{"7.blk"}, remove: "4.blk", want: 7},
		// 8 came and went between two syncs (the stream emptied): 7 is still there, 9 is last.
		{create: []string{"9.blk"}, want: 9},
	} {
		create(step.create...)
		if step.remove != "" {
			if err := os.Remove(filepath.Join(s.dir, step.remove)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.sync(); err != nil {
			t.Fatal(err)
		}
		if s.last != step.want {
			t.Fatalf("after %v: last block %d, want %d", step, s.last, step.want)
		}
	}
	if err := (*blockSyncer)(nil).sync(); err != nil {
		t.Errorf("nil syncer (a cluster): %v", err)
	}
}

// The store replaces an emptied last block by a new one (created first, then the old removed)
// as often as every delivered event; sync keeps finding the current one and never fails.
func TestBlockSyncerWhileTheStoreReplacesBlocks(t *testing.T) {
	s := newBlockSyncer(t.TempDir(), "$G", "EV")
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	block := func(i int) string { return filepath.Join(s.dir, fmt.Sprintf("%d.blk", i)) }
	if err := os.WriteFile(block(1), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const blocks = 3000
	replaced := make(chan error, 1)
	go func() {
		for i := 2; i <= blocks; i++ {
			if err := os.WriteFile(block(i), nil, 0o600); err != nil {
				replaced <- err
				return
			}
			if err := os.Remove(block(i - 1)); err != nil {
				replaced <- err
				return
			}
		}
		replaced <- nil
	}()
	for syncs := 0; ; syncs++ {
		select {
		case err := <-replaced:
			if err != nil {
				t.Fatal(err)
			}
			if err := s.sync(); err != nil || s.last != blocks {
				t.Fatalf("after the last replacement: %v, last block %d, want %d", err, s.last, blocks)
			}
			t.Logf("%d syncs while %d blocks replaced one another", syncs, blocks)
			return
		default:
		}
		if err := s.sync(); err != nil {
			<-replaced // the directory is removed after the test: let the replacing stop first
			t.Fatalf("sync %d: %v", syncs, err)
		}
	}
}

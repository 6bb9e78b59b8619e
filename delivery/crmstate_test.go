package delivery

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/crm"
)

// Put is a compare-and-set: of two writers that read one revision only the first succeeds;
// targets see only their own keys; a deleted key can be created again.
func TestCRMStateCompareAndSet(t *testing.T) {
	e := openEngine(t, Config{})
	ctx := context.Background()
	a := startedCRMState(t, e, "a")
	b, _ := e.CRMState("b")
	if _, _, err := a.Get(ctx, "token"); !errors.Is(err, crm.ErrNotFound) {
		t.Fatalf("Get of a new key: %v, want ErrNotFound", err)
	}
	rev, err := a.Put(ctx, "token", []byte("one"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "token", []byte("again"), 0, 0); !errors.Is(err, crm.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if _, err := a.Put(ctx, "token", []byte("two"), rev, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "token", []byte("stale"), rev, 0); !errors.Is(err, crm.ErrConflict) {
		t.Fatalf("update at a stale revision: %v, want ErrConflict", err)
	}
	if v, _, err := a.Get(ctx, "token"); err != nil || string(v) != "two" {
		t.Fatalf("Get = %q, %v; want two", v, err)
	}
	if _, _, err := b.Get(ctx, "token"); !errors.Is(err, crm.ErrNotFound) {
		t.Fatalf("another target's Get: %v, want ErrNotFound", err)
	}
	if err := a.Delete(ctx, "token"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Get(ctx, "token"); !errors.Is(err, crm.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := a.Put(ctx, "token", []byte("three"), 0, 0); err != nil {
		t.Fatalf("create after Delete: %v", err)
	}
}

// A key written with a TTL expires, also after a compare-and-set update (which would drop a
// TTL); a key written without one stays.
func TestCRMStateKeyExpires(t *testing.T) {
	ctx := context.Background()
	st := startedCRMState(t, openEngine(t, Config{}), "a")
	if _, err := st.Put(ctx, "token", []byte("stays"), 0, 0); err != nil {
		t.Fatal(err)
	}
	created, err := st.Put(ctx, "call.created", []byte("one"), 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	updated, err := st.Put(ctx, "call.updated", []byte("one"), 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "call.updated", []byte("two"), updated, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "call.updated", []byte("stale"), updated, time.Second); !errors.Is(err, crm.ErrConflict) {
		t.Fatalf("update with a TTL at a stale revision: %v, want ErrConflict", err)
	}
	if _, _, err := st.Get(ctx, "call.created"); err != nil {
		t.Fatalf("Get before the TTL: %v (revision %d)", err, created)
	}
	waitExpired(t, st, "call.created", "call.updated")
	if v, _, err := st.Get(ctx, "token"); err != nil || string(v) != "stays" {
		t.Fatalf("the key without a TTL: %q, %v", v, err)
	}
	if _, err := st.Put(ctx, "call.created", []byte("again"), 0, time.Second); err != nil {
		t.Fatalf("create after expiry: %v", err)
	}
}

// startedCRMState starts e's queue, which makes the buckets, and is target's crm state.
func startedCRMState(t *testing.T, e *Engine, target string) crm.State {
	t.Helper()
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget("http://127.0.0.1:1")}); err != nil {
		t.Fatal(err)
	}
	st, err := e.CRMState(target)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitExpired waits, at most 15s, until every key is gone.
func waitExpired(t *testing.T, st crm.State, keys ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, key := range keys {
		for {
			_, _, err := st.Get(context.Background(), key)
			if errors.Is(err, crm.ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not expired after 15s", key)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// A crm bucket made by a version without per-key TTLs opens with them, its keys kept.
func TestCRMBucketGetsTTLs(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first, closeFirst := openEngineToClose(t, Config{DataDir: dir})
	if err := first.Apply(ctx, Config{}, []Target{testTarget("http://127.0.0.1:1")}); err != nil {
		t.Fatal(err)
	}
	// The bucket as the version before made it.
	if err := first.js.DeleteKeyValue(ctx, first.names.crm); err != nil {
		t.Fatal(err)
	}
	old, err := first.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      first.names.crm,
		Description: "pbxbridge CRM connectors' state: application tokens, the CRM's ids of calls",
		Storage:     jetstream.FileStorage,
		Replicas:    1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Create(ctx, "a.token", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Create(ctx, "a.call.x", []byte("x"), jetstream.KeyTTL(time.Second)); err == nil {
		t.Fatal("the old bucket took a key TTL; the test does not make the old bucket")
	}
	if err := closeFirst(ctx); err != nil {
		t.Fatal(err)
	}

	st := startedCRMState(t, openEngine(t, Config{DataDir: dir}), "a")
	if v, _, err := st.Get(ctx, "token"); err != nil || string(v) != "kept" {
		t.Fatalf("the old bucket's key: %q, %v", v, err)
	}
	if _, err := st.Put(ctx, "call.x", []byte("x"), 0, time.Second); err != nil {
		t.Fatalf("a key TTL in the upgraded bucket: %v", err)
	}
	waitExpired(t, st, "call.x")
}

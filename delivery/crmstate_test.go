package delivery

import (
	"context"
	"errors"
	"testing"

	"github.com/pbxbridge/pbxbridge/crm"
)

// Put is a compare-and-set: of two writers that read one revision only the first succeeds;
// targets see only their own keys; a deleted key can be created again.
func TestCRMStateCompareAndSet(t *testing.T) {
	e := openEngine(t, Config{})
	ctx := context.Background()
	if err := e.Apply(ctx, Config{}, []Target{testTarget("http://127.0.0.1:1")}); err != nil {
		t.Fatal(err)
	}
	a, err := e.CRMState("a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.CRMState("b")
	if _, _, err := a.Get(ctx, "token"); !errors.Is(err, crm.ErrNotFound) {
		t.Fatalf("Get of a new key: %v, want ErrNotFound", err)
	}
	rev, err := a.Put(ctx, "token", []byte("one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "token", []byte("again"), 0); !errors.Is(err, crm.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if _, err := a.Put(ctx, "token", []byte("two"), rev); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "token", []byte("stale"), rev); !errors.Is(err, crm.ErrConflict) {
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
	if _, err := a.Put(ctx, "token", []byte("three"), 0); err != nil {
		t.Fatalf("create after Delete: %v", err)
	}
}

package delivery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func openCommands(t *testing.T) *Commands {
	t.Helper()
	e := openEngine(t, Config{})
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget("http://127.0.0.1:1")}); err != nil {
		t.Fatal(err)
	}
	if e.Commands() == nil {
		t.Fatal("Apply did not create the command bucket")
	}
	return e.Commands()
}

// Concurrent requests for one command id: exactly one claims it, the others see its value;
// after Settle every claim gets the answer; a released id can be claimed again.
func TestCommandsClaimOnce(t *testing.T) {
	c := openCommands(t)
	ctx := context.Background()
	key := CommandKey("office", "crm-retry-1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var claims []uint64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev, held, err := c.Claim(ctx, key, []byte("pending"))
			if err != nil {
				t.Error(err)
				return
			}
			if rev == 0 && string(held) != "pending" {
				t.Errorf("a losing claim saw %q", held)
			}
			if rev != 0 {
				mu.Lock()
				claims = append(claims, rev)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claims) != 1 {
		t.Fatalf("%d claims won, want 1", len(claims))
	}
	if err := c.Settle(ctx, key, claims[0], []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if rev, held, err := c.Claim(ctx, key, []byte("pending")); err != nil || rev != 0 || string(held) != "answer" {
		t.Errorf("after Settle: rev %d held %q err %v", rev, held, err)
	}

	other := CommandKey("office", "crm-retry-2")
	rev, _, err := c.Claim(ctx, other, []byte("pending"))
	if err != nil || rev == 0 {
		t.Fatalf("claim: %d %v", rev, err)
	}
	if err := c.Release(ctx, other, rev); err != nil {
		t.Fatal(err)
	}
	if rev, _, err := c.Claim(ctx, other, []byte("pending")); err != nil || rev == 0 {
		t.Errorf("a released id cannot be claimed again: %d %v", rev, err)
	}
	if CommandKey("office", "x") == CommandKey("branch", "x") {
		t.Error("two accounts share a key")
	}
}

// A waiter gets the answer when it is settled, nil when the claim is released, and nil at once
// for an id nobody holds.
func TestCommandsAwait(t *testing.T) {
	c := openCommands(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	settled := func(v []byte) bool { return string(v) != "pending" }
	for _, tt := range []struct {
		name   string
		finish func(key string, rev uint64) error
		want   string
	}{
		{"settled", func(key string, rev uint64) error { return c.Settle(ctx, key, rev, []byte("answer")) }, "answer"},
		{"released", func(key string, rev uint64) error { return c.Release(ctx, key, rev) }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := CommandKey("office", tt.name)
			rev, _, err := c.Claim(ctx, key, []byte("pending"))
			if err != nil {
				t.Fatal(err)
			}
			// While the claim is pending, Await waits.
			short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
			defer stop()
			if v, err := c.Await(short, key, settled); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Await of a pending claim = %q, %v", v, err)
			}
			// Whether the waiter starts watching before or after finish, it gets the outcome.
			got := make(chan []byte, 1)
			go func() {
				v, err := c.Await(ctx, key, settled)
				if err != nil {
					t.Error(err)
				}
				got <- v
			}()
			if err := tt.finish(key, rev); err != nil {
				t.Fatal(err)
			}
			if v := <-got; string(v) != tt.want {
				t.Errorf("Await = %q, want %q", v, tt.want)
			}
		})
	}
	if v, err := c.Await(ctx, CommandKey("office", "nobody"), settled); v != nil || err != nil {
		t.Errorf("Await of a free id = %q, %v", v, err)
	}
}

package delivery

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/natstest"
	"go.uber.org/zap"
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

// Two gateways on one NATS keep to one account's pace together: of a burst sent through both,
// no more commands get a turn than one gateway alone would give, and a pause one of them sets
// (Mango's lock-out) holds on the other, unshortened by a shorter one and unmoved by asking.
func TestCommandPaceSharedByGateways(t *testing.T) {
	srv := natstest.RunBasicJetStreamServer(t)
	var gateways []*Commands
	for range 2 {
		e := openEngine(t, Config{NATS: &NATSConfig{URLs: []string{srv.ClientURL()}}})
		applyTargets(t, e, testTarget("http://127.0.0.1:1"))
		gateways = append(gateways, e.Commands())
	}
	ctx := context.Background()
	const interval, maxWait, burst = time.Second, 3 * time.Second, 24
	var taken, refused atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			turn, err := gateways[i%2].TakeTurn(ctx, "office", interval, maxWait)
			switch {
			case err != nil:
				t.Error(err)
			case turn.Later > 0:
				refused.Add(1)
			case turn.Wait > maxWait:
				t.Errorf("a turn %s away, past the %s the caller waits", turn.Wait, maxWait)
			default:
				taken.Add(1)
			}
		}()
	}
	wg.Wait()
	// One turn now and one per interval up to maxWait; time passing meanwhile frees more.
	if most := 1 + int64((maxWait+time.Since(start))/interval); taken.Load() > most || taken.Load()+refused.Load() != burst {
		t.Errorf("%d turns taken and %d refused of %d through two gateways; one alone gives at most %d", taken.Load(), refused.Load(), burst, most)
	}

	if err := gateways[0].Pause(ctx, "office", time.Minute, []byte("locked")); err != nil {
		t.Fatal(err)
	}
	if err := gateways[1].Pause(ctx, "office", time.Second, []byte("busy")); err != nil {
		t.Fatal(err)
	}
	var lasts []time.Duration
	for range 2 {
		turn, err := gateways[1].TakeTurn(ctx, "office", interval, maxWait)
		if err != nil || string(turn.Paused) != "locked" || turn.Later <= 50*time.Second {
			t.Fatalf("during the other gateway's lock-out: %+v %v", turn, err)
		}
		lasts = append(lasts, turn.Later)
	}
	if lasts[1] > lasts[0] {
		t.Errorf("asking during the pause moved its end: %s, then %s", lasts[0], lasts[1])
	}
	if turn, err := gateways[0].TakeTurn(ctx, "other", interval, maxWait); err != nil || turn.Paused != nil || turn.Later != 0 || turn.Wait != 0 {
		t.Errorf("another account during the lock-out: %+v %v", turn, err)
	}
}

// The pace costs a store round trip per command; with the embedded store it stays in process.
func BenchmarkCommandTurn(b *testing.B) {
	e, err := Open(Config{DataDir: b.TempDir()}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget("http://127.0.0.1:1")}); err != nil {
		b.Fatal(err)
	}
	c, ctx := e.Commands(), context.Background()
	for b.Loop() {
		if _, err := c.TakeTurn(ctx, "office", 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

package delivery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
)

// benchEngine is an engine on a fresh store with a target nobody delivers to quickly (its URL
// refuses connections), so the benchmark measures ingest alone.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	e, err := Open(Config{DataDir: b.TempDir()}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	t := Target{Name: "crm", URL: "http://127.0.0.1:1/", Accounts: []Account{{"mango", "office"}}}
	if err := e.Apply(context.Background(), Config{}, []Target{t}); err != nil {
		b.Fatal(err)
	}
	if err := e.Pause(context.Background(), "crm"); err != nil {
		b.Fatal(err)
	}
	return e
}

// benchEnqueue runs b.N enqueues of one event each from `workers` goroutines and reports
// msg/s and the p50 and p99 latency of one enqueue. publish is the enqueue under test.
func benchEnqueue(b *testing.B, workers int, publish func(ctx context.Context, ev event.Event) error) {
	src := event.Origin{PBX: "mango", Account: "office"}
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				call := fmt.Sprintf("call-%d", i/5)
				ev := src.New(event.TypeRinging, fmt.Sprintf("bench-%d-%d", b.N, i), call, time.Now())
				sent := time.Now()
				if err := publish(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
				latencies[i-1] = time.Since(sent)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	slices.Sort(latencies)
	b.ReportMetric(latencies[(b.N-1)/2].Seconds()*1000, "p50-ms")
	b.ReportMetric(latencies[(b.N-1)*99/100].Seconds()*1000, "p99-ms")
}

// BenchmarkEnqueueGroupCommit4 is the group commit with 4 concurrent webhooks, the latency a
// PBX sees when traffic is light (small batches).
func BenchmarkEnqueueGroupCommit4(b *testing.B) {
	e := benchEngine(b)
	benchEnqueue(b, 4, func(ctx context.Context, ev event.Event) error {
		_, err := e.Enqueue(ctx, []event.Event{ev})
		return err
	})
}

// BenchmarkEnqueueGroupCommit64 is the group commit with 64 concurrent webhooks (issue 4:
// ≥ 8k msg/s, every one synced before it is answered).
func BenchmarkEnqueueGroupCommit64(b *testing.B) {
	e := benchEngine(b)
	benchEnqueue(b, 64, func(ctx context.Context, ev event.Event) error {
		_, err := e.Enqueue(ctx, []event.Event{ev})
		return err
	})
}

// BenchmarkEnqueueSinglePublish64 is the baseline: 64 concurrent plain JetStream publishes of
// the same messages, one fsync each (what the server's SyncAlways does).
func BenchmarkEnqueueSinglePublish64(b *testing.B) {
	e := benchEngine(b)
	benchEnqueue(b, 64, func(ctx context.Context, ev event.Event) error {
		m := pending{subject: e.names.subject("mango", "office", ev.Type), id: ev.ID, key: ev.OrderingKey(), data: []byte(`{}`)}
		if _, err := e.js.PublishMsg(ctx, m.msg()); err != nil {
			return err
		}
		return e.eventsSync.sync()
	})
}

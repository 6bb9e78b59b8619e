package heaplimit

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    reading
		want int64
	}{
		{"live heap, headroom and the rest", reading{live: 200 << 20, other: 20 << 20, ceiling: 1 << 40}, 284 << 20},
		{"a large heap gets a quarter", reading{live: 400 << 20, other: 20 << 20, ceiling: 1 << 40}, 520 << 20},
		{"a lower ceiling wins", reading{live: 300 << 20, other: 20 << 20, ceiling: 200 << 20}, 200 << 20},
		{"a small heap gets the headroom", reading{live: 4 << 20, ceiling: 1 << 40}, 68 << 20},
	} {
		if got := limit(tc.r); got != tc.want {
			t.Errorf("%s: limit %d MiB, want %d MiB", tc.name, got>>20, tc.want>>20)
		}
	}
}

// current is the limit in force.
func current() int64 { return debug.SetMemoryLimit(-1) }

// The limit follows the live heap up, below the limit found, which the last stop restores; a
// limit someone else sets meanwhile is kept as the ceiling. GOGC is gcPercent meanwhile, and
// the last stop restores the GOGC found.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "") // not the operator's: Start may replace it
	before := debug.SetMemoryLimit(1 << 40)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	percent := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(percent) })

	runtime.GC() // the live heap of now, not of an earlier test's
	stop := Start()
	first := current()
	if first >= 1<<40 || first < Headroom {
		t.Fatalf("limit %d MiB after Start", first>>20)
	}
	if got := gcPercentNow(); got != gcPercent {
		t.Errorf("GOGC %d after Start, want %d", got, gcPercent)
	}
	ballast := make([]byte, 128<<20)
	runtime.GC()
	loop.Lock()
	follow()
	loop.Unlock()
	if grown := current() - first; grown < 100<<20 {
		t.Errorf("limit grew by %d MiB with 128 MiB more live", grown>>20)
	}
	runtime.KeepAlive(ballast)

	stopAgain := Start() // a second user shares the loop
	stop()
	stop() // a stop counts once
	if current() == 1<<40 {
		t.Fatal("the first stop restored the limit while a user remained")
	}
	debug.SetMemoryLimit(first) // someone else sets a lower limit
	loop.Lock()
	follow()
	loop.Unlock()
	if got := current(); got != first {
		t.Errorf("limit %d MiB, want the %d MiB set meanwhile", got>>20, first>>20)
	}
	stopAgain()
	if got := current(); got != first {
		t.Errorf("limit %d MiB after the last stop, want %d MiB found", got>>20, first>>20)
	}
	if got := gcPercentNow(); got != 100 {
		t.Errorf("GOGC %d after the last stop, want the 100 found", got)
	}
}

// A GOGC the environment sets is the operator's: Start keeps it.
func TestStartKeepsGOGCSet(t *testing.T) {
	t.Setenv("GOGC", "150")
	percent := debug.SetGCPercent(150)
	t.Cleanup(func() { debug.SetGCPercent(percent) })
	stop := Start()
	got := gcPercentNow()
	stop()
	if got != 150 {
		t.Errorf("GOGC %d with GOGC=150 set, want 150", got)
	}
}

func gcPercentNow() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

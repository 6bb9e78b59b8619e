// Package heaplimit bounds how far the Go heap grows above what is live, in bytes rather than
// as a ratio. The embedded store keeps every event id received within the dedupe window in
// memory; with a million of them the live heap is a few hundred megabytes and the runtime's
// default (GOGC=100: collect when the heap has doubled) lets the process hold as much again in
// garbage. A small heap, the other way, is collected each time it has doubled, a few times a
// second under load, though memory is there for the headroom. See docs/performance.md#memory.
package heaplimit

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Headroom is the least the heap may hold above the live heap of the last collection; above
// 4 × Headroom live, a quarter of it (GOGC=25 there, where a collection costs most: the dedupe
// ids are all pointers).
const Headroom = 64 << 20

// gcPercent replaces GOGC's 100 while the limit is kept, unless GOGC is set: its goal (five
// times the live heap) is above the limit from Headroom/4 live on, so the limit, not the ratio,
// says when to collect, and a small heap is collected once in Headroom allocated, not each
// time it doubles.
const gcPercent = 400

// interval is how often the limit follows the live heap, which grows with the ids received
// (about 128 bytes each), not with the rate of allocation.
const interval = time.Second

// reading is what the limit is computed from.
type reading struct {
	live int64 // /gc/heap/live:bytes: marked live by the last collection
	// other is what the runtime holds that a collection does not free: the unused parts of heap
	// spans, stacks, its own metadata.
	other   int64
	ceiling int64 // the limit set before: GOMEMLIMIT, or Caddy's from the cgroup or the machine
}

// limit is the soft memory limit for r: the live heap, the headroom and what no collection
// frees, never above the ceiling.
func limit(r reading) int64 {
	return min(r.ceiling, r.live+max(Headroom, r.live/4)+r.other)
}

var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

func read(ceiling int64) reading {
	metrics.Read(samples)
	v := func(i int) int64 { return int64(samples[i].Value.Uint64()) }
	// What the limit counts (total − released), less the objects (live or garbage) and the
	// free spans, which the runtime returns to the system when the limit is near.
	return reading{live: v(0), other: max(0, v(1)-v(4)-v(2)-v(3)), ceiling: ceiling}
}

// loop is the one process-wide follower; Start and its stop count users.
var loop struct {
	sync.Mutex
	users    int
	ceiling  int64         // the limit found before the first Start, or set by someone else since
	set      int64         // the limit last set here
	percent  int           // GOGC found before the first Start, when gcPercent replaced it
	replaced bool          // gcPercent is in force, put there by the first Start
	quit     chan struct{} // closed by the last stop, under the lock
}

// Start keeps the runtime's soft memory limit (runtime/debug.SetMemoryLimit) at the live heap
// plus Headroom, below any limit already set, and GOGC at gcPercent unless the environment
// sets it, until every stop returned has been called; the last stop restores the limit and
// GOGC found. A limit set by anyone else meanwhile becomes the new ceiling.
func Start() (stop func()) {
	loop.Lock()
	defer loop.Unlock()
	loop.users++
	if loop.users == 1 {
		loop.ceiling = debug.SetMemoryLimit(-1)
		loop.set = loop.ceiling
		if loop.replaced = os.Getenv("GOGC") == ""; loop.replaced {
			loop.percent = debug.SetGCPercent(gcPercent)
		}
		loop.quit = make(chan struct{})
		follow()
		go run(loop.quit)
	}
	var once sync.Once
	return func() { once.Do(release) }
}

func release() {
	loop.Lock()
	defer loop.Unlock()
	loop.users--
	if loop.users > 0 {
		return
	}
	close(loop.quit)
	if loop.replaced {
		debug.SetGCPercent(loop.percent)
	}
	if debug.SetMemoryLimit(-1) == loop.set {
		debug.SetMemoryLimit(loop.ceiling)
	}
}

func run(quit chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			loop.Lock()
			select {
			case <-quit: // stopped while this tick waited for the lock
				loop.Unlock()
				return
			default:
			}
			follow()
			loop.Unlock()
		case <-quit:
			return
		}
	}
}

// follow sets the limit for now; loop is locked.
func follow() {
	if cur := debug.SetMemoryLimit(-1); cur != loop.set {
		loop.ceiling = cur
	}
	loop.set = limit(read(loop.ceiling))
	debug.SetMemoryLimit(loop.set)
}

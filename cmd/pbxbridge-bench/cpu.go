package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// cpuStats is what a measured process spent on a phase: CPU from /proc/<pid>/stat, allocations
// from the Go runtime's counter on its Prometheus endpoint. On a machine the load generator
// shares, CPU per event stays comparable where rates do not.
type cpuStats struct {
	Events  int     `json:"events"`      // 2xx answers of the phase
	Seconds float64 `json:"cpu_seconds"` // user + system
	// PerKEvents is CPU seconds per 1,000 events.
	PerKEvents float64 `json:"cpu_seconds_per_1000_events"`
	// AllocsPerEvent is heap objects allocated per event (go_memstats_mallocs_total), when the
	// process exposes it.
	AllocsPerEvent *float64 `json:"allocs_per_event,omitempty"`
}

// usage is a process's cumulative counters at one moment.
type usage struct {
	ticks      uint64  // utime + stime, in clock ticks
	mallocs    float64 // go_memstats_mallocs_total; valid when hasMallocs
	hasMallocs bool
}

// readUsage reads pid's CPU and, when metricsURL is not empty, its allocation counter.
func readUsage(ctx context.Context, pid int, metricsURL string) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	var u usage
	if u.ticks, err = parseStatCPU(stat); err != nil {
		return usage{}, err
	}
	if metricsURL != "" {
		u.mallocs, u.hasMallocs = scrapeCounter(ctx, metricsURL, "go_memstats_mallocs_total")
	}
	return u, nil
}

// since is what the process spent from before to u on events 2xx answers.
func (u usage) since(before usage, events int) *cpuStats {
	st := &cpuStats{Events: events, Seconds: float64(u.ticks-before.ticks) / float64(clockTicks())}
	if events > 0 {
		st.PerKEvents = st.Seconds / float64(events) * 1000
		if u.hasMallocs && before.hasMallocs {
			a := (u.mallocs - before.mallocs) / float64(events)
			st.AllocsPerEvent = &a
		}
	}
	return st
}

// parseStatCPU returns utime + stime (fields 14 and 15, in clock ticks) of a /proc/<pid>/stat
// line. Field 2, the command name in parentheses, may itself hold spaces and parentheses, so
// the fields are counted from the last ')'.
func parseStatCPU(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	// After the name: field 3 (state) onwards.
	f := strings.Fields(string(stat[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want more than %d", len(f), stime)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat utime: %w", err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat stime: %w", err)
	}
	return u + s, nil
}

// clockTicks is the kernel's USER_HZ (sysconf(_SC_CLK_TCK)), the unit of /proc/<pid>/stat's
// times. Without cgo it is read from the auxiliary vector the kernel gave this process
// (AT_CLKTCK); 100, Linux's value everywhere, when that cannot be read.
var clockTicks = sync.OnceValue(func() uint64 {
	const atClkTck = 17
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if hz, ok := auxvValue(auxv, atClkTck); ok && hz > 0 {
		return hz
	}
	return 100
})

// auxvValue finds key in an auxiliary vector of native-endian 64-bit pairs.
func auxvValue(auxv []byte, key uint64) (uint64, bool) {
	for len(auxv) >= 16 {
		k, v := binary.NativeEndian.Uint64(auxv), binary.NativeEndian.Uint64(auxv[8:])
		if k == key {
			return v, true
		}
		if k == 0 { // AT_NULL ends the vector
			break
		}
		auxv = auxv[16:]
	}
	return 0, false
}

// scrapeCounter reads an unlabelled counter (or untyped sample) of the Prometheus text format
// at url.
func scrapeCounter(ctx context.Context, url, name string) (float64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := get(ctx, url)
	if err != nil {
		return 0, false
	}
	defer body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(body)
	if err != nil || families[name] == nil || len(families[name].GetMetric()) == 0 {
		return 0, false
	}
	m := families[name].GetMetric()[0]
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Untyped != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

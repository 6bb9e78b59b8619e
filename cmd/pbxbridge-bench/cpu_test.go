package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// statLine is a /proc/<pid>/stat line of a process named comm with the given utime and stime
// (fields 14 and 15).
func statLine(comm string, utime, stime int) string {
	f := []string{"4242", "(" + comm + ")", "S"}
	for n := 4; n <= 52; n++ {
		switch n {
		case 14:
			f = append(f, fmt.Sprint(utime))
		case 15:
			f = append(f, fmt.Sprint(stime))
		default:
			f = append(f, fmt.Sprint(n*1000)) // distinct, so a field off by one shows
		}
	}
	return strings.Join(f, " ") + "\n"
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want uint64
		err  bool
	}{
		{name: "plain", stat: statLine("pbxbridge", 1234, 56), want: 1290},
		{name: "space in name", stat: statLine("my gateway", 7, 3), want: 10},
		{name: "parentheses in name", stat: statLine("a) (b) 1 2 3 (c", 100, 1), want: 101},
		{name: "name is ')'", stat: statLine(")", 5, 5), want: 10},
		{name: "zero", stat: statLine("idle", 0, 0), want: 0},
		{name: "real kernel line", want: 2207 + 358,
			stat: "1 (systemd) S 0 1 1 0 -1 4194560 94185 2306473 117 1046 2207 358 4797 1624 20 0 1 0 18 22548480 3021 18446744073709551615 1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"},
		{name: "no name", stat: "4242 S 1 2 3", err: true},
		{name: "truncated", stat: "4242 (x) S 1 2 3 4 5 6 7 8 9 10", err: true},
		{name: "utime not a number", stat: strings.Replace(statLine("x", 1, 2), " 1 2 ", " one 2 ", 1), err: true},
		{name: "empty", stat: "", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if tc.err {
				if err == nil {
					t.Fatalf("no error, got %d", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// The parser reads this process's own stat file, as the bench reads the gateway's.
func TestReadUsageOfThisProcess(t *testing.T) {
	u, err := readUsage(context.Background(), os.Getpid(), "")
	if err != nil {
		t.Fatal(err)
	}
	if u.hasMallocs {
		t.Error("mallocs without a metrics URL")
	}
	if hz := clockTicks(); hz < 1 || hz > 10000 {
		t.Errorf("CLK_TCK %d", hz)
	}
}

func TestAuxvValue(t *testing.T) {
	var auxv []byte
	for _, kv := range [][2]uint64{{6, 4096}, {17, 250}, {0, 0}, {17, 999}} {
		auxv = binary.NativeEndian.AppendUint64(auxv, kv[0])
		auxv = binary.NativeEndian.AppendUint64(auxv, kv[1])
	}
	if v, ok := auxvValue(auxv, 17); !ok || v != 250 {
		t.Errorf("AT_CLKTCK %d, %v; want 250", v, ok)
	}
	if _, ok := auxvValue(auxv, 33); ok {
		t.Error("found a key past AT_NULL")
	}
	if _, ok := auxvValue(auxv[:20], 17); ok {
		t.Error("found a key in a cut pair")
	}
}

func TestScrapeCounter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP go_memstats_mallocs_total Total number of heap objects allocated.\n"+
			"# TYPE go_memstats_mallocs_total counter\n"+
			"go_memstats_mallocs_total_other 1\n"+
			"go_memstats_mallocs_total 1.234567e+06\n"+
			"with_timestamp 42 1700000000000\n")
	}))
	defer srv.Close()
	ctx := context.Background()
	if v, ok := scrapeCounter(ctx, srv.URL, "go_memstats_mallocs_total"); !ok || v != 1234567 {
		t.Errorf("mallocs %v, %v", v, ok)
	}
	if v, ok := scrapeCounter(ctx, srv.URL, "with_timestamp"); !ok || v != 42 {
		t.Errorf("with a timestamp %v, %v", v, ok)
	}
	if _, ok := scrapeCounter(ctx, srv.URL, "absent_total"); ok {
		t.Error("found an absent counter")
	}
}

func TestUsageSince(t *testing.T) {
	before := usage{ticks: 100, mallocs: 1000, hasMallocs: true}
	after := usage{ticks: 100 + 3*clockTicks(), mallocs: 1000 + 60_000, hasMallocs: true}
	st := after.since(before, 2000)
	if st.Seconds != 3 || st.PerKEvents != 1.5 || st.AllocsPerEvent == nil || *st.AllocsPerEvent != 30 {
		t.Errorf("%+v", st)
	}
	if st := (usage{ticks: 200}).since(usage{ticks: 100}, 0); st.PerKEvents != 0 || st.AllocsPerEvent != nil {
		t.Errorf("no events: %+v", st)
	}
}

func TestParseHeapAlloc(t *testing.T) {
	text := "heap profile: 3: 4096 [9: 8192] @ heap/1048576\n1: 1024 [1: 1024] @ 0x1\n\n# runtime.MemStats\n# Alloc = 123\n# TotalAlloc = 999\n# HeapAlloc = 123456\n# HeapSys = 7\n"
	got, err := parseHeapAlloc(strings.NewReader(text))
	if err != nil || got != 123456 {
		t.Errorf("HeapAlloc %d, %v; want 123456", got, err)
	}
	if _, err := parseHeapAlloc(strings.NewReader("heap profile: nothing\n")); err == nil {
		t.Error("no HeapAlloc line gave no error")
	}
}

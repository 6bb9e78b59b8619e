package main

import (
	"strings"
	"testing"
	"time"
)

// The delivery check counts on it: every request is one event, with an id no other request of
// the run (or of another run) has.
func TestWorkloadRequestsAreUniqueSingleEvents(t *testing.T) {
	a := workload{run: "a", base: "http://127.0.0.1:1"}
	b := workload{run: "b", base: "http://127.0.0.1:1"}
	seen := map[string]int{}
	kinds := map[string]int{}
	for n := range 3 * bothCalls.length() {
		for _, wl := range []workload{a, b} {
			ids := wl.eventIDs(n)
			if len(ids) != 1 {
				t.Fatalf("request %d of run %s makes %d events", n, wl.run, len(ids))
			}
			if prev, dup := seen[ids[0]]; dup {
				t.Fatalf("request %d of run %s has the id of request %d", n, wl.run, prev)
			}
			seen[ids[0]] = n
		}
		r := a.request(n)
		switch {
		case strings.HasSuffix(r.url, "/hooks/xvb"):
			kinds["xvb"]++
			if strings.Contains(r.body, "event=ANSWERED") != (r.xvbAC != "") {
				t.Errorf("request %d: X-XVB-AC %q with %s", n, r.xvbAC, r.body)
			}
		case strings.Contains(r.url, "/hooks/mango/events/"):
			kinds["mango"]++
			if !strings.Contains(r.body, "sign=") {
				t.Errorf("request %d: unsigned Mango body %s", n, r.body)
			}
		default:
			t.Errorf("request %d: unexpected URL %s", n, r.url)
		}
	}
	if kinds["mango"] != 3*4 || kinds["xvb"] != 3*3 {
		t.Errorf("kinds %v, want 12 Mango and 9 XVB requests in 3 calls", kinds)
	}
}

func TestPercentile(t *testing.T) {
	ds := []int{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	var in []time.Duration
	for _, d := range ds {
		in = append(in, time.Duration(d))
	}
	if got := percentile(in, 0.5); got != 5 {
		t.Errorf("p50 %v, want 5", got)
	}
	if got := percentile(in, 0.99); got != 10 {
		t.Errorf("p99 %v, want 10", got)
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing %v", got)
	}
}

// The per-PBX phases (and the peers, on Mango) send one PBX's calls alone: whole calls in
// order, still one unique event a request.
func TestOnePBXWorkloads(t *testing.T) {
	for _, tc := range []struct {
		calls calls
		path  string   // in every request's URL
		steps []string // in the URL or body of each request of a call ("": anything)
	}{
		{mangoCalls, "/hooks/mango/events/", []string{"", "", "", "/events/summary"}},
		{xvbCalls, "/hooks/xvb", []string{"event=INCOMING", "event=ANSWERED", "event=COMPLETED"}},
	} {
		wl := workload{run: "one", base: "http://127.0.0.1:1", calls: tc.calls}
		if len(tc.steps) != tc.calls.length() {
			t.Fatalf("%s: %d steps, calls of %d", tc.calls, len(tc.steps), tc.calls.length())
		}
		seen := map[string]bool{}
		for n := range 3 * tc.calls.length() {
			r := wl.request(n)
			if !strings.Contains(r.url, tc.path) || !strings.Contains(r.url+" "+r.body, tc.steps[n%len(tc.steps)]) {
				t.Fatalf("%s: request %d: %s %s", tc.calls, n, r.url, r.body)
			}
			ids := wl.eventIDs(n)
			if len(ids) != 1 || seen[ids[0]] {
				t.Fatalf("%s: request %d: ids %v", tc.calls, n, ids)
			}
			seen[ids[0]] = true
		}
	}
}

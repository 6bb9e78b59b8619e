package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// postMango posts one Mango message and checks the answer.
func postMango(t *testing.T, g *gatewaytest.Gateway, m mango.Message, want int) {
	t.Helper()
	code, body := g.Post("/hooks/mango"+m.Suffix, formType, mango.FormBody(testKey, testSalt, m.JSON))
	if code != want {
		t.Fatalf("%s: got %d %s, want %d", m.Name, code, body, want)
	}
}

func listDeadLetters(t *testing.T, g *gatewaytest.Gateway, query string) []delivery.DeadLetter {
	t.Helper()
	var dls []delivery.DeadLetter
	g.AdminJSON(http.MethodGet, "/pbx/dead-letters"+query, http.StatusOK, &dls)
	return dls
}

// waitDeadLetters waits until the target has n dead letters: the dispatcher stores a dead
// letter after the CRM's answer, in another process.
func waitDeadLetters(t *testing.T, g *gatewaytest.Gateway, n int) []delivery.DeadLetter {
	t.Helper()
	var dls []delivery.DeadLetter
	gatewaytest.Eventually(t, 30*time.Second, fmt.Sprintf("%d dead letters", n), func() bool {
		dls = listDeadLetters(t, g, "?target=crm")
		return len(dls) == n
	})
	return dls
}

// waitMetric waits until the metric line `series value` is exposed. The dead-letter gauge is
// refreshed every 5 s.
func waitMetric(t *testing.T, g *gatewaytest.Gateway, series string, value float64) {
	t.Helper()
	gatewaytest.Eventually(t, 20*time.Second, fmt.Sprintf("%s %g", series, value), func() bool {
		v, ok := gatewaytest.Metric(g.MetricsText(), series)
		return ok && v == value
	})
}

// rejected is the CRM's refused request for an event.
func rejected(t *testing.T, crm *gatewaytest.CRM, callID, typ string) gatewaytest.Delivery {
	t.Helper()
	for _, d := range crm.Requests() {
		if d.Event.Data.CallID == callID && d.Event.Type == typ && d.Status >= 300 {
			return d
		}
	}
	t.Fatalf("the CRM refused no %s of call %s", typ, callID)
	return gatewaytest.Delivery{}
}

// A CRM answers 422 to one event: it is dead-lettered with the CRM's answer, listed, counted;
// replayed too early it comes back; replayed after the CRM is fixed it is delivered with the
// same webhook-id, behind the events of its call that were queued before the replay, and it
// leaves the list.
func TestDeadLettersAPI(t *testing.T) {
	const good, bad = "E-dl-good", "E-dl-bad"
	var fixed atomic.Bool
	crm := gatewaytest.NewCRM(t, func(ev event.Event, _ int) int {
		if ev.Data.CallID == bad && ev.Type == event.TypeAnswered && !fixed.Load() {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	g := startMango(t, crm, "127.0.0.1")

	postCall(t, g, good)
	postCall(t, g, bad)
	crm.WaitDelivered(t, 7, 30*time.Second)
	refused := rejected(t, crm, bad, event.TypeAnswered)
	eventID := refused.Event.ID

	dls := waitDeadLetters(t, g, 1)
	dl := dls[0]
	wantErr := fmt.Sprintf(`HTTP 422: {"error":"crm stand-in answers 422 for call %s"}`, bad)
	if dl.ID != "crm/"+eventID || dl.Target != "crm" || dl.Type != event.TypeAnswered || dl.CallID != bad ||
		dl.Attempts != 1 || dl.Status != 422 || dl.Reason != "http_4xx" || dl.LastError != wantErr {
		t.Errorf("dead letter = %+v\nwant id crm/%s, call.answered of %s, 1 attempt, 422, last_error %s", dl, eventID, bad, wantErr)
	}
	if age := time.Since(dl.DeadAt); age < 0 || age > time.Minute {
		t.Errorf("dead_at %s is not just now", dl.DeadAt)
	}
	var stored event.Event
	if err := json.Unmarshal(dl.Event, &stored); err != nil || stored.ID != eventID || stored.Data.CallID != bad {
		t.Errorf("dead letter event = %s (%v), want event %s", dl.Event, err, eventID)
	}
	if all := listDeadLetters(t, g, ""); len(all) != 1 || all[0].ID != dl.ID {
		t.Errorf("list of every target = %+v, want the one dead letter", all)
	}
	if other := listDeadLetters(t, g, "?target=other"); len(other) != 0 {
		t.Errorf("list of target other = %+v, want none", other)
	}
	var one delivery.DeadLetter
	g.AdminJSON(http.MethodGet, "/pbx/dead-letters/crm/"+eventID, http.StatusOK, &one)
	if one.ID != dl.ID || one.LastError != dl.LastError || !bytes.Equal(one.Event, dl.Event) {
		t.Errorf("GET one = %+v, want %+v", one, dl)
	}
	waitMetric(t, g, `pbxbridge_dead_letters{target="crm"}`, 1)
	waitMetric(t, g, `pbxbridge_dead_lettered_total{target="crm"}`, 1)

	// Unknown ids and bad requests.
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/pbx/dead-letters/crm/00000000000000000000000000000000", http.StatusNotFound},
		{http.MethodGet, "/pbx/dead-letters/nosuch/" + eventID, http.StatusNotFound},
		{http.MethodGet, "/pbx/dead-letters/crm/*", http.StatusNotFound},
		{http.MethodPost, "/pbx/dead-letters/crm/00000000000000000000000000000000/replay", http.StatusNotFound},
		{http.MethodDelete, "/pbx/dead-letters/crm/00000000000000000000000000000000", http.StatusNotFound},
		{http.MethodPost, "/pbx/dead-letters/replay", http.StatusBadRequest},
		{http.MethodDelete, "/pbx/dead-letters", http.StatusBadRequest},
		{http.MethodPost, "/pbx/targets/nosuch/pause", http.StatusNotFound},
		{http.MethodPut, "/pbx/dead-letters", http.StatusNotFound},
	} {
		code, body := g.Admin(c.method, c.path)
		if code != c.want || !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("%s %s = %d %s, want %d with an error", c.method, c.path, code, body, c.want)
		}
	}
	if len(listDeadLetters(t, g, "")) != 1 {
		t.Fatal("a failed request changed the dead letters")
	}

	// Replayed while the CRM still refuses: accepted, and dead-lettered again.
	g.AdminJSON(http.MethodPost, "/pbx/dead-letters/crm/"+eventID+"/replay", http.StatusOK, nil)
	gatewaytest.Eventually(t, 30*time.Second, "the early replay to be dead-lettered again", func() bool {
		dls := listDeadLetters(t, g, "?target=crm")
		return len(dls) == 1 && dls[0].DeadAt.After(dl.DeadAt)
	})
	waitMetric(t, g, `pbxbridge_dead_lettered_total{target="crm"}`, 2)

	// Fixed CRM; the target paused so that the call has an event queued before the replay.
	fixed.Store(true)
	g.AdminJSON(http.MethodPost, "/pbx/targets/crm/pause", http.StatusOK, nil)
	secondLeg := mango.SampleCall(bad, "E-dl-bad-second-leg", time.Now())[0]
	postMango(t, g, secondLeg, http.StatusOK)
	var replayed struct {
		ID       string
		Replayed bool
	}
	g.AdminJSON(http.MethodPost, "/pbx/dead-letters/crm/"+eventID+"/replay", http.StatusOK, &replayed)
	if replayed.ID != "crm/"+eventID || !replayed.Replayed {
		t.Errorf("replay answered %+v", replayed)
	}
	if left := listDeadLetters(t, g, ""); len(left) != 0 {
		t.Errorf("after replay the list holds %+v", left)
	}
	g.AdminJSON(http.MethodPost, "/pbx/targets/crm/resume", http.StatusOK, nil)
	got := crm.WaitDelivered(t, 9, 30*time.Second)

	var order []string
	for _, d := range got {
		if d.Event.Data.CallID == bad && d.Event.Data.LegID == "E-dl-bad-second-leg" {
			order = append(order, "second leg")
		}
		if d.Header.Get("webhook-id") == eventID {
			order = append(order, "replayed")
			if d.Event.ID != eventID || d.Event.Type != event.TypeAnswered {
				t.Errorf("the replayed delivery carries event %s %s, want %s", d.Event.ID, d.Event.Type, eventID)
			}
		}
	}
	if strings.Join(order, ",") != "second leg,replayed" {
		t.Errorf("deliveries of call %s after the replay: %v; want the replayed event behind the event queued before it", bad, order)
	}
	waitMetric(t, g, `pbxbridge_dead_letters{target="crm"}`, 0)
	if v, _ := gatewaytest.Metric(g.MetricsText(), `pbxbridge_dead_lettered_total{target="crm"}`); v != 2 {
		t.Errorf("dead_lettered_total = %g after a successful replay, want 2", v)
	}
}

// cli runs the pbxbridge binary and returns its output and exit status.
func cli(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(gatewaytest.Binary(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatalf("pbxbridge %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), status
}

// cliOK runs the binary against the gateway's admin endpoint and fails unless it exits 0.
func cliOK(t *testing.T, g *gatewaytest.Gateway, args ...string) string {
	t.Helper()
	out, errOut, status := cli(t, append(args, "--address", g.AdminAddr)...)
	if status != 0 {
		t.Fatalf("pbxbridge %s: exit %d\n%s%s", strings.Join(args, " "), status, out, errOut)
	}
	return out
}

func cliStatus(t *testing.T, g *gatewaytest.Gateway, want int, args ...string) {
	t.Helper()
	out, errOut, status := cli(t, append(args, "--address", g.AdminAddr)...)
	if status != want {
		t.Errorf("pbxbridge %s: exit %d, want %d\n%s%s", strings.Join(args, " "), status, want, out, errOut)
	}
}

// The operator's 3 a.m. through the CLI: list, show, delete, replay one and all of a target,
// purge; target status, pause and resume; exit statuses for scripts.
func TestDeadLettersCLI(t *testing.T) {
	const c1, c2, c3 = "E-cli-1", "E-cli-2", "E-cli-3"
	var fixed atomic.Bool
	crm := gatewaytest.NewCRM(t, func(ev event.Event, _ int) int {
		if !fixed.Load() {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	g := startMango(t, crm, "127.0.0.1")
	postCall(t, g, c1)
	postCall(t, g, c2)
	dls := waitDeadLetters(t, g, 8)
	position := map[string]int{} // a call's dead letters are listed in the order it was accepted
	for i, dl := range dls {
		position[strings.TrimPrefix(dl.ID, "crm/")] = i
	}

	out := cliOK(t, g, "dead-letters", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 9 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "LAST ERROR") {
		t.Fatalf("list printed %d lines:\n%s", len(lines), out)
	}
	for i, dl := range dls {
		for _, want := range []string{dl.ID + " ", dl.Type, dl.CallID, " 422 ", "HTTP 422: {\"error\":\"crm stand-in"} {
			if !strings.Contains(lines[i+1], want) {
				t.Errorf("list line %d %q lacks %q", i+1, lines[i+1], want)
			}
		}
	}
	var listed []delivery.DeadLetter
	if err := json.Unmarshal([]byte(cliOK(t, g, "dead-letters", "list", "--json")), &listed); err != nil || len(listed) != 8 || listed[0].ID != dls[0].ID {
		t.Errorf("list --json = %d dead letters (%v), want the API's 8", len(listed), err)
	}
	if out := cliOK(t, g, "dead-letters", "list", "--target", "nosuch"); strings.TrimSpace(out) != "no dead letters" {
		t.Errorf("list of a target without dead letters printed %q", out)
	}
	// The admin address from the Caddyfile, as `pbxbridge reload --config` finds it.
	if out, errOut, status := cli(t, "dead-letters", "list", "--json", "--config", g.ConfigPath()); status != 0 || !strings.Contains(out, dls[0].ID) {
		t.Errorf("list --config: exit %d\n%s%s", status, out, errOut)
	}

	out = cliOK(t, g, "dead-letters", "show", dls[0].ID)
	for _, want := range []string{"id:", dls[0].ID, "attempts:", "status:", "422", "last_error:", dls[0].LastError, "event:", `"id": "` + strings.TrimPrefix(dls[0].ID, "crm/") + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	var shown delivery.DeadLetter
	if err := json.Unmarshal([]byte(cliOK(t, g, "dead-letters", "show", dls[0].ID, "--json")), &shown); err != nil || shown.ID != dls[0].ID {
		t.Errorf("show --json = %+v, %v", shown, err)
	}

	// Delete one: gone, and deleting it again is "not found".
	deleted := dls[7]
	if out := cliOK(t, g, "dead-letters", "delete", deleted.ID); !strings.Contains(out, "deleted "+deleted.ID) {
		t.Errorf("delete printed %q", out)
	}
	cliStatus(t, g, 3, "dead-letters", "delete", deleted.ID)
	cliStatus(t, g, 3, "dead-letters", "show", deleted.ID)
	cliStatus(t, g, 3, "dead-letters", "replay", deleted.ID)

	// The CRM is fixed: replay one, then all the rest of the target.
	fixed.Store(true)
	if out := cliOK(t, g, "dead-letters", "replay", dls[0].ID); !strings.Contains(out, "replayed "+dls[0].ID) {
		t.Errorf("replay printed %q", out)
	}
	first := crm.WaitDelivered(t, 1, 30*time.Second)
	if id := first[0].Header.Get("webhook-id"); "crm/"+id != dls[0].ID {
		t.Errorf("the replayed event arrived with webhook-id %s, want the dead letter's %s", id, dls[0].ID)
	}
	if out := cliOK(t, g, "dead-letters", "replay", "--target", "crm"); strings.TrimSpace(out) != "replayed 6 dead letters of crm" {
		t.Errorf("replay --target printed %q", out)
	}
	got := crm.WaitDelivered(t, 7, 30*time.Second)
	for _, dl := range dls[:7] {
		if !gatewaytest.UniqueIDs(got)[strings.TrimPrefix(dl.ID, "crm/")] {
			t.Errorf("dead letter %s was not delivered after replay", dl.ID)
		}
	}
	if gatewaytest.UniqueIDs(got)[strings.TrimPrefix(deleted.ID, "crm/")] {
		t.Errorf("the deleted dead letter %s was delivered", deleted.ID)
	}
	gatewaytest.CheckCallOrder(t, got, position)
	if out := cliOK(t, g, "dead-letters", "list"); strings.TrimSpace(out) != "no dead letters" {
		t.Errorf("after replay, list printed %q", out)
	}

	// Purge: the CRM refuses again.
	fixed.Store(false)
	postCall(t, g, c3)
	waitDeadLetters(t, g, 4)
	waitMetric(t, g, `pbxbridge_dead_letters{target="crm"}`, 4)
	if out := cliOK(t, g, "dead-letters", "purge", "--target", "crm"); strings.TrimSpace(out) != "purged 4 dead letters of crm" {
		t.Errorf("purge printed %q", out)
	}
	if n := len(listDeadLetters(t, g, "")); n != 0 {
		t.Errorf("after purge %d dead letters are left", n)
	}
	waitMetric(t, g, `pbxbridge_dead_letters{target="crm"}`, 0)
	waitMetric(t, g, `pbxbridge_dead_lettered_total{target="crm"}`, 12)

	// Targets.
	out = cliOK(t, g, "targets", "status")
	if !strings.HasPrefix(out, "queue ready, store ") || !strings.Contains(out, "TARGET") || !regexpMatch(`(?m)^crm\s+\d+\s+\S+\s+\d+\s+\d+\s+closed\s+no\s+0$`, out) {
		t.Errorf("targets status printed:\n%s", out)
	}
	cliOK(t, g, "targets", "pause", "crm")
	var st delivery.Status
	if err := json.Unmarshal([]byte(cliOK(t, g, "targets", "status", "--json")), &st); err != nil || !st.Ready || len(st.Targets) != 1 || st.Targets[0].Name != "crm" || !st.Targets[0].Paused {
		t.Errorf("targets status --json after pause = %+v, %v", st, err)
	}
	if out := cliOK(t, g, "targets", "status"); !regexpMatch(`(?m)^crm\s.*PAUSED`, out) {
		t.Errorf("status does not show the pause:\n%s", out)
	}
	cliOK(t, g, "targets", "resume", "crm")
	g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &st)
	if st.Targets[0].Paused {
		t.Error("resume left the target paused")
	}
	cliStatus(t, g, 3, "targets", "pause", "nosuch")

	// Usage errors exit 2, an unreachable gateway 1.
	for _, args := range [][]string{
		{"dead-letters"},
		{"dead-letters", "frobnicate"},
		{"dead-letters", "show"},
		{"dead-letters", "show", "no-slash"},
		{"dead-letters", "replay"},
		{"dead-letters", "replay", dls[0].ID, "--target", "crm"},
		{"dead-letters", "purge"},
		{"dead-letters", "list", "--bogus"},
		{"targets", "pause"},
	} {
		cliStatus(t, g, 2, args...)
	}
	if _, _, status := cli(t, "targets", "status", "--address", fmt.Sprintf("127.0.0.1:%d", gatewaytest.FreePort(t))); status != 1 {
		t.Errorf("status against no gateway: exit %d, want 1", status)
	}
}

func regexpMatch(pattern, s string) bool {
	return regexp.MustCompile(pattern).MatchString(s)
}

// A target removed from the config keeps its dead letters: they can be listed and purged,
// but a replay, which nothing would deliver, is refused rather than losing the event.
func TestDeadLettersOfRemovedTarget(t *testing.T) {
	crm := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusUnprocessableEntity })
	g := startMango(t, crm, "127.0.0.1")
	postMango(t, g, mango.SampleCall("E-removed", "L", time.Now())[0], http.StatusOK)
	dl := waitDeadLetters(t, g, 1)[0]

	renamed := strings.ReplaceAll(mangoGateway(crm.URL+"/events", "127.0.0.1").String(), " crm", " crm2")
	if err := g.Reload(renamed); err != nil {
		t.Fatal(err)
	}
	code, body := g.Admin(http.MethodPost, "/pbx/dead-letters/"+dl.ID+"/replay")
	if code != http.StatusConflict || !bytes.Contains(body, []byte("crm")) {
		t.Errorf("replay of a removed target's dead letter = %d %s, want 409 naming the target", code, body)
	}
	code, body = g.Admin(http.MethodPost, "/pbx/dead-letters/replay?target=crm")
	if code != http.StatusConflict {
		t.Errorf("replay all of a removed target = %d %s, want 409", code, body)
	}
	if dls := listDeadLetters(t, g, "?target=crm"); len(dls) != 1 || dls[0].ID != dl.ID {
		t.Fatalf("after the refused replay the list holds %+v, want %s", dls, dl.ID)
	}
	var purged struct{ Purged int }
	g.AdminJSON(http.MethodDelete, "/pbx/dead-letters?target=crm", http.StatusOK, &purged)
	if purged.Purged != 1 {
		t.Errorf("purge of a removed target answered %+v, want 1 purged", purged)
	}
}

package e2e

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

var screenshots = flag.Bool("screenshots", false, "rewrite the console's pictures in docs/ from the browser test")

const consoleToken = "console-e2e-token-0123456789"

// browser starts headless Chromium (Debian's chromium package) for the test, or skips it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed: `apt-get install -y chromium` runs the console's browser test (docs/console.md#the-browser-test)")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

// do runs browser steps and fails the test at the first that fails.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// waitFor polls a JavaScript predicate in the page.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("browser: waiting for %s (%s): %v", what, predicate, err)
	}
}

// screenshot writes the page as docs/<name>.png when the test runs with -screenshots.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !*screenshots {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The console in a real browser against the built binary: it refuses requests without auth
// and cross-origin ones; after logging in it shows a CRM's 422 as a dead letter with the
// CRM's answer, the replay button delivers it with the same webhook-id, a target paused
// from the page shows paused and resumes from it, and "find a call" lists the call's four
// events with their attempts, and by phone both calls. A stop does not wait for the page to go.
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	const bad, later = "E-console-bad", "E-console-later"
	var fixed atomic.Bool
	crm := gatewaytest.NewCRM(t, func(ev event.Event, _ int) int {
		if ev.Data.CallID == bad && ev.Type == event.TypeAnswered && !fixed.Load() {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	config := mangoGateway(crm.URL+"/events", "127.0.0.1")
	config.Site = append(config.Site, gatewaytest.Block("route /console/*", gatewaytest.Block("pbx_console", "token {env.CONSOLE_TOKEN}")))
	g := gatewaytest.Start(t, config.String(), "TEST_MANGO_SALT="+testSalt, "CONSOLE_TOKEN="+consoleToken)
	g.WaitReady()

	bearer := "Bearer " + consoleToken
	pause := g.URL + "/console/-/api/pbx/targets/crm/pause"
	for _, c := range []struct {
		name, method, url string
		header            []string
		want              int
	}{
		{"the page without auth", http.MethodGet, g.URL + "/console/", nil, http.StatusUnauthorized},
		{"the API without auth", http.MethodGet, g.URL + "/console/-/api/pbx/status", nil, http.StatusUnauthorized},
		{"a pause without auth", http.MethodPost, pause, nil, http.StatusUnauthorized},
		{"a cross-site pause", http.MethodPost, pause, []string{"Authorization", bearer, "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"a pause from another origin", http.MethodPost, pause, []string{"Authorization", bearer, "Origin", "http://crm.example"}, http.StatusForbidden},
		{"the API with the token", http.MethodGet, g.URL + "/console/-/api/pbx/status", []string{"Authorization", bearer}, http.StatusOK},
	} {
		resp, body := gatewaytest.Request(t, c.method, c.url, "", "", c.header...)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
		}
		if strings.Contains(string(body), consoleToken) {
			t.Errorf("%s: the answer holds the token", c.name)
		}
	}
	if targetStatus(t, g).Paused {
		t.Fatal("a refused request paused the target")
	}

	postCall(t, g, bad)
	crm.WaitDelivered(t, 3, 30*time.Second)
	refused := rejected(t, crm, bad, event.TypeAnswered)
	row := `#dead-letters tr[data-id="crm/` + refused.Event.ID + `"]`

	do(t, ctx, "log in",
		chromedp.Navigate(g.URL+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), consoleToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#target-crm")),
	)
	waitFor(t, ctx, "the dead letter with the CRM's answer",
		`document.querySelector('`+row+` td.err')?.textContent === 'HTTP 422: {"error":"crm stand-in answers 422 for call `+bad+`"}'`)
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page, consoleToken) {
		t.Error("the page holds the token")
	}
	do(t, ctx, "show the event", chromedp.Click(chromedp.CSS(row+" button.show")), chromedp.WaitVisible(chromedp.CSS("#event-json")))
	waitFor(t, ctx, "the event", `document.getElementById('event-json').textContent.includes('"id": "`+refused.Event.ID+`"')`)
	screenshot(t, ctx, "console")

	fixed.Store(true)
	do(t, ctx, "replay", chromedp.Click(chromedp.CSS(row+" button.replay")))
	gatewaytest.Eventually(t, 30*time.Second, "the replayed event at the CRM", func() bool {
		for _, d := range crm.Delivered() {
			if d.Event.ID == refused.Event.ID {
				return d.Header.Get("webhook-id") == refused.Event.ID
			}
		}
		return false
	})
	waitFor(t, ctx, "the dead letter to leave the list", `!document.querySelector('`+row+`')`)

	do(t, ctx, "pause", chromedp.Click(chromedp.CSS("#pause-crm")))
	waitFor(t, ctx, "crm paused", `document.querySelector('#target-crm td.paused')?.textContent === 'PAUSED'`)
	if !targetStatus(t, g).Paused {
		t.Fatal("the page shows crm paused, the admin API does not")
	}
	delivered := len(gatewaytest.UniqueIDs(crm.Delivered()))
	postCall(t, g, later)
	waitFor(t, ctx, "4 events queued for the paused target", `document.querySelector('#target-crm td.num')?.textContent === '4'`)
	if n := len(gatewaytest.UniqueIDs(crm.Delivered())); n != delivered {
		t.Fatalf("a paused target delivered %d events", n-delivered)
	}
	do(t, ctx, "resume", chromedp.Click(chromedp.CSS("#resume-crm")))
	crm.WaitDelivered(t, delivered+4, 30*time.Second)
	waitFor(t, ctx, "crm resumed", `document.querySelector('#target-crm td.paused')?.textContent === 'no'`)

	do(t, ctx, "find the call",
		chromedp.Click(chromedp.CSS("#event-close")),
		chromedp.SetValue(chromedp.CSS("#find-q"), bad),
		chromedp.Click(chromedp.CSS(`#find button[type="submit"]`)),
	)
	call := `#calls .call[data-call="` + bad + `"]`
	waitFor(t, ctx, "the call's four events, the answered one with its 422 and its replay",
		`new Set([...document.querySelectorAll('`+call+` tr.attempt')].map((r) => r.dataset.event)).size === 4 &&
		 [...document.querySelectorAll('`+call+` tr.attempt[data-event="`+refused.Event.ID+`"]')].map((r) => r.cells[5].textContent).join(' ') === 'dead_letter success'`)
	screenshot(t, ctx, "console-call")
	// By phone, written as an operator would: both calls from that number.
	do(t, ctx, "find by phone",
		chromedp.SetValue(chromedp.CSS("#find-by"), "phone"),
		chromedp.SetValue(chromedp.CSS("#find-q"), "8 912 345-67-89"),
		chromedp.Click(chromedp.CSS(`#find button[type="submit"]`)),
	)
	waitFor(t, ctx, "both calls from +79123456789",
		`document.querySelectorAll('#calls .call').length === 2 && !!document.querySelector('#calls .call[data-call="`+later+`"]')`)

	// A graceful stop, and a reload, wait for the old server's requests to end: the live view
	// must end then, not hold them up.
	stopping := time.Now()
	g.Stop()
	if took := time.Since(stopping); took > 10*time.Second {
		t.Errorf("a stop with the console open took %s", took)
	}

	if logs := g.Logs(); !strings.Contains(logs, `"action":"replay","object":"crm/`+refused.Event.ID+`","via":"console"`) ||
		!strings.Contains(logs, `"action":"pause","object":"crm","via":"console"`) {
		t.Error("the console's actions are not in the audit log")
	}
}

func targetStatus(t *testing.T, g *gatewaytest.Gateway) delivery.TargetStatus {
	t.Helper()
	var st delivery.Status
	g.AdminJSON(http.MethodGet, "/pbx/status", http.StatusOK, &st)
	for _, ts := range st.Targets {
		if ts.Name == "crm" {
			return ts
		}
	}
	t.Fatalf("no target crm in %+v", st)
	return delivery.TargetStatus{}
}

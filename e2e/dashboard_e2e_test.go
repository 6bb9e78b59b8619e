package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
)

// TestDashboardAndAlertsNameExportedMetrics scrapes a running gateway that has seen some
// traffic and checks that every metric the Grafana dashboard and the alert rules query is
// exported.
func TestDashboardAndAlertsNameExportedMetrics(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	lookup := gatewaytest.NewCRM(t, func(event.Event, int) int { return http.StatusNotFound })
	config := gatewaytest.Caddyfile{
		PBX: []string{
			"target crm " + crm.URL,
			mangoOffice("127.0.0.1"),
			gatewaytest.Block("xvb main", "access_code 10019", "sources 127.0.0.1", "lookup "+lookup.URL, "forward crm"),
		},
		Site: []string{
			gatewaytest.Block("route /hooks/mango/*", "pbx_webhook office"),
			gatewaytest.Block("route /hooks/xvb", "pbx_webhook main"),
			gatewaytest.Block("route /calls", gatewaytest.Block("pbx_originate", "token {env.TEST_COMMAND_TOKEN}")),
		},
	}
	g := gatewaytest.Start(t, config.String(), "TEST_MANGO_SALT="+testSalt, "TEST_COMMAND_TOKEN=dashboard-test-token")
	g.WaitReady()
	postCall(t, g, "E-dashboard")
	if code, body := g.Post("/hooks/xvb", formType, "access_code=10019&cmd=contact&phone=79201119613"); code != http.StatusOK {
		t.Fatalf("contact: %d %s", code, body)
	}
	if code, _ := g.Post("/calls", "application/json", `{"account":"office","from":"101","to":"+79001234567"}`); code != http.StatusUnauthorized {
		t.Fatalf("command without a token: %d", code)
	}
	crm.WaitDelivered(t, 4, 30*time.Second)

	exported := map[string]bool{}
	for _, line := range strings.Split(g.MetricsText(), "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
			exported[name] = true
		} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			exported[name] = true
		}
	}
	metricName := regexp.MustCompile(`pbxbridge_[a-z_]+`)
	for _, file := range []string{"../deploy/grafana/pbxbridge.json", "../deploy/prometheus/alerts.yml"} {
		queries := queriesIn(t, file)
		if len(queries) == 0 {
			t.Fatalf("%s: no queries found", file)
		}
		for _, q := range queries {
			for _, name := range metricName.FindAllString(q, -1) {
				if !exported[name] {
					t.Errorf("%s queries %s, which the gateway does not export (query: %s)", file, name, q)
				}
			}
		}
		t.Logf("%s: %d queries, every metric exported", file, len(queries))
	}
}

// queriesIn returns the PromQL of a dashboard (every "expr" and "query") or of a rule file
// (every "expr:" line).
func queriesIn(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if strings.HasSuffix(file, ".json") {
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && (k == "expr" || k == "query") {
						out = append(out, s)
					} else {
						walk(x)
					}
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		walk(doc)
		return out
	}
	// Rule expressions may span lines (expr: |); taking the whole file after each "expr:" up
	// to the next key is enough to find metric names.
	for _, part := range strings.Split(string(b), "expr:")[1:] {
		end := len(part)
		for _, key := range []string{"\n      for:", "\n      labels:", "\n    - alert:"} {
			if i := strings.Index(part, key); i >= 0 && i < end {
				end = i
			}
		}
		out = append(out, part[:end])
	}
	return out
}

package mango

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

const (
	fixtureDir = "testdata/fixtures"
	goldenDir  = "testdata/golden"

	testKey  = "testkey0123456789abcdefghijklmnop"
	testSalt = "testsalt0123456789abcdefghijklmno"
	phpKey   = "<YOUR_API_KEY>"
	phpSalt  = "<YOUR_API_SALT>"
)

var (
	testSrc      = event.Origin{PBX: "mango", Account: "office"}
	testReceived = time.Date(2026, 11, 25, 10, 15, 5, 0, time.UTC)
)

// fixtureRoutes gives each fixture, by name prefix, the suffix it is posted to. cmd_* and
// stats_* are request bodies Mango receives, never sends: they are posted to the command's
// own path, which no webhook uses, and must come out as pbx.unmapped.
var fixtureRoutes = []struct {
	prefix, suffix string
	unmapped       bool
}{
	{"call_", "events/call", false},
	{"summary_", "events/summary", false},
	{"recording_started_", "events/recording", true}, // Started is not mapped
	{"record_added", "events/record/added", false},
	{"record_tagged", "events/record/tagged", true},
	{"dtmf_", "events/dtmf", false},
	{"result_callback", "result/callback", false},
	{"synthetic_signed_call_", "events/call", false},
	{"synthetic_signed_summary_", "events/summary", false},
	{"cmd_callback_", "commands/callback", true},
	{"cmd_hangup_", "commands/call/hangup", true},
	{"stats_request_", "stats/request", true},
	{"stats_result_", "stats/result", true},
}

// fixturePayload returns the json payload of a fixture; a .form goes through ParseForm and
// Verify first, with testKey and testSalt (phpKey and phpSalt for the official PHP examples).
func fixturePayload(t *testing.T, name string, body []byte) []byte {
	t.Helper()
	if !strings.HasSuffix(name, ".form") {
		return body
	}
	f, err := ParseForm(body)
	if err != nil {
		t.Fatal(err)
	}
	key, salt := testKey, testSalt
	if strings.Contains(name, "official_php_example") {
		key, salt = phpKey, phpSalt
	}
	if !Verify(f, key, salt) {
		t.Fatalf("Verify(%s) = false", name)
	}
	return []byte(f.JSON)
}

func TestGolden(t *testing.T) {
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(fixtureDir, name))
			if err != nil {
				t.Fatal(err)
			}
			route := -1
			for i, r := range fixtureRoutes {
				if strings.HasPrefix(name, r.prefix) {
					route = i
					break
				}
			}
			if route < 0 {
				t.Fatalf("no route for fixture %s: add it to fixtureRoutes", name)
			}
			r := fixtureRoutes[route]
			evs := Translate(testSrc, r.suffix, fixturePayload(t, name, body), testReceived)
			if len(evs) != 1 {
				t.Fatalf("got %d events, want 1", len(evs))
			}
			if got := evs[0].Type == event.TypeUnmapped; got != r.unmapped {
				t.Errorf("type %s (error %q), want unmapped=%v", evs[0].Type, evs[0].Data.Error, r.unmapped)
			}
			checkEvents(t, evs)
			pbxtest.Golden(t, goldenDir, name, evs)
		})
	}
	pbxtest.GoldensHaveFixtures(t, goldenDir, func(name string) string { return filepath.Join(fixtureDir, name) })
}

// checkEvents is pbxtest.CheckEvents with the fixtures' secrets.
func checkEvents(t *testing.T, evs []event.Event) {
	t.Helper()
	pbxtest.CheckEvents(t, evs, testKey, testSalt, phpKey, phpSalt, `"sign"`, "vpbx_api_key")
}

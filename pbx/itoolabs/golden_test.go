package itoolabs

import (
	"bytes"
	"encoding/json"
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
	formType   = "application/x-www-form-urlencoded"
)

var (
	testSource   = event.Origin{PBX: "itoolabs", Account: "main"}
	testReceived = time.Date(2026, 11, 25, 10, 15, 21, 0, time.UTC)
)

func mustParse(t testing.TB, contentType string, body []byte) Fields {
	t.Helper()
	f, err := Parse(contentType, body)
	if err != nil {
		t.Fatalf("Parse(%q): %v", body, err)
	}
	return f
}

func fixture(t testing.TB, name string) Fields {
	t.Helper()
	return mustParse(t, formType, pbxtest.ReadFile(t, filepath.Join(fixtureDir, name+".form")))
}

// formFixtures returns the names (without .form) of the fixtures the PBX posts to the gateway;
// the makeCall request goes the other way (makecall_test.go).
func formFixtures(t testing.TB) []string {
	var names []string
	for _, name := range pbxtest.Fixtures(t, fixtureDir, ".form") {
		if !strings.Contains(name, "-makecall-") {
			names = append(names, name)
		}
	}
	return names
}

func assertSameEvents(t *testing.T, got, want []event.Event) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("events differ\ngot:  %s\nwant: %s", g, w)
	}
}

func TestGolden(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			events := Translate(testSource, fixture(t, name), testReceived)
			pbxtest.CheckEvents(t, events)
			pbxtest.Golden(t, goldenDir, name, events)
		})
	}
}

// A golden without its fixture would silently test nothing.
func TestGoldenHasFixture(t *testing.T) {
	pbxtest.GoldensHaveFixtures(t, goldenDir, func(name string) string { return filepath.Join(fixtureDir, name+".form") })
}

// Every fixture posted as JSON, or as a GET query, is the same message: the same events, ids
// included.
func TestOtherWireFormsGiveSameEvents(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			body := pbxtest.ReadFile(t, filepath.Join(fixtureDir, name+".form"))
			want := Translate(testSource, mustParse(t, formType, body), testReceived)
			asJSON, err := json.Marshal(mustParse(t, formType, body))
			if err != nil {
				t.Fatal(err)
			}
			assertSameEvents(t, Translate(testSource, mustParse(t, "application/json; charset=utf-8", asJSON), testReceived), want)
			fromQuery, err := ParseQuery(string(bytes.TrimSpace(body)))
			if err != nil {
				t.Fatal(err)
			}
			assertSameEvents(t, Translate(testSource, fromQuery, testReceived), want)
		})
	}
}

// Fixture 21 exists in both forms as the PBX would send them, Cyrillic included.
func TestCyrillicFixtureFormAndJSON(t *testing.T) {
	const name = "21-megapbx-event-incoming-cyrillic"
	form := fixture(t, name)
	fromJSON := mustParse(t, "application/json", pbxtest.ReadFile(t, filepath.Join(fixtureDir, name+".json")))
	if form["groupRealName"] != "CallCenter затем Евгений" {
		t.Errorf("groupRealName = %q", form["groupRealName"])
	}
	assertSameEvents(t, Translate(testSource, fromJSON, testReceived), Translate(testSource, form, testReceived))
	if raw := Translate(testSource, form, testReceived)[0].Data.Raw; !strings.Contains(string(raw), "затем Евгений") {
		t.Errorf("raw lost the Cyrillic as UTF-8: %s", raw)
	}
}

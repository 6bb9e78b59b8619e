package itoolabs

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/itoolabs from the translator's output")

const (
	fixtureDir = "../../testdata/itoolabs"
	goldenDir  = "../../testdata/golden/itoolabs"
	formType   = "application/x-www-form-urlencoded"
)

var (
	testSource   = event.Origin{PBX: "itoolabs", Account: "main"}
	testReceived = time.Date(2026, 11, 25, 10, 15, 21, 0, time.UTC)
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
	return mustParse(t, formType, readFile(t, filepath.Join(fixtureDir, name+".form")))
}

// formFixtures returns the names (without .form) of the fixtures the PBX posts to the gateway;
// the makeCall request goes the other way (makecall_test.go).
func formFixtures(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.form"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no form fixtures in %s (%v)", fixtureDir, err)
	}
	var names []string
	for _, p := range paths {
		if name := strings.TrimSuffix(filepath.Base(p), ".form"); !strings.Contains(name, "-makecall-") {
			names = append(names, name)
		}
	}
	return names
}

// checkEvents fails unless every event is a valid canonical event.
func checkEvents(t testing.TB, events []event.Event) {
	t.Helper()
	if len(events) == 0 {
		t.Fatal("no events")
	}
	for _, ev := range events {
		doc, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal %s: %v", ev.Type, err)
		}
		if err := event.ValidateEvent(doc); err != nil {
			t.Fatalf("%s does not validate: %v\n%s", ev.Type, err, doc)
		}
	}
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
			checkEvents(t, events)
			got, err := json.MarshalIndent(events, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(goldenDir, name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("fixture %s has no golden (write it with -update): %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the translation (-update rewrites it)\ngot:\n%s", golden, got)
			}
		})
	}
}

// A golden without its fixture would silently test nothing.
func TestGoldenHasFixture(t *testing.T) {
	goldens, _ := filepath.Glob(filepath.Join(goldenDir, "*.golden.json"))
	if len(goldens) == 0 {
		t.Fatal("no goldens")
	}
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		if _, err := os.Stat(filepath.Join(fixtureDir, name+".form")); err != nil {
			t.Errorf("%s has no fixture %s.form", g, name)
		}
	}
}

// Every fixture posted as JSON, or as a GET query, is the same message: the same events, ids
// included.
func TestOtherWireFormsGiveSameEvents(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			body := readFile(t, filepath.Join(fixtureDir, name+".form"))
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
	fromJSON := mustParse(t, "application/json", readFile(t, filepath.Join(fixtureDir, name+".json")))
	if form["groupRealName"] != "CallCenter затем Евгений" {
		t.Errorf("groupRealName = %q", form["groupRealName"])
	}
	assertSameEvents(t, Translate(testSource, fromJSON, testReceived), Translate(testSource, form, testReceived))
	if raw := Translate(testSource, form, testReceived)[0].Data.Raw; !strings.Contains(string(raw), "затем Евгений") {
		t.Errorf("raw lost the Cyrillic as UTF-8: %s", raw)
	}
}

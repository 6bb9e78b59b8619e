package xvb

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/xvb from the translator's output")

const (
	fixtureDir = "../../testdata/xvb"
	goldenDir  = "../../testdata/golden/xvb"
	formType   = "application/x-www-form-urlencoded"
)

var (
	testSource   = event.Origin{PBX: "xvb", Account: "main"}
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
	f, _, err := Parse(contentType, body)
	if err != nil {
		t.Fatalf("Parse(%q): %v", body, err)
	}
	return f
}

// formFixtures returns the fixture names (without .form) that are XVB request bodies.
func formFixtures(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.form"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no form fixtures in %s (%v)", fixtureDir, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ".form")
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

func TestGolden(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			f := mustParse(t, formType, readFile(t, filepath.Join(fixtureDir, name+".form")))
			events := Translate(testSource, f, Correlation{}, testReceived)
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
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		if _, err := os.Stat(filepath.Join(fixtureDir, name+".form")); err != nil {
			t.Errorf("%s has no fixture %s.form", g, name)
		}
	}
}

// The JSON data format (CCRM_DF=json) carries the same message, so it must give the same events,
// ids included.
func TestJSONVariantGivesSameEvents(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			form := mustParse(t, formType, readFile(t, filepath.Join(fixtureDir, name+".form")))
			asJSON, err := json.Marshal(form)
			if err != nil {
				t.Fatal(err)
			}
			fromJSON := mustParse(t, "application/json; charset=utf-8", asJSON)
			want := Translate(testSource, form, Correlation{}, testReceived)
			got := Translate(testSource, fromJSON, Correlation{}, testReceived)
			assertSameEvents(t, got, want)
		})
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

// The .http fixture is the same request as the .form one, with its headers: its Content-Type and
// body must parse to the same fields.
func TestHTTPFixtureMatchesForm(t *testing.T) {
	head, body, ok := bytes.Cut(readFile(t, filepath.Join(fixtureDir, "01-xvb-event-incoming.http")), []byte("\r\n\r\n"))
	if !ok {
		t.Fatal("no header/body separator")
	}
	var contentType string
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Content-Type") {
			contentType = strings.TrimSpace(value)
		}
	}
	got := mustParse(t, contentType, body)
	want := mustParse(t, formType, readFile(t, filepath.Join(fixtureDir, "01-xvb-event-incoming.form")))
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

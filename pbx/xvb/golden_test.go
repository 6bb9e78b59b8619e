package xvb

import (
	"bytes"
	"encoding/json"
	"maps"
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
	testSource   = event.Origin{PBX: "xvb", Account: "main"}
	testReceived = time.Date(2026, 11, 25, 10, 15, 21, 0, time.UTC)
)

func mustParse(t testing.TB, contentType string, body []byte) Fields {
	t.Helper()
	f, _, err := Parse(contentType, body)
	if err != nil {
		t.Fatalf("Parse(%q): %v", body, err)
	}
	return f
}

// formFixtures returns the fixture names (without .form) that are XVB request bodies.
func formFixtures(t testing.TB) []string { return pbxtest.Fixtures(t, fixtureDir, ".form") }

func TestGolden(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			f := mustParse(t, formType, pbxtest.ReadFile(t, filepath.Join(fixtureDir, name+".form")))
			events := Translate(testSource, f, Correlation{}, testReceived)
			pbxtest.CheckEvents(t, events)
			pbxtest.Golden(t, goldenDir, name, events)
		})
	}
}

// A golden without its fixture would silently test nothing.
func TestGoldenHasFixture(t *testing.T) {
	pbxtest.GoldensHaveFixtures(t, goldenDir, func(name string) string { return filepath.Join(fixtureDir, name+".form") })
}

// The JSON data format (CCRM_DF=json) carries the same message, so it must give the same events,
// ids included.
func TestJSONVariantGivesSameEvents(t *testing.T) {
	for _, name := range formFixtures(t) {
		t.Run(name, func(t *testing.T) {
			form := mustParse(t, formType, pbxtest.ReadFile(t, filepath.Join(fixtureDir, name+".form")))
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
	head, body, ok := bytes.Cut(pbxtest.ReadFile(t, filepath.Join(fixtureDir, "01-xvb-event-incoming.http")), []byte("\r\n\r\n"))
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
	want := mustParse(t, formType, pbxtest.ReadFile(t, filepath.Join(fixtureDir, "01-xvb-event-incoming.form")))
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

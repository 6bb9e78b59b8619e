// Package pbxtest is what the PBX packages' tests share: fixtures, the checks every canonical
// event must pass, and golden files (docs/development.md, Tests).
package pbxtest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/eventtest"
)

// update is the -update flag of a PBX package's tests: rewrite its golden files.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden from the translator's output")

// ReadFile is a fixture's bytes.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Fixtures are the names of the files in dir ending in ext, without ext.
func Fixtures(t testing.TB, dir, ext string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no %s fixtures in %s (%v)", ext, dir, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ext)
	}
	return names
}

// CheckEvents fails unless there are events, each valid against the schema, with the ordering
// key as its subject, and none shows any of secrets.
func CheckEvents(t testing.TB, events []event.Event, secrets ...string) {
	t.Helper()
	if len(events) == 0 {
		t.Fatal("no events")
	}
	for _, ev := range events {
		doc, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal %s: %v", ev.Type, err)
		}
		if err := eventtest.Validate(doc); err != nil {
			t.Fatalf("%s is not schema-valid: %v\n%s", ev.Type, err, doc)
		}
		if ev.Subject != ev.OrderingKey() {
			t.Errorf("%s: subject %q, want the ordering key %q", ev.Type, ev.Subject, ev.OrderingKey())
		}
		for _, secret := range secrets {
			if bytes.Contains(doc, []byte(secret)) {
				t.Errorf("%s shows the secret %q: %s", ev.Type, secret, doc)
			}
		}
	}
}

// Golden compares events with the golden file <dir>/<name>.golden.json, or writes it with
// -update. Review a golden file's diff like code.
func Golden(t testing.TB, dir, name string, events []event.Event) {
	t.Helper()
	got, err := json.MarshalIndent(events, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join(dir, name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s has no golden file (write it with -update): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the translation (-update rewrites it; review the diff)\ngot:\n%s", path, got)
	}
}

// GoldensHaveFixtures fails for a golden file in dir whose fixture (the file fixture names for
// the golden's name) is gone: it would silently test nothing.
func GoldensHaveFixtures(t testing.TB, dir string, fixture func(name string) string) {
	t.Helper()
	goldens, _ := filepath.Glob(filepath.Join(dir, "*.golden.json"))
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		if _, err := os.Stat(fixture(name)); err != nil {
			t.Errorf("%s has no fixture %s", g, fixture(name))
		}
	}
}

package itoolabs

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
	"github.com/pbxbridge/pbxbridge/lookup"
)

// The lookup a fixture asks for: its number and call id go to the CRM.
func TestContactQuery(t *testing.T) {
	f := fixture(t, "12-gravitel-contact")
	if !f.IsContact() {
		t.Fatal("fixture 12 is not a contact lookup")
	}
	want := `{"pbx":"itoolabs","account":"main","phone":"+79161234567","call_id":"28187487-edcf-4d23-9f95-c8591fbd9936"}`
	if got := string(lookup.Query(testSource, f.Phone(), f.CallID())); got != want {
		t.Errorf("fixture 12: %s", got)
	}
}

// The answer a MegaFon integration library's fake CRM gives (fixture 34).
func TestContactAnswerMatchesFixture(t *testing.T) {
	got := lookup.ReadContact([]byte(`{"name":"Name","responsible":"Manager"}`)).Answer()
	sameJSON(t, got, pbxtest.ReadFile(t, filepath.Join(fixtureDir, "34-brandup-contact-response.json")))
}

// sameJSON compares as values, and wants Cyrillic as raw UTF-8.
func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) || bytes.Contains(got, []byte(`\u`)) {
		t.Errorf("got %s, want %s", got, want)
	}
}

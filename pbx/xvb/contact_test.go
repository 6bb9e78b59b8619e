package xvb

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
	"github.com/pbxbridge/pbxbridge/lookup"
)

// The answer the integration page expects, as strict JSON with raw UTF-8.
func TestContactAnswerMatchesFixture(t *testing.T) {
	fixture := pbxtest.ReadFile(t, filepath.Join(fixtureDir, "04-xvb-contact-response.json"))
	got := lookup.Contact{Name: "Вася/Рога и Копыта", Responsible: "100"}.Answer()
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(fixture, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got %s, want %s", got, fixture)
	}
	if !bytes.Contains(got, []byte("Вася/Рога и Копыта")) || bytes.Contains(got, []byte(`\u`)) {
		t.Errorf("Cyrillic not raw UTF-8: %s", got)
	}
}

func TestMakeCallForm(t *testing.T) {
	got := MakeCallForm("T0K&N", "101", "+79001234567").Encode()
	if want := "cmd=makeCall&from=101&to=%2B79001234567&token=T0K%26N"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

package xvb

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
)

func TestContactQuery(t *testing.T) {
	tests := []struct{ phone, want string }{
		{"79201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{"89201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{" 79201119613", `{"pbx":"xvb","account":"main","phone":"+79201119613"}`},
		{"igorokunev-mbl", `{"pbx":"xvb","account":"main","phone":"igorokunev-mbl"}`},
		{"a<b>&c", `{"pbx":"xvb","account":"main","phone":"a<b>&c"}`},
	}
	for _, tt := range tests {
		if got := string(ContactQuery("main", tt.phone)); got != tt.want {
			t.Errorf("ContactQuery(%q) = %s, want %s", tt.phone, got, tt.want)
		}
	}
}

func TestContactAnswer(t *testing.T) {
	tests := []struct{ name, crm, want string }{
		{"name and responsible", `{"name":"Вася/Рога и Копыта","responsible":"100"}`, `{"contact_name":"Вася/Рога и Копыта","responsible":"100"}`},
		{"escaped Cyrillic comes out raw", `{"name":"\u0412\u0430\u0441\u044f","responsible":"100"}`, `{"contact_name":"Вася","responsible":"100"}`},
		{"no HTML escaping", `{"name":"A&B <C>"}`, `{"contact_name":"A&B <C>"}`},
		{"numeric responsible", `{"name":"Вася","responsible":100}`, `{"contact_name":"Вася","responsible":"100"}`},
		{"name only", `{"name":"Вася"}`, `{"contact_name":"Вася"}`},
		{"responsible only, extra fields ignored", `{"responsible":"101","id":7}`, `{"responsible":"101"}`},
		{"blank fields omitted", `{"name":"  ","responsible":""}`, `{}`},
		{"bad field dropped, good one kept", `{"name":{"first":"Вася"},"responsible":"100"}`, `{"responsible":"100"}`},
		{"numeric name is not a name", `{"name":5,"responsible":true}`, `{}`},
		{"unknown number", `{}`, `{}`},
		{"null", `null`, `{}`},
		{"array", `[{"name":"Вася"}]`, `{}`},
		{"404 page", `<html>Not Found</html>`, `{}`},
		{"empty body", ``, `{}`},
		{"truncated", `{"name":"Вася"`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(ContactAnswer([]byte(tt.crm))); got != tt.want {
				t.Errorf("ContactAnswer(%s) = %s, want %s", tt.crm, got, tt.want)
			}
		})
	}
}

// The answer the integration page expects, as strict JSON with raw UTF-8.
func TestContactAnswerMatchesFixture(t *testing.T) {
	fixture := readFile(t, filepath.Join(fixtureDir, "04-xvb-contact-response.json"))
	got := ContactAnswer([]byte(`{"name":"Вася/Рога и Копыта","responsible":"100"}`))
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

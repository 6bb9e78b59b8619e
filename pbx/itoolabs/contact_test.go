package itoolabs

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
)

func TestContactQuery(t *testing.T) {
	tests := []struct{ phone, callID, want string }{
		{"88005553535", "43294397431", `{"pbx":"itoolabs","account":"main","phone":"+78005553535","call_id":"43294397431"}`},
		{"+79161234567", "", `{"pbx":"itoolabs","account":"main","phone":"+79161234567"}`},
		{"ivanov@x.megapbx.ru", " c1 ", `{"pbx":"itoolabs","account":"main","phone":"ivanov@x.megapbx.ru","call_id":"c1"}`},
		{"a<b>&c", "", `{"pbx":"itoolabs","account":"main","phone":"a<b>&c"}`},
	}
	for _, tt := range tests {
		if got := string(ContactQuery("main", tt.phone, tt.callID)); got != tt.want {
			t.Errorf("ContactQuery(%q, %q) = %s, want %s", tt.phone, tt.callID, got, tt.want)
		}
	}
	// The lookup a fixture asks for.
	f := fixture(t, "12-gravitel-contact")
	if !f.IsContact() {
		t.Fatal("fixture 12 is not a contact lookup")
	}
	want := `{"pbx":"itoolabs","account":"main","phone":"+79161234567","call_id":"28187487-edcf-4d23-9f95-c8591fbd9936"}`
	if got := string(ContactQuery("main", f.Phone(), f.CallID())); got != want {
		t.Errorf("fixture 12: %s", got)
	}
}

func TestContactAnswer(t *testing.T) {
	tests := []struct{ name, crm, want string }{
		{"name and responsible", `{"name":"Вася/Рога и Копыта","responsible":"ivanov@x.megapbx.ru"}`, `{"contact_name":"Вася/Рога и Копыта","responsible":"ivanov@x.megapbx.ru"}`},
		{"escaped Cyrillic comes out raw", `{"name":"\u0412\u0430\u0441\u044f"}`, `{"contact_name":"Вася"}`},
		{"no HTML escaping", `{"name":"A&B <C>"}`, `{"contact_name":"A&B <C>"}`},
		{"numeric responsible (an extension)", `{"name":"Вася","responsible":701}`, `{"contact_name":"Вася","responsible":"701"}`},
		{"responsible only, extra fields ignored", `{"responsible":"79161234567","id":7}`, `{"responsible":"79161234567"}`},
		{"blank fields omitted", `{"name":"  ","responsible":""}`, `{}`},
		{"bad field dropped, good one kept", `{"name":{"first":"Вася"},"responsible":"701"}`, `{"responsible":"701"}`},
		{"numeric name is not a name", `{"name":5,"responsible":true}`, `{}`},
		{"null fields", `{"name":null,"responsible":null}`, `{}`},
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

// The answer a MegaFon integration library's fake CRM gives (fixture 34).
func TestContactAnswerMatchesFixture(t *testing.T) {
	got := ContactAnswer([]byte(`{"name":"Name","responsible":"Manager"}`))
	sameJSON(t, got, readFile(t, filepath.Join(fixtureDir, "34-brandup-contact-response.json")))
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

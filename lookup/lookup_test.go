package lookup

import (
	"testing"

	"github.com/pbxbridge/pbxbridge/event"
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
		if got := string(Query(event.Origin{PBX: "xvb", Account: "main"}, tt.phone, "")); got != tt.want {
			t.Errorf("Query(%q) = %s, want %s", tt.phone, got, tt.want)
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
			if got := string(ReadContact([]byte(tt.crm)).Answer()); got != tt.want {
				t.Errorf("ReadContact(%s).Answer() = %s, want %s", tt.crm, got, tt.want)
			}
		})
	}
}

package xvb

import (
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		want        Fields
		recoded     bool
		err         error
	}{
		{
			name:        "form",
			contentType: formType,
			body:        "access_code=10019&cmd=event&ext=&phone=%2B7920&record_link=https%3A%2F%2Fh%2Fa%3Fb%3Dc",
			want:        Fields{"access_code": "10019", "cmd": "event", "ext": "", "phone": "+7920", "record_link": "https://h/a?b=c"},
		},
		{
			name:        "form with charset, unencoded plus, trailing newline",
			contentType: "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
			body:        "cmd=event&access_code=1&phone=+79201119613\r\n",
			want:        Fields{"cmd": "event", "access_code": "1", "phone": " 79201119613"},
		},
		{
			name:        "form keeps a literal semicolon",
			contentType: formType,
			body:        "cmd=event&access_code=1&record_link=https://h/f.q722?media=mp3;type=listen",
			want:        Fields{"cmd": "event", "access_code": "1", "record_link": "https://h/f.q722?media=mp3;type=listen"},
		},
		{
			name:        "form duplicate keys: first wins; empty pairs skipped",
			contentType: formType,
			body:        "cmd=event&&access_code=1&cmd=contact&flag",
			want:        Fields{"cmd": "event", "access_code": "1", "flag": ""},
		},
		{
			name:        "json by content type, numbers bools and null as strings",
			contentType: "application/json; charset=utf-8",
			body:        `{"cmd":"event","access_code":10019,"duration":16,"ratio":1.5e3,"flag":true,"off":false,"ext":null,"phone":"79201119613"}`,
			want:        Fields{"cmd": "event", "access_code": "10019", "duration": "16", "ratio": "1.5e3", "flag": "true", "off": "false", "ext": "", "phone": "79201119613"},
		},
		{
			name:        "json sniffed without a known content type",
			contentType: "text/plain",
			body:        ` {"cmd":"event","access_code":"1"}`,
			want:        Fields{"cmd": "event", "access_code": "1"},
		},
		{
			name:        "json duplicate keys: first wins",
			contentType: "",
			body:        `{"cmd":"event","access_code":"1","cmd":"contact"}`,
			want:        Fields{"cmd": "event", "access_code": "1"},
		},
		{
			name:        "form sniffed without a content type",
			contentType: "",
			body:        "cmd=contact&access_code=1",
			want:        Fields{"cmd": "contact", "access_code": "1"},
		},
		{
			name:        "cp1251 form value, percent-encoded",
			contentType: formType,
			body:        "cmd=event&access_code=1&name=%C2%E0%F1%FF",
			want:        Fields{"cmd": "event", "access_code": "1", "name": "Вася"},
			recoded:     true,
		},
		{
			name:        "cp1251 form value, raw bytes",
			contentType: formType,
			body:        "cmd=event&access_code=1&name=\xc2\xe0\xf1\xff",
			want:        Fields{"cmd": "event", "access_code": "1", "name": "Вася"},
			recoded:     true,
		},
		{
			name:        "cp1251 json",
			contentType: "application/json",
			body:        "{\"cmd\":\"event\",\"access_code\":\"1\",\"name\":\"\xc2\xe0\xf1\xff\"}",
			want:        Fields{"cmd": "event", "access_code": "1", "name": "Вася"},
			recoded:     true,
		},
		{
			name:        "utf-8 form value is left alone",
			contentType: formType,
			body:        "cmd=event&access_code=1&name=%D0%92%D0%B0%D1%81%D1%8F",
			want:        Fields{"cmd": "event", "access_code": "1", "name": "Вася"},
		},
		{name: "empty body", contentType: formType, body: "", err: ErrEmpty},
		{name: "blank body", contentType: "application/json", body: " \r\n", err: ErrEmpty},
		{name: "bad percent escape", contentType: formType, body: "cmd=event&access_code=1&phone=%7", err: ErrMalformed},
		{name: "bad percent escape in a name", contentType: formType, body: "c%zzmd=event", err: ErrMalformed},
		{name: "json nested object", contentType: "application/json", body: `{"cmd":"event","access_code":"1","to":{"ext":"1"}}`, err: ErrMalformed},
		{name: "json nested array", contentType: "application/json", body: `{"cmd":"event","access_code":"1","x":[1]}`, err: ErrMalformed},
		{name: "json array", contentType: "application/json", body: `[{"cmd":"event"}]`, err: ErrMalformed},
		{name: "json truncated", contentType: "application/json", body: `{"cmd":"event","access_code":"1"`, err: ErrMalformed},
		{name: "json trailing data", contentType: "application/json", body: `{"cmd":"event","access_code":"1"}{}`, err: ErrMalformed},
		{name: "json trailing comma", contentType: "application/json", body: `{"cmd":"event","access_code":"1",}`, err: ErrMalformed},
		{name: "json declared, form sent", contentType: "application/json", body: "cmd=event&access_code=1", err: ErrMalformed},
		{name: "form declared, json sent", contentType: formType, body: `{"cmd":"event","access_code":"1"}`, err: ErrMissingField},
		{name: "missing cmd", contentType: formType, body: "access_code=1&event=INCOMING", err: ErrMissingField},
		{name: "empty cmd", contentType: formType, body: "cmd=&access_code=1", err: ErrMissingField},
		{name: "missing access_code", contentType: formType, body: "cmd=event&event=INCOMING", err: ErrMissingField},
		{name: "json missing access_code", contentType: "application/json", body: `{"cmd":"event","access_code":null}`, err: ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, recoded, err := Parse(tt.contentType, []byte(tt.body))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !maps.Equal(got, tt.want) || recoded != tt.recoded {
				t.Errorf("got %q recoded=%v, want %q recoded=%v", got, recoded, tt.want, tt.recoded)
			}
		})
	}
}

func TestFieldAccessors(t *testing.T) {
	f := Fields{"cmd": "Contact", "phone": " 7920", "callid": "c1", "event": " answered "}
	if f.Command() != "Contact" || !f.IsContact() || f.Phone() != " 7920" || f.CallID() != "c1" || f.Event() != "ANSWERED" {
		t.Errorf("accessors: %q %v %q %q %q", f.Command(), f.IsContact(), f.Phone(), f.CallID(), f.Event())
	}
	if (Fields{}).CallID() != "" || (Fields{"cmd": "event"}).IsContact() {
		t.Error("absent callid or cmd=event misread")
	}
}

func TestAuthenticate(t *testing.T) {
	// The header as the integration page shows it next to ANSWERED.
	name, value, _ := strings.Cut(strings.TrimSpace(string(pbxtest.ReadFile(t, filepath.Join(fixtureDir, "05-xvb-event-answered.headers")))), ":")
	if name != "X-XVB-AC" {
		t.Fatalf("header fixture names %q", name)
	}
	pageHeader := strings.TrimSpace(value)
	answered := mustParse(t, formType, pbxtest.ReadFile(t, filepath.Join(fixtureDir, "05-xvb-event-answered.form")))

	tests := []struct {
		name   string
		f      Fields
		header string
		want   string
		ok     bool
	}{
		{"ANSWERED with the page's header", answered, pageHeader, "10019", true},
		{"ANSWERED without the header", answered, "", "10019", true},
		{"header disagrees with the body", answered, "10020", "10019", false},
		{"header right, body wrong", Fields{"access_code": "10020"}, "10019", "10019", false},
		{"body wrong", Fields{"access_code": "1001"}, "", "10019", false},
		{"no access_code", Fields{}, "", "10019", false},
		{"no configured code", Fields{"access_code": ""}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Authenticate(tt.f, tt.header, tt.want); got != tt.ok {
				t.Errorf("Authenticate = %v, want %v", got, tt.ok)
			}
		})
	}
}

package itoolabs

import (
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		want                    Fields
		err                     error
	}{
		{"form", formType, "cmd=event&type=INCOMING&callid=c1&crm_token=t",
			Fields{"cmd": "event", "type": "INCOMING", "callid": "c1", "crm_token": "t"}, nil},
		{"form with charset", formType + "; charset=UTF-8", "cmd=history&link=https%3A%2F%2Fh%2Fr.mp3%3Fa%3D1%26b%3D2",
			Fields{"cmd": "history", "link": "https://h/r.mp3?a=1&b=2"}, nil},
		{"encoded + kept", formType, "cmd=event&phone=%2B79990001122", Fields{"cmd": "event", "phone": "+79990001122"}, nil},
		{"unencoded + is a space", formType, "cmd=event&phone=+79990001122", Fields{"cmd": "event", "phone": " 79990001122"}, nil},
		{"Cyrillic form", formType, "cmd=event&groupRealName=%D0%9E%D1%82%D0%B4%D0%B5%D0%BB", Fields{"cmd": "event", "groupRealName": "Отдел"}, nil},
		{"empty value kept", formType, "cmd=event&ext=&user", Fields{"cmd": "event", "ext": "", "user": ""}, nil},
		{"JSON", "application/json", `{"cmd":"event","type":"ACCEPTED","callid":"c1"}`,
			Fields{"cmd": "event", "type": "ACCEPTED", "callid": "c1"}, nil},
		{"JSON numbers, bools and null as text", "application/json", `{"cmd":"history","duration":50,"rating":4.5,"z-flag":false,"ext":null}`,
			Fields{"cmd": "history", "duration": "50", "rating": "4.5", "z-flag": "false", "ext": ""}, nil},
		{"JSON Cyrillic escaped or raw", "application/json", `{"cmd":"event","a":"\u041e\u0442","b":"Отдел"}`,
			Fields{"cmd": "event", "a": "От", "b": "Отдел"}, nil},
		{"JSON sniffed without a type", "", ` {"cmd":"event"} `, Fields{"cmd": "event"}, nil},
		{"form sniffed without a type", "text/plain", "cmd=event", Fields{"cmd": "event"}, nil},
		{"a form is never sniffed as JSON", formType, `{"cmd":"event"}`, nil, ErrMissingField},

		{"empty", formType, "  \n", nil, ErrEmpty},
		{"no cmd", formType, "type=INCOMING&callid=c1", nil, ErrMissingField},
		{"blank cmd", "application/json", `{"cmd":" "}`, nil, ErrMissingField},
		{"bad escape", formType, "cmd=event&phone=%zz", nil, ErrMalformed},
		{"semicolon", formType, "cmd=event;type=INCOMING", nil, ErrMalformed},
		{"field twice", formType, "cmd=event&crm_token=a&crm_token=b", nil, ErrMalformed},
		{"not UTF-8 (CP1251)", formType, "cmd=event&groupRealName=%CE%F2%E4%E5%EB", nil, ErrMalformed},
		{"JSON field twice", "application/json", `{"cmd":"event","crm_token":"a","crm_token":"b"}`, nil, ErrMalformed},
		{"JSON nested", "application/json", `{"cmd":"event","user":{"login":"a"}}`, nil, ErrMalformed},
		{"JSON array", "application/json", `[{"cmd":"event"}]`, nil, ErrMalformed},
		{"JSON trailing data", "application/json", `{"cmd":"event"}{"cmd":"history"}`, nil, ErrMalformed},
		{"JSON truncated", "application/json", `{"cmd":"event"`, nil, ErrMalformed},
		{"JSON trailing comma", "application/json", `{"cmd":"event",}`, nil, ErrMalformed},
		{"JSON not UTF-8", "application/json", "{\"cmd\":\"event\",\"n\":\"\xce\xf2\"}", nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.contentType, []byte(tt.body))
			if !errors.Is(err, tt.err) || !maps.Equal(got, tt.want) {
				t.Errorf("Parse = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// cmd=history may come as GET: its query parses as a form does.
func TestParseQuery(t *testing.T) {
	got, err := ParseQuery("cmd=history&callid=c1&start=20230328T101500Z&crm_token=t")
	want := Fields{"cmd": "history", "callid": "c1", "start": "20230328T101500Z", "crm_token": "t"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("ParseQuery = %q, %v", got, err)
	}
	for query, wantErr := range map[string]error{"": ErrEmpty, "callid=c1": ErrMissingField, "cmd=history&cmd=event": ErrMalformed} {
		if _, err := ParseQuery(query); !errors.Is(err, wantErr) {
			t.Errorf("ParseQuery(%q): %v, want %v", query, err, wantErr)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	for _, tt := range []struct {
		field, configured string
		ok                bool
	}{
		{"test-token", "test-token", true},
		{"test-token", "test-tokem", false},
		{"test-token", "test-token2", false},
		{"", "test-token", false},
		{"", "", false}, // an unset token never authenticates
		{"x", "", false},
	} {
		f := Fields{"cmd": "event"}
		if tt.field != "" {
			f["crm_token"] = tt.field
		}
		if got := Authenticate(f, tt.configured); got != tt.ok {
			t.Errorf("Authenticate(crm_token=%q, %q) = %v", tt.field, tt.configured, got)
		}
	}
	if Authenticate(Fields{"cmd": "event", "token": "T"}, "T") {
		t.Error("token (the CRM → PBX secret) authenticated a webhook")
	}
}

func TestRejectionBody(t *testing.T) {
	sameJSON(t, RejectionBody(http.StatusBadRequest), pbxtest.ReadFile(t, filepath.Join(fixtureDir, "15-itoolabs-error-400.json")))
	sameJSON(t, RejectionBody(http.StatusUnauthorized), pbxtest.ReadFile(t, filepath.Join(fixtureDir, "16-itoolabs-error-401.json")))
	for status, want := range map[int]string{
		http.StatusForbidden:             `{"error":"Forbidden"}`,
		http.StatusRequestEntityTooLarge: `{"error":"Request Entity Too Large"}`,
		http.StatusServiceUnavailable:    `{"error":"Service Unavailable"}`,
		599:                              `{"error":"Error"}`,
	} {
		if got := string(RejectionBody(status)); got != want {
			t.Errorf("RejectionBody(%d) = %s, want %s", status, got, want)
		}
	}
}

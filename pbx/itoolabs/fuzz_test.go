package itoolabs

import (
	"encoding/json"
	"errors"
	"maps"
	"net/url"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

// FuzzParse feeds bodies of any type. Whatever is accepted is a well-formed message that
// survives re-encoding as a form, as JSON and as a query, and translates into schema-valid
// events.
func FuzzParse(f *testing.F) {
	for _, name := range formFixtures(f) {
		body := pbxtest.ReadFile(f, filepath.Join(fixtureDir, name+".form"))
		f.Add(formType, body)
		f.Add("", body)
		asJSON, _ := json.Marshal(mustParse(f, formType, body))
		f.Add("application/json", asJSON)
	}
	f.Add("application/json", pbxtest.ReadFile(f, filepath.Join(fixtureDir, "21-megapbx-event-incoming-cyrillic.json")))
	f.Add(formType, []byte("cmd=event&crm_token=1&groupRealName=%CE%F2&cmd=x&phone=+7920;x"))
	f.Add("application/json; charset=utf-8", []byte("{\"cmd\":\"history\",\"duration\":1e400,\"x\":null,\"y\":[1],\"n\":\"\xce\"}"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fields, err := Parse(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMissingField) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if fields.Command() == "" {
			t.Fatalf("accepted without cmd: %q", fields)
		}
		for k, v := range fields {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("invalid UTF-8 survived: %q=%q", k, v)
			}
		}
		form := url.Values{}
		for k, v := range fields {
			form.Set(k, v)
		}
		if again, err := Parse(formType, []byte(form.Encode())); err != nil || !maps.Equal(again, fields) {
			t.Fatalf("form round trip: %q → %q (%v)", fields, again, err)
		}
		if again, err := ParseQuery(form.Encode()); err != nil || !maps.Equal(again, fields) {
			t.Fatalf("query round trip: %q → %q (%v)", fields, again, err)
		}
		asJSON, _ := json.Marshal(fields)
		if again, err := Parse("application/json", asJSON); err != nil || !maps.Equal(again, fields) {
			t.Fatalf("JSON round trip: %q → %q (%v)", fields, again, err)
		}
		pbxtest.CheckEvents(t, Translate(testSource, fields, testReceived))
	})
}

// FuzzTranslate builds messages field by field, invalid UTF-8 included (a caller may build
// Fields by hand). The events are schema-valid, their raw holds no secret, and the secrets'
// values change neither their ids nor their raw.
func FuzzTranslate(f *testing.F) {
	for _, name := range formFixtures(f) {
		m := fixture(f, name)
		f.Add(m["cmd"], m["type"], m["direction"], m["callid"], m["second_callid"], m["phone"], m["user"], m["ext"],
			m["status"], m["duration"], m["start"], m["link"], m["diversion"])
	}
	f.Add("history", "out", "", "", "", "+79161234567", "a@b", "701", "NotFound", "2592000", "20991231T235959Z", "javascript:x", "\xff")
	f.Fuzz(func(t *testing.T, cmd, typ, direction, callID, secondCallID, phone, user, ext, status, duration, start, link, diversion string) {
		fields := func(secret string) Fields {
			return Fields{"cmd": cmd, "type": typ, "direction": direction, "callid": callID, "second_callid": secondCallID,
				"phone": phone, "user": user, "ext": ext, "status": status, "duration": duration, "start": start,
				"link": link, "diversion": diversion, "crm_token": secret + "-1", "token": secret + "-2"}
		}
		events := Translate(testSource, fields("SECRET"), testReceived)
		pbxtest.CheckEvents(t, events)
		again := Translate(testSource, fields("OTHER"), testReceived)
		if len(again) != len(events) {
			t.Fatalf("the secrets changed the events: %d vs %d", len(events), len(again))
		}
		for i, ev := range events {
			if ev.ID != again[i].ID || string(ev.Data.Raw) != string(again[i].Data.Raw) {
				t.Fatalf("the secrets changed the id or raw of %s", ev.Type)
			}
			var raw map[string]string
			if err := json.Unmarshal(ev.Data.Raw, &raw); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"crm_token", "token"} {
				if _, ok := raw[name]; ok {
					t.Fatalf("raw holds %s: %s", name, ev.Data.Raw)
				}
			}
			if ev.Type != event.TypeUnmapped && ev.Data.CallID == "" {
				t.Fatalf("%s without call_id", ev.Type)
			}
		}
	})
}

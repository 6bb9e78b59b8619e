package xvb

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

// FuzzParse feeds form and JSON bodies. Whatever is accepted must be a well-formed message that
// survives re-encoding in either wire format, and must translate into schema-valid events.
func FuzzParse(f *testing.F) {
	for _, name := range formFixtures(f) {
		body := pbxtest.ReadFile(f, filepath.Join(fixtureDir, name+".form"))
		f.Add(formType, body)
		f.Add("", body)
		asJSON, _ := json.Marshal(mustParse(f, formType, body))
		f.Add("application/json", asJSON)
	}
	f.Add(formType, []byte("cmd=event&access_code=1&name=%C2%E0%F1%FF&cmd=x&phone=+7920"))
	f.Add("application/json; charset=windows-1251", []byte("{\"cmd\":\"event\",\"access_code\":1,\"x\":null,\"n\":\"\xc2\xe0\"}"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		fields, _, err := Parse(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMissingField) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if fields.Command() == "" || fields["access_code"] == "" {
			t.Fatalf("accepted without cmd or access_code: %q", fields)
		}
		for k, v := range fields {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("invalid UTF-8 survived: %q=%q", k, v)
			}
		}
		if contentType == "application/json" {
			recoded, _ := utf8OrCP1251(string(body))
			if !json.Valid([]byte(recoded)) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
		}
		form := url.Values{}
		for k, v := range fields {
			form.Set(k, v)
		}
		if again, _, err := Parse(formType, []byte(form.Encode())); err != nil || !maps.Equal(again, fields) {
			t.Fatalf("form round trip: %q → %q (%v)", fields, again, err)
		}
		asJSON, _ := json.Marshal(fields)
		if again, _, err := Parse("application/json", asJSON); err != nil || !maps.Equal(again, fields) {
			t.Fatalf("JSON round trip: %q → %q (%v)", fields, again, err)
		}
		pbxtest.CheckEvents(t, Translate(testSource, fields, Correlation{}, testReceived))
	})
}

// FuzzTranslate builds messages field by field, invalid UTF-8 included (a caller may build
// Fields by hand), with any correlation the handler might pass.
func FuzzTranslate(f *testing.F) {
	for _, name := range formFixtures(f) {
		m := mustParse(f, formType, pbxtest.ReadFile(f, filepath.Join(fixtureDir, name+".form")))
		f.Add(m["cmd"], m["event"], m["type"], m["callid"], m["phone"], m["ext"], m["status"], m["duration"], m["record_link"], m["line_number"], "", "")
		f.Add(m["cmd"], m["event"], "out", "", m["phone"], "101", "Busy", "0", "", "84951234567", "OPEN1", CorrelationWeak)
	}
	f.Fuzz(func(t *testing.T, cmd, name, typ, callID, phone, ext, status, duration, recordLink, lineNumber, corrCallID, corrHow string) {
		fields := Fields{"access_code": "10019", "cmd": cmd, "event": name, "type": typ, "callid": callID,
			"phone": phone, "ext": ext, "status": status, "duration": duration, "record_link": recordLink,
			"line_number": lineNumber, "token": "T", "key": "K"}
		events := Translate(testSource, fields, Correlation{CallID: corrCallID, How: corrHow}, testReceived)
		pbxtest.CheckEvents(t, events)
		uncorrelated := Translate(testSource, fields, Correlation{}, testReceived)
		if len(uncorrelated) != len(events) {
			t.Fatalf("the correlation changed the events: %d vs %d", len(events), len(uncorrelated))
		}
		for i, ev := range events {
			if ev.ID != uncorrelated[i].ID {
				t.Fatalf("the correlation changed the id of %s", ev.Type)
			}
			var raw map[string]string
			if err := json.Unmarshal(ev.Data.Raw, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["token"]; ok {
				t.Fatal("raw holds token")
			}
			if _, ok := raw["key"]; ok {
				t.Fatal("raw holds key")
			}
			if ev.Type != event.TypeUnmapped && ev.Data.CallID == "" {
				t.Fatalf("%s without call_id", ev.Type)
			}
		}
	})
}

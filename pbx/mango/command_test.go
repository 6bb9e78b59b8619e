package mango

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbxbridge/pbxbridge/event"
)

// The builders reproduce Mango's official PHP examples byte for byte (docs/mango.md, Signature), so
// the form they produce carries the verified sign.
func TestCommandsMatchOfficialExamples(t *testing.T) {
	callback, err := Callback("your-command-id", "<extension>", "<to_number>", "")
	if err != nil {
		t.Fatal(err)
	}
	hangup, err := Hangup("your-command-id", "<CALL_ID>")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cmd        Command
		path, file string
		sign       string
	}{
		{callback, "commands/callback", "cmd_callback_official_php_example", signVectors[0].sign},
		{hangup, "commands/call/hangup", "cmd_hangup_official_php_example", signVectors[1].sign},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if tt.cmd.Path() != tt.path {
				t.Errorf("path %s, want %s", tt.cmd.Path(), tt.path)
			}
			want, err := os.ReadFile(filepath.Join(fixtureDir, tt.file+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.cmd.JSON != string(want) {
				t.Errorf("json\n%s\nwant\n%s", tt.cmd.JSON, want)
			}
			body, err := os.ReadFile(filepath.Join(fixtureDir, tt.file+".form"))
			if err != nil {
				t.Fatal(err)
			}
			official, err := ParseForm(body)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := ParseForm([]byte(tt.cmd.Form(phpKey, phpSalt)))
			if err != nil {
				t.Fatal(err)
			}
			if ours != official || ours.Sign != tt.sign {
				t.Errorf("form %+v, want %+v", ours, official)
			}
		})
	}
}

func TestCommandBodies(t *testing.T) {
	for _, tt := range []struct {
		name     string
		build    func() (Command, error)
		path     string
		json     string
		errorSay string
	}{
		{"callback with a line", func() (Command, error) { return Callback("c1", "101", "79001234567", "74951234567") },
			"commands/callback", `{"command_id":"c1","from":{"extension":"101","number":""},"to_number":"79001234567","line_number":"74951234567"}`, ""},
		{"callback keeps Cyrillic and & raw", func() (Command, error) { return Callback("звонок&1", "101", "79001234567", "") },
			"commands/callback", `{"command_id":"звонок&1","from":{"extension":"101","number":""},"to_number":"79001234567"}`, ""},
		{"callback_group from a group", func() (Command, error) { return CallbackGroup("c2", "303", "79001234567", "74951234567") },
			"commands/callback_group", `{"command_id":"c2","from":"303","to":"79001234567","line_number":"74951234567"}`, ""},
		{"callback without from", func() (Command, error) { return Callback("c1", "", "79001234567", "") }, "", "", "from is required"},
		{"callback without to", func() (Command, error) { return Callback("c1", "101", "", "") }, "", "", "to is required"},
		{"callback_group without a line", func() (Command, error) { return CallbackGroup("c2", "303", "79001234567", "") }, "", "", "line is required"},
		{"hangup without leg", func() (Command, error) { return Hangup("c3", "") }, "", "", "leg_id is required"},
		{"command_id too long", func() (Command, error) { return Hangup(strings.Repeat("x", 129), "L1") }, "", "", "command_id is longer than 128 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := tt.build()
			if tt.errorSay != "" {
				if err == nil || err.Error() != tt.errorSay {
					t.Fatalf("error %v, want %q", err, tt.errorSay)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Path() != tt.path || cmd.JSON != tt.json {
				t.Errorf("got %s %s\nwant %s %s", cmd.Path(), cmd.JSON, tt.path, tt.json)
			}
			form, err := ParseForm([]byte(cmd.Form(testKey, testSalt)))
			if err != nil || form.JSON != tt.json || !Verify(form, testKey, testSalt) {
				t.Errorf("form %+v does not verify (%v)", form, err)
			}
		})
	}
}

func TestReadAnswer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		status   int
		body     string
		code     int64
		accepted bool
		answer   int
		meaning  string
		reason   string
	}{
		{"accepted", 200, `{"result":1000,"command_id":"c1"}`, 1000, true, 200, "accepted", event.ReasonCompleted},
		{"accepted, quoted", 200, `{"result":"1000"}`, 1000, true, 200, "accepted", event.ReasonCompleted},
		{"accepted without a result", 200, `{}`, 0, true, 200, "accepted", ""},
		{"accepted, empty body", 200, ``, 0, true, 200, "accepted", ""},
		{"sign mismatch (420)", 420, `{"code":3102}`, 3102, false, 502, "signature mismatch (check api_key and api_salt)", event.ReasonFailed},
		{"wrong number in a 200", 200, `{"result":3200}`, 3200, false, 400, "wrong number", event.ReasonWrongNumber},
		{"call not found", 420, `{"code":"3310"}`, 3310, false, 404, "call not found", event.ReasonFailed},
		{"call already ended", 200, `{"result":4101}`, 4101, false, 409, "call already ended or not found", event.ReasonFailed},
		{"unknown billing code by class", 200, `{"result":2219}`, 2219, false, 403, "billing restriction", event.ReasonBilling},
		{"overloaded", 200, `{"result":5001}`, 5001, false, 503, "Mango overloaded", event.ReasonOverload},
		{"rate limited", 429, `{ "name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429 }`, 0, false, 429, "rate limit exceeded", ""},
		{"locked out", 401, `{}`, 0, false, 503, "Mango locked the API out for 2 minutes after repeated bad requests", ""},
		{"an HTML error page", 502, `<html>bad gateway</html>`, 0, false, 502, "Mango answered HTTP 502", ""},
		{"a code of no known class", 200, `{"result":6001}`, 6001, false, 502, "unknown code", event.ReasonUnknown},
		{"a code of the wrong type", 420, `{"code":{"x":1}}`, 0, false, 502, "Mango answered HTTP 420", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := ReadAnswer(tt.status, []byte(tt.body))
			if a.Code != tt.code || a.Accepted() != tt.accepted || a.Status() != tt.answer || a.Meaning() != tt.meaning || reason(a.Code) != tt.reason {
				t.Errorf("%+v: code %d accepted %v status %d meaning %q reason %q", a, a.Code, a.Accepted(), a.Status(), a.Meaning(), reason(a.Code))
			}
			if a.LockedOut() != (tt.status == http.StatusUnauthorized) || a.RateLimited() != (tt.status == http.StatusTooManyRequests) {
				t.Errorf("locked out %v, rate limited %v", a.LockedOut(), a.RateLimited())
			}
		})
	}
}

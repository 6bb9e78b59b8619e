package mango

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The four verified vectors of docs/mango.md, Signature (PHP examples; key and salt are literal
// strings).
var signVectors = []struct{ json, sign string }{
	{`{"command_id":"your-command-id","from":{"extension":"<extension>","number":""},"to_number":"<to_number>"}`,
		"afdeb462cd5e0e422a9c9220390124608df06a4472cb1add6ebd6e24184bd15a"},
	{`{"command_id":"your-command-id","call_id":"<CALL_ID>"}`,
		"2d1d01246f52cec1fdb44f2a4d7091dc54f67e318369c0628201d66b5d336ef0"},
	{`{"date_from":"1445288400","date_to":"1445374859","from":{"extension":"","number":""},"to":{"extension":"","number":""}}`,
		"94e263aa0aa65d77481b86e9224fa2230265faa387322e40716389406982c0fb"},
	{`{"key":"<REQUEST_KEY>"}`,
		"515069b8c079df62f408e36dd7933912b8e86d833c5927ee77eb4b68d766c4f5"},
}

func TestSignVectors(t *testing.T) {
	for _, v := range signVectors {
		if got := Sign(phpKey, v.json, phpSalt); got != v.sign {
			t.Errorf("Sign(%s) = %s, want %s", v.json, got, v.sign)
		}
	}
}

// Every signed fixture body parses, carries the README's sign, verifies, and its json equals
// the decoded .json next to it where there is one.
func TestSignedFixtures(t *testing.T) {
	for _, tt := range []struct{ file, key, salt, sign, json string }{
		{"cmd_callback_official_php_example.form", phpKey, phpSalt, signVectors[0].sign, "cmd_callback_official_php_example.json"},
		{"cmd_hangup_official_php_example.form", phpKey, phpSalt, signVectors[1].sign, "cmd_hangup_official_php_example.json"},
		{"stats_request_official_php_example.form", phpKey, phpSalt, signVectors[2].sign, "stats_request_official_php_example.json"},
		{"stats_result_official_php_example.form", phpKey, phpSalt, signVectors[3].sign, "stats_result_official_php_example.json"},
		{"synthetic_signed_call_appeared.form", testKey, testSalt, "9603a0c8e7b227ef0f4ce13944aba84a64b8a73b243434f3099869228171dade", ""},
		{"synthetic_signed_summary_cyrillic.form", testKey, testSalt, "1bbf700d5f4d5dd26f870a0af1f6762806a4bb9d648ab76c54464d622377a0e3", "summary_outbound_missed_doc2026.json"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(fixtureDir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			f, err := ParseForm(body)
			if err != nil {
				t.Fatal(err)
			}
			if f.Key != tt.key || f.Sign != tt.sign {
				t.Fatalf("key %q sign %q", f.Key, f.Sign)
			}
			if got := Sign(tt.key, f.JSON, tt.salt); got != tt.sign {
				t.Errorf("Sign = %s, want %s", got, tt.sign)
			}
			if !Verify(f, tt.key, tt.salt) {
				t.Error("Verify = false")
			}
			if tt.json != "" {
				want, err := os.ReadFile(filepath.Join(fixtureDir, tt.json))
				if err != nil {
					t.Fatal(err)
				}
				if f.JSON != string(want) {
					t.Errorf("json field\n%s\nwant\n%s", f.JSON, want)
				}
			}
		})
	}
}

func TestVerify(t *testing.T) {
	js := `{"entry_id":"e1","call_id":"c1","seq":1,"call_state":"Appeared"}`
	good := Form{Key: testKey, Sign: Sign(testKey, js, testSalt), JSON: js}
	for _, tt := range []struct {
		name      string
		form      func(Form) Form
		key, salt string
		want      bool
	}{
		{"good", func(f Form) Form { return f }, testKey, testSalt, true},
		{"uppercase sign", func(f Form) Form { f.Sign = strings.ToUpper(f.Sign); return f }, testKey, testSalt, true},
		{"wrong sign", func(f Form) Form { f.Sign = Sign(testKey, js, "other"); return f }, testKey, testSalt, false},
		{"truncated sign", func(f Form) Form { f.Sign = f.Sign[:63]; return f }, testKey, testSalt, false},
		{"empty sign", func(f Form) Form { f.Sign = ""; return f }, testKey, testSalt, false},
		{"wrong key sent", func(f Form) Form { f.Key = "otherkey"; return f }, testKey, testSalt, false},
		{"signed with the sent key, not ours", func(f Form) Form {
			f.Key, f.Sign = "otherkey", Sign("otherkey", js, testSalt)
			return f
		}, testKey, testSalt, false},
		{"json changed", func(f Form) Form { f.JSON += " "; return f }, testKey, testSalt, false},
		{"wrong configured salt", func(f Form) Form { return f }, testKey, "x", false},
		{"no configured key", func(f Form) Form {
			f.Key, f.Sign = "", Sign("", js, testSalt)
			return f
		}, "", testSalt, false},
		{"no configured salt", func(f Form) Form { f.Sign = Sign(testKey, js, ""); return f }, testKey, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.form(good), tt.key, tt.salt); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseForm(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       Form
		err        bool
	}{
		{"all fields", "vpbx_api_key=k&sign=s&json=%7B%7D", Form{"k", "s", "{}"}, false},
		{"any order", "json=%7B%7D&sign=s&vpbx_api_key=k", Form{"k", "s", "{}"}, false},
		{"plus is space", "json=%7B+%22a%22%3A1+%7D", Form{JSON: `{ "a":1 }`}, false},
		{"raw UTF-8 kept", "json=%7B%22n%22%3A%22%D1%85%22%7D", Form{JSON: `{"n":"х"}`}, false},
		{"CRLF kept byte-exact", "json=%7B%0D%0A%7D", Form{JSON: "{\r\n}"}, false},
		{"empty json is present", "vpbx_api_key=k&json=", Form{Key: "k"}, false},
		{"unknown fields ignored", "json=1&extra=2", Form{JSON: "1"}, false},
		{"no json", "vpbx_api_key=k&sign=s", Form{}, true},
		{"empty body", "", Form{}, true},
		{"bad escape", "json=%7", Form{}, true},
		{"bad escape elsewhere", "json=1&x=%zz", Form{}, true},
		{"semicolon", "json=1;sign=s", Form{}, true},
		{"json twice", "json=1&json=2", Form{}, true},
		{"sign twice", "json=1&sign=a&sign=b", Form{}, true},
		{"key twice", "json=1&vpbx_api_key=a&vpbx_api_key=b", Form{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseForm([]byte(tt.body))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseForm(f *testing.F) {
	addFixtureSeeds(f, func(name string, body []byte) {
		if strings.HasSuffix(name, ".form") {
			f.Add(body)
		}
	})
	f.Add([]byte("json=%7B%7D&json=1"))
	f.Add([]byte("vpbx_api_key=a;b"))
	f.Fuzz(func(t *testing.T, body []byte) {
		form, err := ParseForm(body)
		if err != nil {
			return
		}
		// What parsed round-trips through a standard encoder unchanged.
		again, err := ParseForm([]byte(url.Values{"vpbx_api_key": {form.Key}, "sign": {form.Sign}, "json": {form.JSON}}.Encode()))
		if err != nil || again != form {
			t.Fatalf("re-encoded %+v parsed as %+v, %v", form, again, err)
		}
		if Verify(form, form.Key, "") {
			t.Fatal("verified without a salt")
		}
		if Verify(form, testKey, testSalt) != (form.Key == testKey && strings.EqualFold(form.Sign, Sign(testKey, form.JSON, testSalt))) {
			t.Fatal("Verify disagrees with Sign")
		}
	})
}

// addFixtureSeeds calls add for every fixture file.
func addFixtureSeeds(f *testing.F, add func(name string, body []byte)) {
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		body, err := os.ReadFile(filepath.Join(fixtureDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		add(e.Name(), body)
	}
}

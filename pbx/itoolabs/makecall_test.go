package itoolabs

import (
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pbxbridge/pbxbridge/internal/pbxtest"
)

func TestMakeCallForm(t *testing.T) {
	fixture, err := url.ParseQuery(strings.TrimSpace(string(pbxtest.ReadFile(t, filepath.Join(fixtureDir, "13-gravitel-makecall-request.form")))))
	if err != nil {
		t.Fatal(err)
	}
	if got := MakeCallForm("token", "user", "phone", "phoneExt"); !reflect.DeepEqual(got, fixture) {
		t.Errorf("got %v, want fixture 13 %v", got, fixture)
	}
	got := MakeCallForm("T0K&N", "ivanov@x.megapbx.ru", "+79161234567", "").Encode()
	if want := "cmd=makeCall&phone=%2B79161234567&token=T0K%26N&user=ivanov%40x.megapbx.ru"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestReadCallAnswer(t *testing.T) {
	fix := func(name string) string { return string(pbxtest.ReadFile(t, filepath.Join(fixtureDir, name))) }
	for _, tt := range []struct {
		name      string
		status    int
		body      string
		accepted  bool
		answer    int
		uuid, err string
	}{
		{"fixture 14: uuid", 200, fix("14-gravitel-makecall-response.json"), true, 200, "28187487-edcf-4d23-9f95-c8591fbd9936", ""},
		{"200 without uuid is still accepted", 200, "", true, 200, "", ""},
		{"200 with an error", 200, `{"error":"user is busy"}`, false, 502, "", "user is busy"},
		{"fixture 15: 400", 400, fix("15-itoolabs-error-400.json"), false, 502, "", "the PBX refused user or phone (400 Invalid parameters)"},
		{"fixture 16: 401 names our token", 401, fix("16-itoolabs-error-401.json"), false, 502, "", "the PBX refused the account's token (401 Invalid token): check token"},
		{"401 without a body", 401, "", false, 502, "", "the PBX refused the account's token (401 Unauthorized): check token"},
		{"500 text, first line only", 500, "Internal error\n<pre>stack</pre>", false, 502, "", "Internal error"},
		{"500 empty", 500, "", false, 502, "", "Internal Server Error"},
		{"429 passes through", 429, `{"error":"slow down"}`, false, 429, "", "slow down"},
		{"503 passes through", 503, "", false, 503, "", "Service Unavailable"},
		{"long text is cut on a rune", 502, strings.Repeat("я", 150), false, 502, "", strings.Repeat("я", 100)},
		{"control characters dropped", 500, "bad\x00\x1b[31m thing", false, 502, "", "bad[31m thing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := ReadCallAnswer(tt.status, []byte(tt.body))
			if a.Accepted() != tt.accepted || a.Status() != tt.answer || a.UUID != tt.uuid || a.Error != tt.err {
				t.Errorf("accepted %v status %d uuid %q error %q", a.Accepted(), a.Status(), a.UUID, a.Error)
			}
		})
	}
}

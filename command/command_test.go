package command

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbxbridge/pbxbridge/pbx"
)

func TestRead(t *testing.T) {
	for _, tt := range []struct {
		name, method, target, contentType, body string
		want                                    pbx.CommandRequest
		status                                  int // of the refusal; 0: read
		msg                                     string
	}{
		{name: "JSON, trimmed, numbers as digits", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"account":"office","from":101,"to":" +79001234567 ","command_id":"c-1"}`,
			want: pbx.CommandRequest{Account: "office", From: "101", To: "+79001234567", CommandID: "c-1"}},
		{name: "JSON null is empty", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"account":"office","line":null}`, want: pbx.CommandRequest{Account: "office"}},
		{name: "JSON unknown field", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"account":"office","form":"101"}`, status: 400, msg: `unknown field "form"`},
		{name: "JSON fraction", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"from":101.5}`, status: 400, msg: "not a whole number"},
		{name: "JSON object value", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"from":{"ext":101}}`, status: 400, msg: "must be a string"},
		{name: "not JSON", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"account":`, status: 400, msg: "not a JSON object"},
		{name: "form, robots' extra fields ignored", method: "POST", target: "/calls", contentType: "application/x-www-form-urlencoded",
			body: "account=office&from=101&to=79001234567&utm=x", want: pbx.CommandRequest{Account: "office", From: "101", To: "79001234567"}},
		{name: "query of a GET", method: "GET", target: "/calls?account=office&action=hangup&leg_id=L1",
			want: pbx.CommandRequest{Account: "office", Action: "hangup", LegID: "L1"}},
		{name: "field twice", method: "GET", target: "/calls?to=1&to=2", status: 400, msg: "to given 2 times"},
		{name: "other content type", method: "POST", target: "/calls", contentType: "text/plain", body: "hi", status: 415},
		{name: "too large", method: "POST", target: "/calls", contentType: "application/json",
			body: `{"account":"` + strings.Repeat("a", maxRequest) + `"}`, status: 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			got, rej := Read(r)
			switch {
			case tt.status == 0 && rej != nil:
				t.Fatalf("refused: %d %s", rej.Status, rej.Body.Error)
			case tt.status == 0 && got != tt.want:
				t.Errorf("got %+v, want %+v", got, tt.want)
			case tt.status != 0 && (rej == nil || rej.Status != tt.status || !strings.Contains(rej.Body.Error, tt.msg)):
				t.Errorf("got %+v %+v, want %d %q", got, rej, tt.status, tt.msg)
			}
		})
	}
}

// account is a PBX that builds any call.
type account struct{ pbx.Account }

func (account) Command(*pbx.CommandRequest) (pbx.Command, error) {
	return pbx.Command{Name: "callback"}, nil
}

func TestBuild(t *testing.T) {
	for _, tt := range []struct {
		req    pbx.CommandRequest
		action string // after build
		err    string
	}{
		{req: pbx.CommandRequest{CommandID: "c-1"}, action: "call"},
		{req: pbx.CommandRequest{CommandID: "c-1", Action: "hangup"}, action: "hangup"},
		{req: pbx.CommandRequest{Action: "transfer"}, err: `action "transfer"`},
		{req: pbx.CommandRequest{CommandID: "c\n1"}, err: "unprintable"},
		{req: pbx.CommandRequest{CommandID: strings.Repeat("x", maxID+1)}, err: "longer than 128 bytes"},
	} {
		req := tt.req
		_, err := build(account{}, &req)
		switch {
		case tt.err == "" && (err != nil || req.Action != tt.action):
			t.Errorf("%+v: %v, action %q, want %q", tt.req, err, req.Action, tt.action)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%+v: %v, want %q", tt.req, err, tt.err)
		}
	}
}

func TestFingerprintSeesWhatWasAsked(t *testing.T) {
	a := pbx.CommandRequest{Account: "office", From: "101", To: "79001234567"}
	b := a
	b.To = "79001234568"
	if fingerprint(&a) == fingerprint(&b) {
		t.Error("two requests, one fingerprint")
	}
	if c := a; fingerprint(&c) != fingerprint(&a) {
		t.Error("one request, two fingerprints")
	}
}
